"""Upload links and audit through the local stack (issue #19, items 4 and 5): revoked links and
links whose key was revoked refuse uploads and write nothing; signed PUT URLs are size-limited and
create-only; link uploads, spoofed forwarding headers and edge refusals land in the audit log as
they should; the link token never reaches a log."""

from __future__ import annotations

import time
import urllib.parse

import pytest
import requests
from google.cloud.firestore_v1.base_query import FieldFilter

from aperture.services.upload_links import KEY_REVOKED, REVOKED
from aperture.storage.audit import COLLECTION as AUDIT
from aperture.storage.images import COLLECTION as IMAGES
from tests.support import hostile

pytestmark = pytest.mark.integration


@pytest.fixture
def member(make_caller):
    return make_caller("team-a", "member")


def files(*items):
    return [("files", (name, data, "application/octet-stream")) for name, data in items]


def create_link(gateway, caller, **body):
    response = gateway.post("/v1/upload-links", headers=caller.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def link_path(link) -> str:
    return "/" + link["upload_url"].split("/", 3)[3]


def token_of(link) -> str:
    return link["upload_url"].rsplit("/", 1)[1]


def team_records(firestore_client, team):
    query = firestore_client.collection(IMAGES).where(filter=FieldFilter("team", "==", team))
    return [d.to_dict() for d in query.stream()]


def team_objects(storage_client, stack, team):
    return [b.name for b in storage_client.list_blobs(stack.uploads_bucket, prefix=f"teams/{team}/")]


def audit_where(firestore_client, field, value, predicate=lambda r: True, timeout=10.0):
    """Audit records with `field == value` that satisfy `predicate`, waiting for background writes."""
    deadline = time.monotonic() + timeout
    while True:
        query = firestore_client.collection(AUDIT).where(filter=FieldFilter(field, "==", value))
        found = [r for r in (d.to_dict() for d in query.stream()) if predicate(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# -- revocation -----------------------------------------------------------------------------


def test_a_revoked_link_answers_410_and_writes_nothing(gateway, member, firestore_client, storage_client, stack):
    link = create_link(gateway, member, max_files=3)

    revoked = gateway.delete(f"/v1/upload-links/{link['upload_id']}", headers=member.headers)
    response = gateway.post(link_path(link), files=files(("late.jpg", hostile.jpeg(seed=91))))

    assert revoked.status_code == 204, revoked.text
    assert response.status_code == 410 and response.json()["error"]["message"] == REVOKED
    assert team_records(firestore_client, "team-a") == []
    assert team_objects(storage_client, stack, "team-a") == []


def test_another_teams_link_is_404_to_revoke(gateway, member, make_caller):
    link = create_link(gateway, member)
    other = make_caller("team-b", "admin")

    response = gateway.delete(f"/v1/upload-links/{link['upload_id']}", headers=other.headers)

    assert response.status_code == 404
    assert gateway.post(link_path(link), files=files(("ok.jpg", hostile.jpeg(seed=92)))).status_code == 201


def test_a_link_whose_creating_key_is_revoked_is_refused(gateway, member, make_caller, firestore_client):
    admin = make_caller("team-a", "admin")
    link = create_link(gateway, member, max_files=100)
    assert gateway.post(link_path(link), files=files(("first.jpg", hostile.jpeg(seed=93)))).status_code == 201

    revoked = gateway.delete(f"/v1/keys/{member.key_id}", headers=admin.headers)
    # The admin function revoked it; the upload function sees it within its key cache bound (1 s here).
    deadline = time.monotonic() + 10
    for seed in range(200, 300):
        response = gateway.post(link_path(link), files=files((f"late-{seed}.jpg", hostile.jpeg(seed=seed))))
        if response.status_code != 201 or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert revoked.status_code == 200, revoked.text
    assert response.status_code == 410 and response.json()["error"]["message"] == KEY_REVOKED
    filed = {r["filename"] for r in team_records(firestore_client, "team-a")}
    assert "first.jpg" in filed and len(filed) <= 1 + 10  # at most what got in within the cache bound


# -- signed PUT URLs ------------------------------------------------------------------------------


def test_a_signed_put_url_carries_the_size_range_and_the_create_only_precondition(
    gateway, member, stack, storage_client, firestore_client
):
    link = create_link(gateway, member, max_files=2, signed_urls=1)
    [direct] = link["direct_uploads"]
    max_bytes = int(stack.function_env().get("APERTURE_MAX_FILE_BYTES", 25 * 1024 * 1024))

    query = urllib.parse.parse_qs(urllib.parse.urlsplit(direct["url"]).query)
    signed = query["X-Goog-SignedHeaders"][0].split(";")
    assert {"content-type", "x-goog-content-length-range", "x-goog-if-generation-match"} <= set(signed)
    assert direct["headers"]["x-goog-content-length-range"] == f"0,{max_bytes}"
    assert direct["headers"]["x-goog-if-generation-match"] == "0"
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"] and query["X-Goog-Signature"][0]

    # What the emulator can show (it checks no signature): the URL works with exactly those headers.
    data = hostile.jpeg(size=(640, 480), seed=95)
    put = requests.put(direct["url"], data=data, headers=direct["headers"], timeout=60)
    assert put.status_code == 200, put.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not team_records(firestore_client, "team-a"):
        time.sleep(0.1)
    assert len(team_records(firestore_client, "team-a")) == 1


def test_a_direct_upload_through_a_revoked_link_is_not_filed(gateway, member, storage_client, firestore_client, stack):
    link = create_link(gateway, member, max_files=2, signed_urls=1)
    [direct] = link["direct_uploads"]
    assert gateway.delete(f"/v1/upload-links/{link['upload_id']}", headers=member.headers).status_code == 204

    requests.put(direct["url"], data=hostile.jpeg(seed=96), headers=direct["headers"], timeout=60)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and list(storage_client.list_blobs(stack.uploads_bucket, prefix="incoming/")):
        time.sleep(0.1)
    assert list(storage_client.list_blobs(stack.uploads_bucket, prefix="incoming/")) == []
    assert team_records(firestore_client, "team-a") == []


# -- audit ------------------------------------------------------------------------------------------


def test_a_link_upload_is_audited_as_its_link_with_the_files(gateway, member, firestore_client):
    link = create_link(gateway, member, max_files=5)

    response = gateway.post(
        link_path(link), files=files(("one.jpg", hostile.jpeg(seed=97)), ("bad.jpg", b"<html>no</html>"))
    )

    assert response.status_code in (201, 207, 422), response.text
    [record] = audit_where(firestore_client, "link_id", link["upload_id"])
    assert (record["team"], record["key_id"], record["method"]) == ("team-a", None, "POST")
    assert record["path"] == "/v1/uploads/…" and record["status"] == response.status_code
    assert [(f["filename"], f["status"]) for f in record["files"]] == [("one.jpg", "created"), ("bad.jpg", "rejected")]
    assert record["client_ip"] == "127.0.0.1"


def test_a_spoofed_leftmost_forwarded_address_is_not_the_audited_client(gateway, member, firestore_client):
    response = gateway.get("/v1/me", headers={**member.headers, "X-Forwarded-For": "6.6.6.6, 7.7.7.7"})

    assert response.status_code == 200
    [record] = audit_where(firestore_client, "key_id", member.key_id, lambda r: r["path"] == "/v1/me")
    assert record["client_ip"] == "127.0.0.1"


def test_a_refusal_at_the_edge_is_audited_with_the_peer_address(gateway, firestore_client):
    response = gateway.get("/v1/me", headers={"x-api-key": "apk_" + "x" * 40, "X-Forwarded-For": "6.6.6.6"})

    assert response.status_code == 401
    [record] = audit_where(firestore_client, "path", "/v1/me", lambda r: r["status"] == 401)
    assert record["reason"].endswith("(at the gateway)") and record["outcome"] == "denied"
    assert record["client_ip"] == "127.0.0.1"


def test_keys_show_who_created_them(gateway, make_caller):
    admin = make_caller("team-a", "admin")
    created = gateway.post("/v1/keys", headers=admin.headers, json={"user_id": admin.user_id})

    listed = gateway.get("/v1/keys", headers=admin.headers).json()["keys"]

    assert created.status_code == 201, created.text
    by_id = {k["key_id"]: k for k in listed}
    assert by_id[created.json()["key_id"]]["created_by"] == {"key_id": admin.key_id, "user_id": admin.user_id}
    assert by_id[admin.key_id]["created_by"] == {"via": "bootstrap"}


# -- the token stays out of the logs ------------------------------------------------------------------


def test_the_link_token_never_reaches_a_log(gateway, member, make_caller, stack):
    link = create_link(gateway, member, max_files=1)
    token = token_of(link)
    gateway.post(link_path(link), files=files(("a.jpg", hostile.jpeg(seed=98))))
    gateway.post(link_path(link), files=files(("b.jpg", hostile.jpeg(seed=99))))  # used up: 410
    gateway.post(link_path(link) + "/extra", files=files(("c.jpg", hostile.jpeg(seed=100))))  # no such route
    gateway.get(link_path(link))  # a method the route does not declare
    gateway.delete(f"/v1/upload-links/{link['upload_id']}", headers=member.headers)
    gateway.post(link_path(link), files=files(("d.jpg", hostile.jpeg(seed=101))))  # revoked
    time.sleep(1.0)  # let the processes flush their lines

    logs = {path.name: path.read_text(errors="replace") for path in stack.log_dir.glob("*.log")}

    assert any("/v1/uploads/" in text for text in logs.values())  # the requests were logged, redacted
    leaked = [name for name, text in logs.items() if token in text or token[4:] in text]
    assert leaked == []
