"""Histograms are kept in Firestore per object generation and shared between
instances (two StatsService objects stand for two function instances)."""

from __future__ import annotations

import time

from google.cloud.firestore_v1.base_query import FieldFilter

from aperture.services.stats import COMPUTED, FIRESTORE, MEMORY, StatsService
from aperture.storage.histograms import COLLECTION, HistogramStore
from aperture.storage.objects import ObjectStore
from tests.support.images import encode, random_image


def new_instance(storage_client, firestore_client) -> StatsService:
    return StatsService(ObjectStore(storage_client), HistogramStore(firestore_client), max_pixels=10_000_000)


def wait_for_documents(firestore_client, name: str, count: int, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        docs = list(firestore_client.collection(COLLECTION).where(filter=FieldFilter("name", "==", name)).stream())
        if len(docs) >= count or time.monotonic() > deadline:
            return docs
        time.sleep(0.05)


def test_second_instance_reads_the_stored_histogram(storage_client, firestore_client, source_bucket, unique):
    name = f"{unique}/shared.png"
    source_bucket.blob(name).upload_from_string(encode(random_image("RGBA", seed=5)))
    info = ObjectStore(storage_client).info(source_bucket.name, name)
    first, second = new_instance(storage_client, firestore_client), new_instance(storage_client, firestore_client)

    computed, source_a = first.histograms(info, need_luma=True)
    again, source_b = first.histograms(info)
    docs = wait_for_documents(firestore_client, name, 1)
    shared, source_c = second.histograms(info)

    assert (source_a, source_b, source_c) == (COMPUTED, MEMORY, FIRESTORE)
    assert len(docs) == 1
    assert set(shared.bands) == set(computed.bands)
    for band in computed.bands:
        assert shared.bands[band] == computed.bands[band]


def test_each_generation_has_its_own_document(storage_client, firestore_client, source_bucket, unique):
    name = f"{unique}/regen.png"
    service = new_instance(storage_client, firestore_client)
    objects = ObjectStore(storage_client)
    for seed in (1, 2):
        source_bucket.blob(name).upload_from_string(encode(random_image("L", seed=seed)))
        service.histograms(objects.info(source_bucket.name, name))

    docs = wait_for_documents(firestore_client, name, 2)

    assert len({d.to_dict()["generation"] for d in docs}) == 2
    assert all("expires_at" in d.to_dict() for d in docs)
