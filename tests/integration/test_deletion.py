"""Deletion is deletion (#19 item 3), on the local stack: deleting an image removes every
generation of its bytes, its renditions and the outputs of the jobs made from it."""

from __future__ import annotations

import time
import uuid

import pytest
from google.api_core import exceptions as gexc

from aperture.storage.objects import ObjectStore
from tests.integration.test_jobs import submit, wait_finished
from tests.support.api import settled, upload
from tests.support.images import encode, random_image


def generations(storage_client, bucket: str, prefix: str) -> list[tuple[str, int]]:
    return [(b.name, b.generation) for b in storage_client.list_blobs(bucket, prefix=prefix, versions=True)]


def test_deleting_an_image_a_job_used_removes_its_outputs_and_every_generation(
    stack, gateway, make_caller, storage_client, firestore_client
):
    from aperture.storage.images import ImageStore

    alice = make_caller("team-a", "member")
    [image_id] = upload(gateway, alice, ("del.png", encode(random_image("RGB", size=(64, 48), seed=41), "PNG")))
    [other_id] = upload(gateway, alice, ("keep.png", encode(random_image("RGB", size=(64, 48), seed=42), "PNG")))
    images = ImageStore(firestore_client)
    record = settled(images, "team-a", image_id)
    settled(images, "team-a", other_id)
    job = submit(
        gateway,
        alice,
        [{"input": image_id, "output": "a.png"}, {"input": other_id, "output": "b.png"}],
        ["split=True"],
    ).json()
    finished = wait_finished(gateway, alice, job["job_id"])
    assert finished["status"] == "done", finished
    # a rendition too
    assert gateway.get(f"/v1/images/{image_id}.webp", headers=alice.headers).status_code == 200
    base = f"jobs/team-a/{job['job_id']}/"
    before = {name for name, _ in generations(storage_client, stack.derived_bucket, base)}
    assert len(before) == 8

    response = gateway.delete(f"/v1/images/{image_id}", headers=alice.headers)

    assert response.status_code == 204, response.text
    assert generations(storage_client, stack.uploads_bucket, record.object) == []
    assert generations(storage_client, stack.derived_bucket, f"renditions/team-a/{image_id}/") == []
    left = {name for name, _ in generations(storage_client, stack.derived_bucket, base)}
    assert left == {n for n in before if n.startswith(base + "b")} and len(left) == 4
    items = gateway.get(f"/v1/jobs/{job['job_id']}", headers=alice.headers).json()["items"]
    assert [len(item["outputs"]) for item in items] == [0, 4]
    doc = firestore_client.collection("jobs").document(job["job_id"]).collection("items").document("00000").get()
    assert doc.get("outputs_deleted")["reason"] == "the input image was deleted"
    assert sorted(doc.get("outputs_deleted")["names"]) == sorted(n[len(base) :] for n in before - left)
    # the outputs of the deleted image are 404, the others still download
    name = sorted(left)[0][len(base) :]
    assert gateway.get(f"/v1/jobs/{job['job_id']}/outputs/{name}", headers=alice.headers).status_code == 200


@pytest.fixture
def versioned_bucket(storage_client):
    """A bucket with versioning on, as infra/storage.tf makes every bucket (the stack's are not)."""
    bucket = storage_client.bucket(f"versioned-{uuid.uuid4().hex[:12]}")
    bucket.versioning_enabled = True
    created = storage_client.create_bucket(bucket)
    yield created
    for blob in storage_client.list_blobs(created.name, versions=True):
        try:
            created.delete_blob(blob.name, generation=blob.generation)
        except gexc.NotFound:
            pass


def test_delete_generations_removes_noncurrent_generations_too(storage_client, versioned_bucket):
    bucket = versioned_bucket.name
    for n in range(3):
        versioned_bucket.blob("teams/t/x.png").upload_from_string(f"v{n}".encode())
        time.sleep(0.01)
    versioned_bucket.blob("teams/t/x.png.keep").upload_from_string(b"another object")
    # Every generation the bucket lists (fake-gcs-server keeps only the live one;
    # Cloud Storage all three: the in-memory fake's test covers that case).
    stored = [g for g in generations(storage_client, bucket, "teams/t/x.png") if g[0] == "teams/t/x.png"]

    deleted = ObjectStore(storage_client).delete_generations(bucket, "teams/t/x.png")

    assert stored and deleted == len(stored)
    assert [name for name, _ in generations(storage_client, bucket, "teams/t/")] == ["teams/t/x.png.keep"]
