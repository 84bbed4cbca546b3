"""Hostile uploads (issue #18 items 1 and 4) through the real stack: refused with the
reason naming the limit, leaving no object and no record, and counted by upload links."""

from __future__ import annotations

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from aperture.storage.images import COLLECTION as IMAGES
from tests.support import hostile


def files(*items):
    return [("files", (name, data, "application/octet-stream")) for name, data in items]


@pytest.fixture
def member(make_caller):
    return make_caller("team-a", "member")


def test_hostile_files_are_refused_with_the_limit_and_leave_nothing(
    gateway, member, storage_client, firestore_client, stack
):
    # Arrange
    hostile_files = [
        ("grow.gif", hostile.gif_small_first_frame(40)),
        ("scans.jpg", hostile.jpeg_many_scans(64)),
        ("bogus.jpg", hostile.jpeg_bogus_progression()),
        ("twice.jpg", hostile.jpeg_with_hidden_image()),
        ("poly.tif", hostile.polyglot_tiff_zip()),
        ("icc.webp", hostile.with_huge_icc("WEBP")),
    ]

    # Act
    response = gateway.post("/v1/images", headers=member.headers, files=files(*hostile_files))

    # Assert
    assert response.status_code == 422, response.text
    results = response.json()["files"]
    assert [(r["status"], r["status_code"], r["id"]) for r in results] == [("rejected", 422, None)] * 6
    reasons = [r["error"] for r in results]
    assert "the limit is 500000000" in reasons[0]
    assert reasons[1].startswith("JPEG has more than 32 scans; the limit is 32")
    assert reasons[2].startswith("bogus JPEG progression")
    assert reasons[3].endswith("bytes after the end of the JPEG image (polyglot or appended data)")
    assert reasons[4].endswith("bytes after the end of the TIFF image (polyglot or appended data)")
    assert reasons[5].endswith("the limit is 262144")
    assert list(storage_client.list_blobs(stack.uploads_bucket, prefix="teams/team-a/")) == []
    records = firestore_client.collection(IMAGES).where(filter=FieldFilter("team", "==", "team-a")).stream()
    assert list(records) == []


def test_refused_files_use_up_an_upload_links_files(gateway, member, storage_client, firestore_client, stack):
    # Arrange: a link for 2 files
    created = gateway.post("/v1/upload-links", headers=member.headers, json={"max_files": 2})
    assert created.status_code == 201, created.text
    path = "/" + created.json()["upload_url"].split("/", 3)[3]

    # Act: three hostile files, then a good one
    first = gateway.post(
        path,
        files=files(
            ("a.gif", hostile.polyglot_gif_zip()),
            ("b.jpg", hostile.jpeg_bogus_progression()),
            ("c.bmp", hostile.polyglot_bmp_zip()),
        ),
    )
    late = gateway.post(path, files=files(("good.jpg", hostile.jpeg(seed=70))))

    # Assert
    assert [f["status_code"] for f in first.json()["files"]] == [422, 422, 410]
    assert late.status_code == 410, late.text
    assert list(storage_client.list_blobs(stack.uploads_bucket, prefix="teams/team-a/")) == []
    records = firestore_client.collection(IMAGES).where(filter=FieldFilter("team", "==", "team-a")).stream()
    assert list(records) == []
