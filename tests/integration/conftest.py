"""The local stack for integration tests: started once per session on free
ports (the same code as `make run`), Firestore emptied before every test."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
import requests

from tests.support.stack import running_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    # Source-bucket prewarming is off so stats tests see their own computations;
    # tests/integration/test_processing.py exercises it in-process. Job items whose
    # output names contain `fails-once` / `poison` fail once / always (test_jobs.py).
    # Key records are remembered 1 s per function instance (5 s deployed), so tests of
    # revocation seen by another instance wait for a short bound (test_auth.py).
    env = {
        "APERTURE_PREWARM_SOURCE": "false",
        "APERTURE_JOB_FAULTS": "once:fails-once,always:poison",
        "APERTURE_KEY_CACHE_SECONDS": "1",
    }
    with running_stack(tmp_path_factory.mktemp("stack-logs"), env) as stack:
        yield stack


@pytest.fixture(autouse=True)
def _clean_state(stack, storage_client, firestore_client):
    """Every test starts with empty Firestore and empty uploads/derived buckets
    (the seeded source bucket is shared and read-only for tests). Work the
    previous test set off (finalize events still being processed) is let
    finish first, so it cannot land in this test's fresh state."""
    _wait_for_pipeline_idle(storage_client, firestore_client, stack)
    from google.api_core import exceptions as gexc

    # Objects before records: an event still queued for a removed object is
    # answered "gone" at once, where one for an object whose record went first
    # is retried ("record not committed yet") until the object goes too.
    for bucket in (stack.uploads_bucket, stack.derived_bucket):
        for blob in storage_client.list_blobs(bucket):
            try:
                blob.delete()
            except gexc.NotFound:
                pass  # the process function removed it meanwhile
    stack.reset_firestore()


def _wait_for_pipeline_idle(storage_client, firestore_client, stack, timeout: float = 30.0) -> None:
    import time

    from google.cloud.firestore_v1.base_query import FieldFilter

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = list(
            firestore_client.collection("images").where(filter=FieldFilter("status", "==", "pending")).limit(1).stream()
        )
        incoming = list(storage_client.list_blobs(stack.uploads_bucket, prefix="incoming/", max_results=1))
        if not pending and not incoming:
            return
        time.sleep(0.1)


@pytest.fixture(scope="session")
def container(stack):
    """The composition root the functions use, built in the test process against the stack."""
    from aperture.config import Config
    from aperture.container import Container

    return Container(Config.from_env())


@pytest.fixture(scope="session")
def storage_client(stack):
    from google.cloud import storage

    return storage.Client(project=stack.project)


@pytest.fixture(scope="session")
def firestore_client(stack):
    from google.cloud import firestore

    return firestore.Client(project=stack.project)


@pytest.fixture(scope="session")
def source_bucket(stack, storage_client):
    return storage_client.bucket(stack.source_bucket)


@pytest.fixture(scope="session")
def seeded(stack, storage_client):
    from devstack.seed import seed_source_bucket

    return seed_source_bucket(storage_client, stack.source_bucket)


class Gateway(requests.Session):
    """requests.Session whose relative URLs go to the local gateway."""

    def __init__(self, base: str):
        super().__init__()
        self.base = base

    def request(self, method, url, *args, **kwargs):
        if url.startswith("/"):
            url = self.base + url
        kwargs.setdefault("timeout", 60)
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def gateway(stack):
    with Gateway(stack.gateway_url) as session:
        yield session


@pytest.fixture
def unique():
    """A unique prefix for objects a test creates (buckets outlive Firestore resets)."""
    return f"t-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Caller:
    """A user with a live key, made straight in Firestore (as `aperture bootstrap` does)."""

    team: str
    user_id: str
    key_id: str
    key: str
    role: str

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.key}


@pytest.fixture
def identity(firestore_client):
    from aperture.storage.identity import IdentityStore

    return IdentityStore(firestore_client)


@pytest.fixture
def make_caller(identity):
    from aperture.services import provisioning
    from aperture.storage.key_issuers import LocalKeyIssuer

    def make(team: str, role: str = "member") -> Caller:
        _, user, key, secret = provisioning.bootstrap(
            identity, LocalKeyIssuer(), team_id=team, email=f"{role}-{uuid.uuid4().hex[:6]}@{team}.example", role=role
        )
        return Caller(team, user.user_id, key.key_id, secret, role)

    return make
