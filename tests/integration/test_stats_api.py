"""The stats function's HTTP contract (S4), through the local gateway."""

from __future__ import annotations

import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from tests.support.images import close, encode, numpy_stat, png_header_only, random_image, samples

FUNCS = ["min", "max", "mean", "median", "p0", "p10", "p99.9", "p100"]


def stats_url(name: str, func: str, **params) -> str:
    # Quote every character that is not unreserved, "/" aside, so that "." and
    # ".." segments reach the server as written instead of being resolved.
    path = "/".join(urllib.parse.quote(part, safe="").replace(".", "%2E") for part in name.split("/"))
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    return f"/stats/{path}/{func}{query}"


def put(bucket, name: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    bucket.blob(name).upload_from_string(data, content_type=content_type)


def assert_json_error(response, status: int) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == status
    assert body["error"]["message"]


def test_health_answers_ok_to_any_request(gateway):
    for method in ("GET", "POST", "PUT", "DELETE"):
        response = gateway.request(method, "/health")
        assert response.status_code == 200
        assert response.text == "OK"


def test_every_function_on_every_seeded_image_equals_numpy(gateway, seeded, source_bucket):
    for name in seeded:
        expected_samples = samples(source_bucket.blob(name).download_as_bytes())
        for func in FUNCS:
            response = gateway.get(stats_url(name, func))
            assert response.status_code == 200, (name, func, response.text)
            assert response.headers["Content-Type"].startswith("text/plain")
            assert close(float(response.text), numpy_stat(expected_samples, func)), (name, func)


@pytest.mark.parametrize("func", ["average", "p101", "p-1", "p", "P50", "p1e1", "pnan", "MEAN", "p%20"])
def test_unsupported_functions_are_404(gateway, seeded, func):
    response = gateway.get(f"/stats/IMG_1.jpg/{func}")

    assert_json_error(response, 404)


def test_missing_image_is_404(gateway, seeded):
    response = gateway.get("/stats/IMG_100.jpg/mean")

    assert_json_error(response, 404)
    assert "IMG_100.jpg" in response.json()["error"]["message"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(gateway, seeded, method):
    # The route declares GET and HEAD only: the gateway answers, as API Gateway does.
    response = gateway.request(method, "/stats/IMG_1.jpg/mean")

    assert_json_error(response, 405)
    assert response.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/nope", "/stats", "/v1/nope", "/v1/images/a/b/c"])
def test_undeclared_paths_are_404(gateway, path):
    # No x-google-allow: a path no route declares never reaches a function.
    for method in ("GET", "POST"):
        assert_json_error(gateway.request(method, path, headers={"x-api-key": "any"}), 404)


def test_head_reaches_the_stats_function(gateway, seeded):
    response = gateway.head("/stats/IMG_1.jpg/mean")

    assert response.status_code == 200
    assert response.headers["ETag"]


@pytest.mark.parametrize("suffix", ["dir/sub/photo.png", "a..b.png", "x/../y.png", "../up.png", "dots/./here.png"])
def test_object_names_with_slashes_and_dots(gateway, source_bucket, unique, suffix):
    name = f"{unique}/{suffix}"
    data = encode(random_image("RGB", seed=len(suffix)))
    put(source_bucket, name, data, "image/png")

    response = gateway.get(stats_url(name, "mean"), headers={"Accept": "application/json"})

    assert response.status_code == 200, response.text
    assert response.json()["image"] == name
    assert close(response.json()["value"], numpy_stat(samples(data), "mean"))


def test_dot_dot_does_not_escape_to_another_object(gateway, source_bucket, unique):
    put(source_bucket, f"{unique}/secret.png", encode(random_image("L", seed=1)), "image/png")

    response = gateway.get(stats_url(f"{unique}/public/../secret.png", "mean"))

    assert_json_error(response, 404)


def test_non_image_object_is_422(gateway, source_bucket, unique):
    put(source_bucket, f"{unique}/notes.jpg", b"this is text, not a JPEG", "image/jpeg")

    response = gateway.get(stats_url(f"{unique}/notes.jpg", "mean"))

    assert_json_error(response, 422)


def test_truncated_image_is_422(gateway, source_bucket, unique):
    data = encode(random_image("RGB", size=(300, 200)), "JPEG")
    put(source_bucket, f"{unique}/cut.jpg", data[: len(data) // 3], "image/jpeg")

    response = gateway.get(stats_url(f"{unique}/cut.jpg", "max"))

    assert_json_error(response, 422)


def test_image_over_the_pixel_limit_is_422_with_the_limit(gateway, source_bucket, unique):
    put(source_bucket, f"{unique}/bomb.png", png_header_only(20_000, 20_000), "image/png")

    response = gateway.get(stats_url(f"{unique}/bomb.png", "mean"))

    assert_json_error(response, 422)
    assert "100000000" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "mode,fmt",
    [("L", "PNG"), ("RGB", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("1", "PNG"), ("I;16", "PNG"), ("F", "TIFF")],
)
def test_every_mode_equals_numpy(gateway, source_bucket, unique, mode, fmt):
    data = encode(random_image(mode, seed=7), fmt)
    name = f"{unique}/{mode.replace(';', '')}.{fmt.lower()}"
    put(source_bucket, name, data)

    for func in FUNCS:
        response = gateway.get(stats_url(name, func))
        assert response.status_code == 200, response.text
        assert close(float(response.text), numpy_stat(samples(data), func)), (mode, func)


@pytest.mark.parametrize("channel", ["r", "g", "b", "luma"])
def test_channel_parameter_picks_one_band(gateway, source_bucket, unique, channel):
    data = encode(random_image("RGB", seed=3))
    put(source_bucket, f"{unique}/rgb.png", data)

    for func in ("mean", "median", "p95"):
        response = gateway.get(stats_url(f"{unique}/rgb.png", func, channel=channel))
        assert response.status_code == 200, response.text
        assert close(float(response.text), numpy_stat(samples(data, channel), func)), (channel, func)


@pytest.mark.parametrize("channel", ["a", "x", "RGB", ""])
def test_channel_the_image_lacks_is_400(gateway, source_bucket, unique, channel):
    put(source_bucket, f"{unique}/rgb.png", encode(random_image("RGB")))

    response = gateway.get(stats_url(f"{unique}/rgb.png", "mean", channel=channel))

    assert_json_error(response, 400)


def test_json_when_asked_text_by_default(gateway, seeded):
    text = gateway.get("/stats/IMG_2.jpg/median")
    as_json = gateway.get("/stats/IMG_2.jpg/median", headers={"Accept": "application/json"})

    assert text.headers["Content-Type"].startswith("text/plain")
    body = as_json.json()
    assert body["value"] == float(text.text)
    assert body["function"] == "median" and body["image"] == "IMG_2.jpg"
    assert body["width"] > 0 and body["height"] > 0 and body["samples"] > 0
    assert text.headers["ETag"] != as_json.headers["ETag"]


def test_repeated_request_with_etag_is_304(gateway, seeded):
    first = gateway.get("/stats/IMG_3.jpg/p50")

    second = gateway.get("/stats/IMG_3.jpg/p50", headers={"If-None-Match": first.headers["ETag"]})

    assert first.status_code == 200
    assert "no-cache" in first.headers["Cache-Control"] or "max-age" in first.headers["Cache-Control"]
    assert second.status_code == 304
    assert second.content == b""
    assert second.headers["ETag"] == first.headers["ETag"]


def test_overwritten_object_gives_the_new_numbers(gateway, source_bucket, unique):
    name = f"{unique}/changing.png"
    dark = Image.new("L", (20, 20), 10)
    bright = Image.new("L", (20, 20), 200)
    put(source_bucket, name, encode(dark))
    before = gateway.get(stats_url(name, "mean"))

    put(source_bucket, name, encode(bright))
    after = gateway.get(stats_url(name, "mean"), headers={"If-None-Match": before.headers["ETag"]})

    assert before.text == "10.0"
    assert after.status_code == 200
    assert after.text == "200.0"
    assert after.headers["ETag"] != before.headers["ETag"]


def test_twenty_concurrent_identical_requests_compute_once(gateway, source_bucket, unique, stack):
    name = f"{unique}/busy.jpg"
    data = encode(random_image("RGB", size=(1600, 1200), seed=11), "JPEG")
    put(source_bucket, name, data, "image/jpeg")
    url = stack.gateway_url + stats_url(name, "p90")

    import requests

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda _: requests.get(url, timeout=60), range(20)))

    assert all(r.status_code == 200 for r in responses)
    assert len({r.text for r in responses}) == 1
    assert close(float(responses[0].text), numpy_stat(samples(data), "p90"))
    assert [r.headers["X-Aperture-Cache"] for r in responses].count("computed") == 1
