"""Faults on the local stack (issue #19 item 7; results and commands in docs/reliability.md).

While a part is down, a request answers a clean 503 with Retry-After (or, for a
function process that died under it, the gateway's JSON 502), never a 500 with
a stack trace; afterwards nothing half-made remains and every accepted upload
is processed exactly once. The emulators keep nothing across a restart
(in-memory): a test that restarts one checks what the restart can promise,
and makes its callers again afterwards.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.faults.conftest import assert_unavailable, upload, wait_processed
from tests.support import hostile


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\ncontent-disposition: form-data; name="files"; filename="{name}"\r\n'
            "content-type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def _half_sent_upload(stack, caller, data: bytes) -> tuple[http.client.HTTPConnection, bytes]:
    """An upload whose headers and first half of the body are sent; the rest is returned to send later."""
    body, content_type = _multipart("cut.jpg", data)
    conn = http.client.HTTPConnection("127.0.0.1", stack.ports.gateway, timeout=60)
    conn.putrequest("POST", "/v1/images")
    for key, value in {**caller.headers, "Content-Type": content_type, "Content-Length": str(len(body))}.items():
        conn.putheader(key, value)
    conn.endheaders()
    half = len(body) // 2
    conn.send(body[:half])
    return conn, body[half:]


def _records(stack, team: str) -> list[dict]:
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    client = firestore.Client(project=stack.project)
    return [d.to_dict() for d in client.collection("images").where(filter=FieldFilter("team", "==", team)).stream()]


def _objects(stack, team: str) -> list[str]:
    from google.cloud import storage

    client = storage.Client(project=stack.project)
    return [b.name for b in client.list_blobs(stack.uploads_bucket, prefix=f"teams/{team}/")]


# (a) Firestore stopped -------------------------------------------------------------------


def test_firestore_stopped_answers_503_with_retry_after_then_recovers(stack, make_caller):
    caller = make_caller()
    assert requests.get(f"{stack.gateway_url}/v1/images", headers=caller.headers, timeout=30).status_code == 200
    stack.stop_part("firestore")
    try:
        # Through the gateway (which still remembers the key as good, GOOD_KEY_SECONDS) and
        # straight to the functions, whose own key check and reads need Firestore.
        calls = [
            (f"{stack.gateway_url}/v1/images", "gateway-list"),
            (f"{stack.function_url('images')}/v1/images", "images-list"),
            (f"{stack.function_url('images')}/v1/stats", "images-stats"),
            (f"{stack.function_url('admin')}/v1/me", "admin-me"),
        ]

        def call(item):
            url, rid = item
            headers = {**caller.headers, "X-Request-Id": f"fault-a-{rid}"}
            started = time.monotonic()
            return requests.get(url, headers=headers, timeout=120), time.monotonic() - started

        with ThreadPoolExecutor(len(calls)) as pool:
            answers = list(pool.map(call, calls))
        for (url, _), (response, seconds) in zip(calls, answers):
            assert_unavailable(response)
            assert seconds < 30, (url, seconds)
        logged = (stack.log_dir / "function-images.log").read_text()
        assert "fault-a-images-list" in logged and "backend unavailable" in logged
    finally:
        stack.start_part("firestore")
    # The emulator kept nothing: the key is gone with the rest, so a new caller.
    again = make_caller()
    response = requests.get(f"{stack.gateway_url}/v1/images", headers=again.headers, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["images"] == []


@pytest.mark.slow
def test_firestore_stopped_gateway_edge_check_of_an_unremembered_key_is_503(stack, make_caller):
    caller = make_caller()
    stack.stop_part("firestore")
    try:
        response = requests.get(f"{stack.gateway_url}/v1/images", headers=caller.headers, timeout=120)
    finally:
        stack.start_part("firestore")
    assert_unavailable(response)


# (b) storage stopped mid-upload ----------------------------------------------------------


def test_storage_stopped_mid_upload_answers_503_and_leaves_no_record(stack, make_caller):
    caller = make_caller()
    conn, rest = _half_sent_upload(stack, caller, hostile.jpeg(seed=31))
    stack.stop_part("storage")
    try:
        conn.send(rest)
        response = conn.getresponse()
        text = response.read().decode()
        assert response.status == 503, text
        assert "Traceback" not in text
        [result] = json.loads(text)["files"]
        assert result["status"] == "rejected" and result["status_code"] == 503
        # The object was not written, so its record was rolled back.
        assert _records(stack, caller.team) == []
    finally:
        conn.close()
        stack.start_part("storage")
    # fake-gcs-server's memory backend kept nothing (buckets made again): the same
    # upload is accepted afresh and processed once.
    response = upload(stack, caller, ("again.jpg", hostile.jpeg(seed=31)))
    assert response.status_code == 201, response.text
    [image_id] = [f["id"] for f in response.json()["files"]]
    wait_processed(stack, caller, [image_id])
    assert [r["id"] for r in _records(stack, caller.team)] == [image_id]
    assert len(_objects(stack, caller.team)) == 1


# (c) a function process killed mid-request -----------------------------------------------


def test_function_killed_mid_request_is_a_json_502_then_the_next_request_works(stack, make_caller):
    caller = make_caller()
    conn, rest = _half_sent_upload(stack, caller, hostile.jpeg(seed=32))
    time.sleep(0.5)  # the gateway has connected to `upload` and is streaming the body to it
    stack.kill_function("upload")
    try:
        response = conn.getresponse()  # the rest of the body is never sent: the function is gone
        text = response.read().decode()
        assert response.status in (502, 503), text
        assert json.loads(text)["error"]["code"] == response.status
        assert response.getheader("X-Request-Id")
    finally:
        conn.close()
        stack.start_part("function-upload")
    assert _records(stack, caller.team) == [] and _objects(stack, caller.team) == []
    response = upload(stack, caller, ("after.jpg", hostile.jpeg(seed=32)))
    assert response.status_code == 201, response.text
    wait_processed(stack, caller, [response.json()["files"][0]["id"]])


# (d) the process function killed mid-event -----------------------------------------------


@pytest.mark.slow
def test_process_killed_mid_event_ends_processed_exactly_once(stack, make_caller):
    caller = make_caller()
    images = [(f"{i}.jpg", hostile.jpeg(seed=100 + i)) for i in range(6)]
    response = upload(stack, caller, *images)
    assert response.status_code == 201, response.text
    ids = [f["id"] for f in response.json()["files"]]
    # Kill `process` while the bridge's events are in flight: once the first image is done.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        statuses = [r.get("status") for r in _records(stack, caller.team)]
        if "processed" in statuses:
            break
        time.sleep(0.05)
    stack.kill_function("process")
    cut = [r["id"] for r in _records(stack, caller.team) if r.get("status") != "processed"]
    stack.start_part("function-process")
    records = wait_processed(stack, caller, ids, timeout=120)
    assert cut, "every event was done before the kill: nothing was cut"
    assert set(records) == set(ids)
    stats = requests.get(f"{stack.gateway_url}/v1/stats", headers=caller.headers, timeout=30).json()
    assert stats["total_images"] == len(ids)
    assert sum(day["uploads"] for day in stats["uploads_per_day"]) == len(ids)
    assert stats["formats"] == {"JPEG": len(ids)}


# (e) the Pub/Sub emulator restarted ------------------------------------------------------


@pytest.mark.slow
def test_pubsub_restarted_uploads_after_it_are_processed(stack, make_caller):
    """What a restart loses: notifications published while it was down or unacked in it.
    What it must not break: the API answers meanwhile, and once it is back (topics,
    subscriptions and the bridge made again) new uploads are processed."""
    caller = make_caller()
    stack.stop_part("pubsub")
    try:
        response = upload(stack, caller, ("during.jpg", hostile.jpeg(seed=41)))
        # The upload path does not publish: the object and record are written.
        assert response.status_code == 201, response.text
        during = response.json()["files"][0]["id"]
    finally:
        stack.start_part("pubsub")
    response = upload(stack, caller, ("after.jpg", hostile.jpeg(seed=42)))
    assert response.status_code == 201, response.text
    after = response.json()["files"][0]["id"]
    wait_processed(stack, caller, [after])
    statuses = {r["id"]: r["status"] for r in _records(stack, caller.team)}
    assert statuses[after] == "processed"
    # `during`'s notification was lost with the emulator: documented, not hidden.
    assert statuses[during] in ("pending", "processed")
