"""The event path of the local stack: any write to a bucket reaches `process`
as an Eventarc-shaped CloudEvent."""

from __future__ import annotations

import time

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from aperture.events.process import FINALIZED
from aperture.storage.finalized import COLLECTION
from aperture.storage.histograms import document_id


def wait_for(firestore_client, doc_id: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = firestore_client.collection(COLLECTION).document(doc_id).get()
        if snap.exists:
            return snap.to_dict()
        time.sleep(0.1)
    return None


@pytest.mark.parametrize("leaf", ["plain.bin", "naïve ✓ 100%.bin"])
def test_plain_client_write_reaches_process_as_finalized_cloudevent(
    stack, storage_client, firestore_client, unique, leaf
):
    blob = storage_client.bucket(stack.uploads_bucket).blob(f"{unique}/{leaf}")
    blob.upload_from_string(b"written by a plain storage client", content_type="application/octet-stream")
    blob.reload()

    record = wait_for(firestore_client, document_id(stack.uploads_bucket, blob.name, blob.generation))

    assert record is not None, "process never received the finalize event"
    assert record["event_type"] == FINALIZED
    assert record["event_source"] == f"//storage.googleapis.com/projects/_/buckets/{stack.uploads_bucket}"
    assert record["event_subject"] == f"objects/{blob.name}"
    assert record["generation"] == str(blob.generation)
    assert record["size"] == len(b"written by a plain storage client")


def test_events_keep_flowing_after_an_object_with_a_non_ascii_name(stack, storage_client, firestore_client, unique):
    # Such a name once broke the bridge's header encoding and stopped every later event.
    bucket = storage_client.bucket(stack.uploads_bucket)
    bucket.blob(f"{unique}/✓ first.bin").upload_from_string(b"one")
    after = bucket.blob(f"{unique}/second.bin")
    after.upload_from_string(b"two")
    after.reload()

    assert wait_for(firestore_client, document_id(stack.uploads_bucket, after.name, after.generation)) is not None


def test_duplicate_delivery_records_once(stack, firestore_client):
    import requests
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    data = {"bucket": stack.uploads_bucket, "name": "dup/x.bin", "generation": "42", "size": "3"}
    event = CloudEvent(
        {
            "id": "dup-1",
            "source": f"//storage.googleapis.com/projects/_/buckets/{stack.uploads_bucket}",
            "type": FINALIZED,
            "subject": "objects/dup/x.bin",
        },
        data,
    )
    headers, body = to_binary(event)

    statuses = [
        requests.post(stack.function_url("process"), headers=headers, data=body, timeout=30).status_code
        for _ in range(3)
    ]

    assert statuses == [200, 200, 200]
    docs = list(firestore_client.collection(COLLECTION).where(filter=FieldFilter("name", "==", "dup/x.bin")).stream())
    assert len(docs) == 1
