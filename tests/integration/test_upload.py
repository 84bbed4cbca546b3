"""Uploads (S6) through the gateway: multi-file, content-addressed, validated,
and leaving nothing behind when a file is refused."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from google.cloud.firestore_v1.base_query import FieldFilter

from aperture.storage.images import COLLECTION as IMAGES
from aperture.storage.upload_links import COLLECTION as LINKS
from aperture.storage.upload_links import token_hash
from tests.support import hostile
from tests.support.images import encode, random_image


@pytest.fixture
def member(make_caller):
    return make_caller("team-a", "member")


def files(*items, field="files"):
    return [(field, (name, data, "application/octet-stream")) for name, data in items]


def team_objects(storage_client, stack, team):
    return [b.name for b in storage_client.list_blobs(stack.uploads_bucket, prefix=f"teams/{team}/")]


def team_records(firestore_client, team):
    return [
        d.to_dict() for d in firestore_client.collection(IMAGES).where(filter=FieldFilter("team", "==", team)).stream()
    ]


def test_multi_file_upload_of_good_and_bad_files(gateway, member, storage_client, firestore_client, stack):
    good1, good2 = hostile.jpeg(seed=1), encode(random_image("RGBA", seed=2))

    response = gateway.post(
        "/v1/images",
        headers=member.headers,
        files=files(("one.jpg", good1), ("two.png", good2), ("bad.jpg", b"not an image")),
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert [f["status"] for f in body["files"]] == ["created", "created", "rejected"]
    assert body["files"][2]["error"] and body["files"][2]["id"] is None
    ids = [hashlib.sha256(good1).hexdigest(), hashlib.sha256(good2).hexdigest()]
    assert body["mapping"] == {"one.jpg": ids[0], "two.png": ids[1]}
    assert sorted(team_objects(storage_client, stack, "team-a")) == sorted(
        [f"teams/team-a/{ids[0]}.jpg", f"teams/team-a/{ids[1]}.png"]
    )
    records = {r["id"]: r for r in team_records(firestore_client, "team-a")}
    assert set(records) == set(ids)
    assert records[ids[0]]["format"] == "JPEG" and records[ids[1]]["format"] == "PNG"
    assert records[ids[0]]["uploaded_by"]["key_id"] == member.key_id


def test_image_files_alias(gateway, member):
    response = gateway.post(
        "/v1/images", headers=member.headers, files=files(("alias.jpg", hostile.jpeg(seed=3)), field="image_files")
    )

    assert response.status_code == 201
    assert response.json()["files"][0]["status"] == "created"


def test_same_bytes_again_is_a_duplicate_with_the_same_id(gateway, member, storage_client, firestore_client, stack):
    data = hostile.jpeg(seed=4)
    first = gateway.post("/v1/images", headers=member.headers, files=files(("a.jpg", data)))

    second = gateway.post("/v1/images", headers=member.headers, files=files(("renamed.jpg", data)))

    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["files"][0]["status"] == "duplicate"
    assert second.json()["files"][0]["id"] == first.json()["files"][0]["id"]
    assert len(team_objects(storage_client, stack, "team-a")) == 1
    assert len(team_records(firestore_client, "team-a")) == 1


def test_twenty_concurrent_uploads_of_the_same_bytes(stack, member, storage_client, firestore_client):
    data = hostile.jpeg(size=(800, 600), seed=5)

    def post(_):
        return requests.post(
            stack.gateway_url + "/v1/images", headers=member.headers, files=files(("same.jpg", data)), timeout=60
        )

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))

    statuses = [r.json()["files"][0]["status"] for r in responses]
    assert statuses.count("created") == 1 and statuses.count("duplicate") == 19
    assert len({r.json()["files"][0]["id"] for r in responses}) == 1
    assert len(team_objects(storage_client, stack, "team-a")) == 1
    assert len(team_records(firestore_client, "team-a")) == 1


def test_content_decides_not_the_name_or_type(gateway, member, firestore_client):
    png = encode(random_image("RGB", seed=6))

    response = gateway.post(
        "/v1/images", headers=member.headers, files=[("files", ("looks-like.jpg", png, "image/jpeg"))]
    )

    [result] = response.json()["files"]
    assert result["status"] == "created"
    [record] = team_records(firestore_client, "team-a")
    assert record["format"] == "PNG" and record["object"].endswith(".png")


CORPUS = hostile.corpus()


@pytest.mark.parametrize("case", list(CORPUS))
def test_hostile_input_is_refused_and_leaves_nothing(gateway, member, storage_client, firestore_client, stack, case):
    filename, data, status = CORPUS[case]

    response = gateway.post("/v1/images", headers=member.headers, files=files((filename, data)))

    assert response.status_code == status, response.text
    [result] = response.json()["files"]
    assert result["status"] == "rejected" and result["error"] and result["status_code"] == status
    assert team_objects(storage_client, stack, "team-a") == []
    assert team_records(firestore_client, "team-a") == []


@pytest.mark.parametrize(
    "filename,shown",
    [
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("/absolute/path/abs.jpg", "abs.jpg"),
        ("фото-café-写真.jpg", "фото-café-写真.jpg"),
    ],
)
def test_filenames_are_metadata_only(gateway, member, storage_client, stack, firestore_client, filename, shown):
    data = hostile.jpeg(seed=len(filename))

    response = gateway.post("/v1/images", headers=member.headers, files=files((filename, data)))

    [result] = response.json()["files"]
    assert result["status"] == "created" and result["filename"] == shown
    image_id = hashlib.sha256(data).hexdigest()
    assert team_objects(storage_client, stack, "team-a") == [f"teams/team-a/{image_id}.jpg"]
    assert team_records(firestore_client, "team-a")[0]["filename"] == shown


def test_file_over_the_size_limit_is_413(gateway, member, storage_client, stack):
    big = hostile.jpeg() + b"\x00" * (25 * 1024 * 1024)

    response = gateway.post("/v1/images", headers=member.headers, files=files(("big.jpg", big)))

    assert response.status_code == 413
    assert response.json()["files"][0]["status_code"] == 413
    assert team_objects(storage_client, stack, "team-a") == []


def test_request_over_the_limit_is_413(gateway, member, storage_client, stack):
    parts = [(f"p{i}.jpg", b"\x00" * (9 * 1024 * 1024)) for i in range(4)]

    response = gateway.post("/v1/images", headers=member.headers, files=files(*parts))

    assert response.status_code == 413
    assert response.json()["error"]["message"]
    assert team_objects(storage_client, stack, "team-a") == []


def test_too_many_files_is_413_and_removes_what_was_already_written(
    gateway, member, storage_client, firestore_client, stack
):
    # Files are validated and written while the request arrives; the count is
    # known only at its end, so a refused request must take its objects back.
    limit = 100  # APERTURE_MAX_FILES_PER_REQUEST's default
    parts = [(f"p{i}.png", encode(random_image("RGB", seed=1000 + i))) for i in range(limit + 1)]

    response = gateway.post("/v1/images", headers=member.headers, files=files(*parts))

    assert response.status_code == 413, response.text
    assert "101 files" in response.json()["error"]["message"]
    time.sleep(1.0)  # any write still in flight would land meanwhile
    assert team_objects(storage_client, stack, "team-a") == []
    assert team_records(firestore_client, "team-a") == []


def test_body_broken_after_good_files_is_400_and_leaves_nothing(
    gateway, member, storage_client, firestore_client, stack
):
    good = [encode(random_image("RGB", seed=2000 + i)) for i in range(3)]
    body = (
        b"".join(
            b'--b0undary\r\nContent-Disposition: form-data; name="files"; filename="g%d.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" % i + data + b"\r\n"
            for i, data in enumerate(good)
        )
        + b"--b0undary\r\nbroken header line\r\n\r\nxyz\r\n--b0undary--\r\n"
    )

    response = gateway.post(
        "/v1/images", headers={**member.headers, "Content-Type": "multipart/form-data; boundary=b0undary"}, data=body
    )

    assert response.status_code == 400, response.text
    assert "malformed multipart" in response.json()["error"]["message"]
    time.sleep(1.0)  # any write still in flight would land meanwhile
    assert team_objects(storage_client, stack, "team-a") == []
    assert team_records(firestore_client, "team-a") == []


@pytest.mark.parametrize(
    "kwargs,status",
    [
        ({"data": b"raw bytes", "headers": {"Content-Type": "image/jpeg"}}, 415),
        ({"files": [("other", ("x.jpg", b"abc", "image/jpeg"))]}, 400),
        ({"data": b"--boundary\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=boundary"}}, 400),
    ],
)
def test_malformed_upload_requests(gateway, member, kwargs, status):
    headers = {**member.headers, **kwargs.pop("headers", {})}

    response = gateway.post("/v1/images", headers=headers, **kwargs)

    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


# -- upload links ------------------------------------------------------------------


def create_link(gateway, caller, **body):
    response = gateway.post("/v1/upload-links", headers=caller.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def link_path(link):
    return "/" + link["upload_url"].split("/", 3)[3]


def test_upload_link_works_without_a_key_into_the_links_team(gateway, member, make_caller, firestore_client):
    other = make_caller("team-b", "admin")
    link = create_link(gateway, member, expiry_seconds=600, max_files=3)

    response = gateway.post(
        link_path(link), files=files(("via-link.jpg", hostile.jpeg(seed=30))), headers=other.headers
    )  # another team's key changes nothing

    assert response.status_code == 201, response.text
    assert [r["team"] for r in team_records(firestore_client, "team-a")] == ["team-a"]
    assert team_records(firestore_client, "team-b") == []


def test_upload_link_file_count_limit(gateway, member, firestore_client):
    link = create_link(gateway, member, max_files=2)

    first = gateway.post(link_path(link), files=files(*[(f"{i}.jpg", hostile.jpeg(seed=40 + i)) for i in range(3)]))
    again = gateway.post(link_path(link), files=files(("late.jpg", hostile.jpeg(seed=50))))

    assert first.status_code == 201
    assert [f["status"] for f in first.json()["files"]] == ["created", "created", "rejected"]
    assert first.json()["files"][2]["status_code"] == 410
    assert again.status_code == 410
    assert len(team_records(firestore_client, "team-a")) == 2


def test_expired_upload_link_is_410(gateway, member, firestore_client):
    link = create_link(gateway, member, expiry_seconds=60)
    token = link["upload_url"].rsplit("/", 1)[1]
    firestore_client.collection(LINKS).document(token_hash(token)).update(
        {"expires_at": dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)}
    )

    response = gateway.post(link_path(link), files=files(("late.jpg", hostile.jpeg(seed=60))))

    assert response.status_code == 410
    assert "expired" in response.json()["error"]["message"]
    assert team_records(firestore_client, "team-a") == []


def test_unknown_upload_link_is_404(gateway):
    response = gateway.post("/v1/uploads/upl_doesnotexist", files=files(("x.jpg", hostile.jpeg())))

    assert response.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"expiry_seconds": 0},
        {"expiry_seconds": 10**9},
        {"max_files": 0},
        {"max_files": "3"},
        {"signed_urls": 5, "max_files": 2},
        {"team": "team-b"},
    ],
)
def test_bad_upload_link_requests_are_400(gateway, member, firestore_client, body):
    response = gateway.post("/v1/upload-links", headers=member.headers, json=body)

    assert response.status_code == 400
    assert list(firestore_client.collection(LINKS).stream()) == []


def test_signed_url_upload_is_filed_by_the_finalize_trigger(gateway, member, storage_client, firestore_client, stack):
    link = create_link(gateway, member, max_files=2, signed_urls=1)
    [direct] = link["direct_uploads"]
    data = hostile.jpeg(size=(1200, 900), seed=70)

    put = requests.put(direct["url"], data=data, headers=direct["headers"], timeout=60)

    assert put.status_code == 200
    image_id = hashlib.sha256(data).hexdigest()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not team_records(firestore_client, "team-a"):
        time.sleep(0.1)
    [record] = team_records(firestore_client, "team-a")
    assert record["id"] == image_id and record["uploaded_by"]["upload_link"] == link["upload_id"]
    while time.monotonic() < deadline and list(storage_client.list_blobs(stack.uploads_bucket, prefix="incoming/")):
        time.sleep(0.1)
    assert list(storage_client.list_blobs(stack.uploads_bucket, prefix="incoming/")) == []
    assert team_objects(storage_client, stack, "team-a") == [f"teams/team-a/{image_id}.jpg"]


def test_invalid_direct_upload_is_removed(gateway, member, storage_client, firestore_client, stack):
    link = create_link(gateway, member, max_files=1, signed_urls=1)
    [direct] = link["direct_uploads"]

    requests.put(direct["url"], data=b"<html>not an image</html>", headers=direct["headers"], timeout=60)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and list(storage_client.list_blobs(stack.uploads_bucket, prefix="incoming/")):
        time.sleep(0.1)
    assert list(storage_client.list_blobs(stack.uploads_bucket, prefix="incoming/")) == []
    assert team_records(firestore_client, "team-a") == []


@pytest.mark.parametrize("role", ["member", "admin", "owner"])
def test_every_role_can_upload(gateway, make_caller, role):
    caller = make_caller("team-a", role)

    response = gateway.post("/v1/images", headers=caller.headers, files=files((f"{role}.jpg", hostile.jpeg(seed=80))))

    assert response.status_code in (200, 201), response.text
