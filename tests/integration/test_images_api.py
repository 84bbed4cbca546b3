"""Images API (S8) through the gateway: list, metadata, original download,
statistics, delete, upload statistics; and team isolation on every route (S5)."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from PIL import Image

from aperture.storage.counters import TeamCounters
from aperture.storage.histograms import COLLECTION as HISTOGRAMS
from aperture.storage.images import ImageStore
from tests.support import hostile
from tests.support.api import settled, upload
from tests.support.images import close, encode, numpy_stat, random_image, samples


@pytest.fixture
def images(firestore_client):
    return ImageStore(firestore_client)


def processed(images, team, image_id):
    record = settled(images, team, image_id)
    assert record.status == "processed", record.error
    return record


@pytest.fixture
def alice(make_caller):
    return make_caller("team-a", "member")


@pytest.fixture
def bob(make_caller):
    return make_caller("team-b", "member")


def test_list_newest_first_with_cursor_pages(gateway, alice):
    ids = [upload(gateway, alice, (f"{i}.png", encode(random_image("RGB", seed=i))))[0] for i in range(5)]

    first = gateway.get("/v1/images?limit=2", headers=alice.headers).json()
    second = gateway.get(f"/v1/images?limit=2&cursor={first['next_cursor']}", headers=alice.headers).json()
    third = gateway.get(f"/v1/images?limit=2&cursor={second['next_cursor']}", headers=alice.headers).json()

    listed = [r["id"] for page in (first, second, third) for r in page["images"]]
    assert listed == list(reversed(ids))
    assert third["next_cursor"] is None
    assert "embedding" not in first["images"][0]


def test_list_filters(gateway, alice, images):
    jpeg_id = upload(gateway, alice, ("a.jpg", hostile.jpeg(seed=1)))[0]
    png_id = upload(gateway, alice, ("b.png", encode(random_image("RGB", seed=2))))[0]
    record = processed(images, "team-a", jpeg_id)
    processed(images, "team-a", png_id)
    middle = record.created_at + dt.timedelta(microseconds=1)

    by_format = gateway.get("/v1/images?format=jpg", headers=alice.headers).json()["images"]
    by_label = gateway.get("/v1/images", params={"label": record.labels[0]}, headers=alice.headers).json()["images"]
    after = gateway.get("/v1/images", params={"after": middle.isoformat()}, headers=alice.headers).json()["images"]
    before = gateway.get("/v1/images", params={"before": middle.isoformat()}, headers=alice.headers).json()["images"]

    assert [r["id"] for r in by_format] == [jpeg_id]
    assert jpeg_id in [r["id"] for r in by_label]
    assert [r["id"] for r in after] == [png_id]
    assert [r["id"] for r in before] == [jpeg_id]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=abc",
        "limit=100000",
        "after=yesterday",
        "before=2026-13-45",
        "cursor=%%%",
        "cursor=eyJ0IjogMX0",
        "colour=red",
    ],
)
def test_bad_list_parameters_are_400(gateway, alice, query):
    response = gateway.get(f"/v1/images?{query}", headers=alice.headers)

    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_cursor_of_another_query_is_400(gateway, alice):
    for i in range(3):
        upload(gateway, alice, (f"{i}.png", encode(random_image("L", seed=i))))
    cursor = gateway.get("/v1/images?limit=1", headers=alice.headers).json()["next_cursor"]

    response = gateway.get(f"/v1/images?limit=1&format=PNG&cursor={cursor}", headers=alice.headers)

    assert response.status_code == 400


def test_metadata_of_a_processed_image(gateway, alice, images):
    [image_id] = upload(gateway, alice, ("meta.jpg", hostile.jpeg(size=(320, 240), seed=3)))
    processed(images, "team-a", image_id)

    body = gateway.get(f"/v1/images/{image_id}", headers=alice.headers).json()

    assert body["id"] == image_id and body["status"] == "processed"
    assert (body["format"], body["width"], body["height"]) == ("JPEG", 320, 240)
    assert body["labels"] and body["embedding_dimensions"] > 0 and "embedding" not in body


def test_original_download(gateway, alice):
    data = hostile.jpeg(seed=4)
    [image_id] = upload(gateway, alice, ("orig.jpg", data))

    response = gateway.get(f"/v1/images/{image_id}/original", headers=alice.headers)
    again = gateway.get(
        f"/v1/images/{image_id}/original", headers={**alice.headers, "If-None-Match": response.headers["ETag"]}
    )

    assert response.status_code == 200 and response.content == data
    assert response.headers["Content-Type"] == "image/jpeg"
    assert int(response.headers["Content-Length"]) == len(data)
    assert response.headers["ETag"] == f'"{image_id}"'
    assert again.status_code == 304


def test_stats_on_a_team_image_equal_numpy(gateway, alice, images):
    data = encode(random_image("RGBA", size=(50, 40), seed=5))
    [image_id] = upload(gateway, alice, ("s.png", data))
    processed(images, "team-a", image_id)

    for func in ("min", "max", "mean", "median", "p99.9"):
        response = gateway.get(f"/v1/images/{image_id}/stats/{func}", headers=alice.headers)
        assert response.status_code == 200, response.text
        # 2,000 pixels, under APERTURE_STATS_LOOKUP_MIN_PIXELS: counted, never read back from Firestore
        assert response.headers["X-Aperture-Cache"] in ("computed", "memory")
        assert close(float(response.text), numpy_stat(samples(data), func))
    assert gateway.get(f"/v1/images/{image_id}/stats/average", headers=alice.headers).status_code == 404
    assert gateway.get(f"/v1/images/{image_id}/stats/mean?channel=q", headers=alice.headers).status_code == 400


def test_delete_removes_object_record_counters_and_histograms(
    gateway, alice, images, storage_client, stack, firestore_client
):
    [image_id] = upload(gateway, alice, ("gone.jpg", hostile.jpeg(seed=6)))
    record = processed(images, "team-a", image_id)
    counters = TeamCounters(firestore_client)
    assert sum(counters.totals("team-a").formats.values()) == 1

    response = gateway.delete(f"/v1/images/{image_id}", headers=alice.headers)
    again = gateway.delete(f"/v1/images/{image_id}", headers=alice.headers)

    assert response.status_code == 204 and again.status_code == 404
    assert images.get("team-a", image_id) is None
    assert storage_client.bucket(stack.uploads_bucket).get_blob(record.object) is None
    assert sum(counters.totals("team-a").formats.values()) == 0
    assert list(firestore_client.collection(HISTOGRAMS).stream()) == []
    assert gateway.get("/v1/images", headers=alice.headers).json()["images"] == []


def test_upload_stats_from_counters(gateway, alice, images):
    ids = upload(
        gateway,
        alice,
        ("1.jpg", hostile.jpeg(seed=7)),
        ("2.jpg", hostile.jpeg(seed=8)),
        ("3.png", encode(random_image("RGB", seed=9))),
    )
    for image_id in ids:
        processed(images, "team-a", image_id)
    upload(gateway, alice, ("dup.jpg", hostile.jpeg(seed=7)))  # duplicate: not counted

    body = gateway.get("/v1/stats", headers=alice.headers).json()

    assert len(body["uploads_per_day"]) == 30
    assert body["uploads_per_day"][-1] == {"date": dt.datetime.now(dt.timezone.utc).date().isoformat(), "uploads": 3}
    assert sum(d["uploads"] for d in body["uploads_per_day"]) == 3
    assert body["most_popular_format"] == "JPEG" and body["formats"] == {"JPEG": 2, "PNG": 1}


# -- team isolation ---------------------------------------------------------------------


def test_teams_cannot_touch_each_others_images(gateway, alice, bob, images, storage_client, stack):
    [mine] = upload(gateway, alice, ("private.png", encode(random_image("RGB", seed=10))))
    processed(images, "team-a", mine)
    missing = "0" * 64
    routes = [
        ("GET", "/v1/images/{id}"),
        ("GET", "/v1/images/{id}/original"),
        ("GET", "/v1/images/{id}/stats/mean"),
        ("DELETE", "/v1/images/{id}"),
    ]

    for method, route in routes:
        theirs = gateway.request(method, route.format(id=mine), headers=bob.headers)
        absent = gateway.request(method, route.format(id=missing), headers=bob.headers)
        assert theirs.status_code == absent.status_code == 404, (method, route)
        assert theirs.json() == absent.json()
    listed = gateway.get("/v1/images", headers=bob.headers).json()["images"]
    by_label = gateway.get(
        "/v1/images", params={"label": images.get("team-a", mine).labels[0]}, headers=bob.headers
    ).json()["images"]
    assert listed == [] and by_label == []
    assert gateway.get("/v1/stats", headers=bob.headers).json()["total_images"] == 0
    # guessing names: the object path of team-a's image, traversal, and the raw bucket name
    # (a guess with "/" in it matches no route: the gateway's own 404, as in the cloud)
    for guess in (f"teams/team-a/{mine}.png", f"..%2Fteam-a%2F{mine}", f"{mine}/../{mine}"):
        assert gateway.get(f"/v1/images/{guess}", headers=bob.headers).status_code == 404
    # and nothing was deleted
    assert images.get("team-a", mine) is not None
    assert gateway.get(f"/v1/images/{mine}/original", headers=alice.headers).status_code == 200


# -- conversion and transforms over HTTP -------------------------------------------------


@pytest.mark.parametrize(
    "extension,mime",
    [
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
        ("gif", "image/gif"),
        ("webp", "image/webp"),
        ("tiff", "image/tiff"),
        ("bmp", "image/bmp"),
    ],
)
def test_download_converted_by_extension(gateway, alice, extension, mime):
    import piexif

    source = io.BytesIO()
    random_image("RGB", size=(120, 80), seed=20).save(
        source, "JPEG", exif=piexif.dump({"0th": {piexif.ImageIFD.Make: b"Canon"}})
    )
    [image_id] = upload(gateway, alice, ("conv.jpg", source.getvalue()))

    response = gateway.get(f"/v1/images/{image_id}.{extension}", headers=alice.headers)

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == mime
    out = Image.open(io.BytesIO(response.content))
    assert out.size == (120, 80)
    assert out.getexif().get(0x010F) is None  # metadata stripped (TIFF keeps only its structural tags)
    assert int(response.headers["Content-Length"]) == len(response.content)


def test_transform_pipeline_and_etag(gateway, alice):
    [image_id] = upload(gateway, alice, ("t.png", encode(random_image("RGB", size=(400, 300), seed=21))))
    url = f"/v1/images/{image_id}.png?ops=crop:10,10,200,100|rotate:90|resize:50%"

    first = gateway.get(url, headers=alice.headers)
    again = gateway.get(url, headers={**alice.headers, "If-None-Match": first.headers["ETag"]})

    assert first.status_code == 200, first.text
    assert Image.open(io.BytesIO(first.content)).size == (50, 100)
    assert again.status_code == 304


def test_orientation_is_applied_first(gateway, alice):
    import piexif

    buffer = io.BytesIO()
    Image.new("RGB", (60, 20), "red").save(buffer, "JPEG", exif=piexif.dump({"0th": {piexif.ImageIFD.Orientation: 6}}))
    [image_id] = upload(gateway, alice, ("rot.jpg", buffer.getvalue()))

    response = gateway.get(f"/v1/images/{image_id}.png", headers=alice.headers)

    assert Image.open(io.BytesIO(response.content)).size == (20, 60)


@pytest.mark.parametrize(
    "query",
    [
        "ops=crop:-1,0,10,10",
        "ops=crop:0,0,99999,99999",
        "ops=rotate:1e309",
        "ops=resize:0",
        "ops=resize:100000x100000",
        "ops=explode:3",
        "ops=" + "|".join(["grayscale"] * 1000),
        "ops=split",
        "ops=quality:0",
    ],
)
def test_hostile_transform_parameters_are_400(gateway, alice, query):
    [image_id] = upload(gateway, alice, ("h.png", encode(random_image("RGB", size=(64, 64), seed=22))))

    response = gateway.get(f"/v1/images/{image_id}.png?{query}", headers=alice.headers)

    assert response.status_code == 400, (query, response.status_code)
    assert response.json()["error"]["message"]


def test_unsupported_output_format_is_400(gateway, alice):
    [image_id] = upload(gateway, alice, ("f.png", encode(random_image("RGB", seed=23))))

    response = gateway.get(f"/v1/images/{image_id}.svg", headers=alice.headers)

    assert response.status_code == 400
