"""Fault tests (issue #19 item 7, docs/reliability.md): their own local stack on free
ports, so stopping, killing and restarting its parts never disturbs the shared
integration stack. Every test puts back what it broke (in `finally`)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.support.stack import running_stack

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    # Keys are remembered 1 s per function instance, so a request during an outage
    # needs Firestore for its key check too (the worst case, not a cached one).
    env = {"APERTURE_PREWARM_SOURCE": "false", "APERTURE_KEY_CACHE_SECONDS": "1"}
    with running_stack(tmp_path_factory.mktemp("fault-stack-logs"), env) as stack:
        yield stack


@pytest.fixture
def make_caller(stack):
    """A fresh team and member key, made straight in Firestore (a new client each time: the
    emulator may have been restarted, which empties it)."""
    from google.cloud import firestore

    from aperture.services import provisioning
    from aperture.storage.identity import IdentityStore
    from aperture.storage.key_issuers import LocalKeyIssuer

    def make(team: str | None = None):
        team = team or f"f-{uuid.uuid4().hex[:10]}"
        identity = IdentityStore(firestore.Client(project=stack.project))
        _, user, key, secret = provisioning.bootstrap(
            identity, LocalKeyIssuer(), team_id=team, email=f"m-{uuid.uuid4().hex[:6]}@{team}.example", role="member"
        )
        return Caller(team, {"x-api-key": secret})

    return make


class Caller:
    def __init__(self, team: str, headers: dict[str, str]):
        self.team = team
        self.headers = headers


def upload(stack, caller, *named: tuple[str, bytes], timeout: float = 60) -> requests.Response:
    files = [("files", (name, data, "application/octet-stream")) for name, data in named]
    return requests.post(f"{stack.gateway_url}/v1/images", files=files, headers=caller.headers, timeout=timeout)


def wait_processed(stack, caller, ids, timeout: float = 90.0) -> dict[str, dict]:
    """Every image's record once `process` is done with all of them (fails on `failed`)."""
    deadline = time.monotonic() + timeout
    done: dict[str, dict] = {}
    while time.monotonic() < deadline and len(done) < len(ids):
        for image_id in ids:
            if image_id in done:
                continue
            response = requests.get(f"{stack.gateway_url}/v1/images/{image_id}", headers=caller.headers, timeout=30)
            if response.status_code == 200:
                record = response.json()
                assert record.get("status") != "failed", record
                if record.get("status") == "processed":
                    done[image_id] = record
        time.sleep(0.2)
    assert len(done) == len(ids), f"still processing: {set(ids) - set(done)}"
    return done


def assert_unavailable(response: requests.Response) -> None:
    """A clean 503: JSON error body, Retry-After, no stack trace."""
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert body["error"]["code"] == 503 and body["error"]["message"]
    assert "Traceback" not in response.text
