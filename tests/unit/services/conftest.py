"""Every service test gets fresh in-memory repositories (tests/unit/fakes.py)."""

from __future__ import annotations

import pytest

from tests.unit import fakes
from tests.unit.services.helpers import upload_service


@pytest.fixture
def objects() -> fakes.FakeObjectStore:
    return fakes.FakeObjectStore()


@pytest.fixture
def images() -> fakes.FakeImageStore:
    return fakes.FakeImageStore()


@pytest.fixture
def histograms() -> fakes.FakeHistogramStore:
    return fakes.FakeHistogramStore()


@pytest.fixture
def identity() -> fakes.FakeIdentityStore:
    return fakes.FakeIdentityStore()


@pytest.fixture
def counters() -> fakes.FakeTeamCounters:
    return fakes.FakeTeamCounters()


@pytest.fixture
def links() -> fakes.FakeUploadLinkStore:
    return fakes.FakeUploadLinkStore()


@pytest.fixture
def audit() -> fakes.FakeAuditLog:
    return fakes.FakeAuditLog()


@pytest.fixture
def issuer() -> fakes.FakeKeyIssuer:
    return fakes.FakeKeyIssuer()


@pytest.fixture
def signer() -> fakes.FakeUrlSigner:
    return fakes.FakeUrlSigner()


@pytest.fixture
def uploads(objects, images):
    return upload_service(objects, images)


@pytest.fixture
def job_store() -> fakes.FakeJobStore:
    return fakes.FakeJobStore()


@pytest.fixture
def job_queue() -> fakes.FakeJobQueue:
    return fakes.FakeJobQueue()
