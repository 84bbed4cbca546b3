"""The Firestore client gives up on an unreachable backend within FIRESTORE_RETRY_SECONDS
(the library's defaults retry for 60 to 300 s), without shortening a healthy call."""

from __future__ import annotations

import time

import pytest
from google.api_core import exceptions as gexc

from aperture.storage.clients import firestore_client


def test_every_firestore_method_retries_for_the_bound_only(monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
    client = firestore_client("p", retry_seconds=7.0)
    wrapped = client._firestore_api._transport._wrapped_methods
    retries = [m._retry for m in wrapped.values() if m._retry is not None]
    assert retries and all(r.timeout == 7.0 for r in retries)


def test_an_unreachable_firestore_fails_within_the_bound(monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")  # nothing listens on port 1
    client = firestore_client("p", retry_seconds=1.0)
    started = time.monotonic()
    with pytest.raises((gexc.RetryError, gexc.ServiceUnavailable)):
        client.collection("c").document("d").get()
    assert time.monotonic() - started < 10
