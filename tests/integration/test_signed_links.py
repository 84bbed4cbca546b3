"""Signed image links (S11) through the gateway: every image URL the API hands
out opens without a key; expired, altered and cross-team links are refused;
renditions are cached in the derived bucket and rendered once."""

from __future__ import annotations

import datetime as dt
import io
import time
import urllib.parse

import pytest
import requests
from PIL import Image

from aperture.domain.links import Links
from aperture.domain.records import rendition_prefix
from aperture.storage.images import ImageStore
from tests.support.api import settled, upload
from tests.support.images import encode, random_image


@pytest.fixture
def images(firestore_client):
    return ImageStore(firestore_client)


@pytest.fixture
def alice(make_caller):
    return make_caller("team-a", "member")


@pytest.fixture
def bob(make_caller):
    return make_caller("team-b", "member")


@pytest.fixture
def stack_links(stack):
    """The stack's own signer (the test holds the secret the functions use)."""
    return Links(stack.link_secret.encode(), window=3600)


def keyless(url: str, **kwargs) -> requests.Response:
    """A plain GET with no key: what a browser's <img src> does."""
    return requests.get(url, allow_redirects=False, timeout=60, **kwargs)


def split(url: str) -> tuple[str, list[tuple[str, str]]]:
    parts = urllib.parse.urlsplit(url)
    return parts.path, urllib.parse.parse_qsl(parts.query, keep_blank_values=True)


def rebuild(base: str, path: str, params: list[tuple[str, str]]) -> str:
    return base + urllib.parse.quote(path) + "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def test_listed_thumbnails_and_originals_open_without_a_key(gateway, alice):
    data = encode(random_image("RGB", seed=3, size=(640, 480)), "PNG")
    image_id = upload(gateway, alice, ("p.png", data))[0]

    listed = gateway.get("/v1/images", headers=alice.headers).json()["images"][0]
    record = gateway.get(f"/v1/images/{image_id}", headers=alice.headers).json()
    thumb, original = keyless(listed["thumbnail_url"]), keyless(record["original_url"])

    assert "x-api-key" not in listed["thumbnail_url"] and alice.key not in listed["thumbnail_url"]
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (256, 192)
    assert thumb.headers["Cache-Control"].startswith("public, max-age=")
    assert 3000 < int(thumb.headers["Cache-Control"].rsplit("=", 1)[1]) <= 7200
    assert original.status_code == 200 and original.content == data
    assert listed["thumbnail_url"] == record["thumbnail_url"]  # same window, same URL: browsers reuse it


def test_the_rendition_cache_is_hit_the_second_time(gateway, alice, storage_client, stack):
    image_id = upload(gateway, alice, ("p.png", encode(random_image("RGB", seed=4, size=(300, 200)), "PNG")))[0]
    url = gateway.get(f"/v1/images/{image_id}", headers=alice.headers).json()["thumbnail_url"]

    first, second = keyless(url), keyless(url)

    kept = list(storage_client.list_blobs(stack.derived_bucket, prefix=rendition_prefix("team-a", image_id)))
    assert first.headers["X-Rendition-Cache"] == "miss" and "render" in first.headers["Server-Timing"]
    assert second.headers["X-Rendition-Cache"] == "hit" and "render" not in second.headers["Server-Timing"]
    assert second.content == first.content
    assert len(kept) == 1 and kept[0].name.endswith(".jpg") and kept[0].download_as_bytes() == first.content
    # a keyed request for the same conversion is served from the same entry
    keyed = gateway.get(f"/v1/images/{image_id}.jpg?ops=resize:256x256", headers=alice.headers)
    assert keyed.headers["X-Rendition-Cache"] == "hit" and keyed.content == first.content


@pytest.mark.parametrize(
    "tamper",
    [
        lambda path, params: (path.replace(".jpg", ".png"), params),
        lambda path, params: (path, [("ops", "resize:512x512")] + params[1:]),
        lambda path, params: (path, [p if p[0] != "exp" else ("exp", str(int(p[1]) + 60)) for p in params]),
        lambda path, params: (path, [p if p[0] != "sig" else ("sig", "A" + p[1][1:]) for p in params]),
        lambda path, params: (path, [p if p[0] != "team" else ("team", "team-b") for p in params]),
        lambda path, params: (path, [p for p in params if p[0] != "sig"] + [("sig", "")]),
    ],
    ids=["path", "ops", "exp", "sig", "team", "empty-sig"],
)
def test_an_altered_link_is_403_with_the_reason_and_writes_nothing(
    gateway, alice, tamper, storage_client, stack, stack_links
):
    image_id = upload(gateway, alice, ("p.png", encode(random_image("RGB", seed=5), "PNG")))[0]
    path, params = split(gateway.get(f"/v1/images/{image_id}", headers=alice.headers).json()["thumbnail_url"])

    answer = keyless(rebuild(stack.gateway_url, *tamper(path, params)))

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == 403 and answer.json()["error"]["message"]
    assert list(storage_client.list_blobs(stack.derived_bucket, prefix="renditions/")) == []


