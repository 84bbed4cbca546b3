"""AuditLog's bounded retries: a durable write is retried and then raises; a retry after a
commit that landed stores nothing twice; no record carries a link token. Firestore is a
minimal stand-in recording what would be committed (the client's batch/collection surface)."""

from __future__ import annotations

import time

import pytest
from google.api_core import exceptions as gexc

from aperture.domain.records import AccessAttempt
from aperture.storage.audit import AuditLog


class Db:
    def __init__(self, failures: list):
        self.failures = failures  # per commit, in order: raise this (None: succeed; "landed": store, then fail)
        self.stored: dict[str, dict] = {}
        self.commits = 0

    def collection(self, name):
        return self

    def document(self, doc_id=None):
        return _Doc(self, doc_id)

    def batch(self):
        db = self

        class Batch:
            def __init__(self):
                self.items = []

            def create(self, doc, entry):
                self.items.append((doc.id, entry))

            def commit(self):
                db.commits += 1
                failure = db.failures.pop(0) if db.failures else None
                if failure == "landed":  # stored, but the answer was lost
                    db.stored.update(self.items)
                    raise gexc.DeadlineExceeded("answer lost")
                if any(doc_id in db.stored for doc_id, _ in self.items):
                    raise gexc.AlreadyExists("a document exists")  # a batch of creates fails whole
                if failure is not None:
                    raise failure
                db.stored.update(self.items)

        return Batch()

    def create_one(self, doc_id, entry):
        if doc_id in self.stored:
            raise gexc.AlreadyExists(doc_id)
        self.stored[doc_id] = entry


def attempt(path: str = "/v1/images", method: str = "POST") -> AccessAttempt:
    return AccessAttempt(method, path, 201, "allowed", None, "key_1", "team-a", "usr_1", "10.0.0.1", "req-1")


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(AuditLog, "BACKOFF", 0.0)


def test_a_durable_write_is_retried_until_it_is_stored():
    db = Db([gexc.ServiceUnavailable("x"), gexc.DeadlineExceeded("y"), None])

    AuditLog(db).record(attempt(), durable=True)

    assert db.commits == 3 and len(db.stored) == 1


def test_a_durable_write_that_fails_every_try_raises():
    db = Db([gexc.ServiceUnavailable("x")] * 5)

    with pytest.raises(gexc.ServiceUnavailable):
        AuditLog(db).record(attempt(), durable=True)

    assert db.commits == AuditLog.ATTEMPTS and db.stored == {}


def test_a_retry_after_a_commit_that_landed_stores_nothing_twice():
    db = Db(["landed"])

    AuditLog(db).record(attempt(), durable=True)

    assert len(db.stored) == 1


class _Doc:
    def __init__(self, db, doc_id):
        self.db, self.id = db, doc_id

    def create(self, entry):
        self.db.create_one(self.id, entry)


def test_background_records_are_retried_then_logged_in_full(capsys):
    db = Db([gexc.ServiceUnavailable("x")] * 5)

    AuditLog(db).record(attempt(method="GET"))

    deadline = time.monotonic() + 5
    out = ""
    while "audit records not stored" not in out and time.monotonic() < deadline:
        time.sleep(0.02)
        out += capsys.readouterr().out
    assert "audit records not stored" in out and "req-1" in out
    assert db.commits == AuditLog.ATTEMPTS


def test_a_stored_record_and_its_log_line_never_carry_a_link_token(capsys):
    db = Db([])

    AuditLog(db).record(attempt("/v1/uploads/upl_secret-token"), durable=True)

    [entry] = db.stored.values()
    assert entry["path"] == "/v1/uploads/…"
    assert "upl_secret" not in capsys.readouterr().out