def test_an_expired_link_is_403(gateway, alice, stack, stack_links):
    image_id = upload(gateway, alice, ("p.png", encode(random_image("RGB", seed=6), "PNG")))[0]
    past = int(time.time()) - 5
    link = stack_links.sign(f"/v1/images/{image_id}.png", [], "team-a", past)

    answer = keyless(stack.gateway_url + link)

    assert answer.status_code == 403 and "expired" in answer.json()["error"]["message"]


def test_a_link_of_one_team_never_opens_another_teams_image(gateway, alice, bob, stack, stack_links):
    bobs = upload(gateway, bob, ("b.png", encode(random_image("RGB", seed=7), "PNG")))[0]
    # a genuine link of team-a naming team-b's image id: as if the image were missing
    link = stack_links.sign(f"/v1/images/{bobs}.png", [], "team-a")
    # team-b's own link with the team changed to team-a: the signature breaks
    path, params = split(gateway.get(f"/v1/images/{bobs}", headers=bob.headers).json()["original_url"])
    swapped = [p if p[0] != "team" else ("team", "team-a") for p in params]

    assert keyless(stack.gateway_url + link).status_code == 404
    assert keyless(rebuild(stack.gateway_url, path, swapped)).status_code == 403


def test_a_signature_opens_only_download_routes(gateway, alice, stack, stack_links):
    image_id = upload(gateway, alice, ("p.png", encode(random_image("RGB", seed=8), "PNG")))[0]
    metadata = stack_links.sign(f"/v1/images/{image_id}", [], "team-a")

    answer = keyless(stack.gateway_url + metadata)

    assert answer.status_code == 401  # the record is not an image download: it needs the key


def test_post_links_makes_a_link_for_any_format_and_operations(gateway, alice):
    image_id = upload(gateway, alice, ("p.png", encode(random_image("RGB", seed=9, size=(200, 100)), "PNG")))[0]

    made = gateway.post(
        f"/v1/images/{image_id}/links",
        json={"format": "webp", "ops": "rotate:90|grayscale", "expires_in": 600},
        headers=alice.headers,
    )

    assert made.status_code == 201
    expires_at = dt.datetime.fromisoformat(made.json()["expires_at"])
    assert 590 <= (expires_at - dt.datetime.now(dt.timezone.utc)).total_seconds() <= 600
    image = keyless(made.json()["url"])
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/webp"
    decoded = Image.open(io.BytesIO(image.content))
    assert decoded.size == (100, 200) and decoded.mode in ("L", "RGB")
    assert int(image.headers["Cache-Control"].rsplit("=", 1)[1]) <= 600


@pytest.mark.parametrize(
    "body,reason",
    [
        ({"format": "svg"}, "unsupported output format"),
        ({"format": "png", "ops": "explode:3"}, "explode"),
        ({"ops": "rotate:90"}, "need a format"),
        ({"format": "png", "expires_in": 10}, "expires_in"),
        ({"format": "png", "expires_in": 10**9}, "expires_in"),
        ({"format": "png", "expires_in": "3600"}, "expires_in"),
        ({"format": "png", "split": True}, "unknown field"),
        ({"format": "png", "ops": "split"}, "split"),
    ],
)
def test_post_links_refuses_bad_requests_with_the_reason(gateway, alice, body, reason):
    image_id = upload(gateway, alice, ("p.png", encode(random_image("RGB", seed=10), "PNG")))[0]

    answer = gateway.post(f"/v1/images/{image_id}/links", json=body, headers=alice.headers)

    assert answer.status_code == 400 and reason in answer.json()["error"]["message"]


def test_post_links_for_another_teams_image_is_404(gateway, alice, bob):
    bobs = upload(gateway, bob, ("b.png", encode(random_image("RGB", seed=11), "PNG")))[0]

    answer = gateway.post(f"/v1/images/{bobs}/links", json={"format": "png"}, headers=alice.headers)

    assert answer.status_code == 404


def test_search_results_carry_signed_thumbnails(gateway, alice, images):
    image_id = upload(gateway, alice, ("p.png", encode(random_image("RGB", seed=12, size=(320, 240)), "PNG")))[0]
    settled(images, "team-a", image_id)

    results = gateway.get("/v1/search?q=a picture&min_score=-1", headers=alice.headers).json()["results"]

    [hit] = [r for r in results if r["id"] == image_id]
    thumb = keyless(hit["thumbnail_url"])
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).size == (256, 192)


def test_deleting_an_image_deletes_its_renditions(gateway, alice, storage_client, stack):
    image_id = upload(gateway, alice, ("p.png", encode(random_image("RGB", seed=13), "PNG")))[0]
    record = gateway.get(f"/v1/images/{image_id}", headers=alice.headers).json()
    assert keyless(record["thumbnail_url"]).status_code == 200

    assert gateway.delete(f"/v1/images/{image_id}", headers=alice.headers).status_code == 204

    assert list(storage_client.list_blobs(stack.derived_bucket, prefix=rendition_prefix("team-a", image_id))) == []
    assert keyless(record["thumbnail_url"]).status_code == 404
