"""Audit trail: every access attempt, allowed or denied.

Each attempt becomes one structured log line (Cloud Logging fields) and one
Firestore record in `audit` with `expires_at` for the TTL policy. Records name
the key by its public id, never the key, and an upload link's path without its
token (`/v1/uploads/…`).

Two ways to store the record (the caller picks, `aperture.services.access`):

* `record(attempt)`: queued for a background thread that commits batches (one
  commit for everything that queued up meanwhile), so auditing adds neither
  latency nor a write per request; a failed commit is retried `ATTEMPTS` times
  and then the records are logged in full at ERROR (they are not lost silently).
* `record(attempt, durable=True)`: written before `record` returns, retried
  `ATTEMPTS` times; the last error is raised when it still fails.

Every record has its document id before the first try and is written
create-only, so a retry after a commit that did land stores nothing twice.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
import uuid
from dataclasses import asdict

from google.api_core import exceptions as gexc
from google.cloud import firestore

from aperture.domain.records import AccessAttempt
from aperture.runtime import logs

COLLECTION = "audit"


class AuditLog:
    BATCH = 400  # below Firestore's 500 writes per commit
    LINGER = 0.1  # seconds
    ATTEMPTS = 3  # tries of one write before it counts as failed
    BACKOFF = 0.05  # seconds before the 2nd try, doubled for each one after

    def __init__(self, db: firestore.Client | None, ttl_days: int = 90, *, synchronous: bool = False):
        """`synchronous`: every record is written as a durable one (the local gateway's edge check)."""
        self._db = db
        self._ttl = dt.timedelta(days=ttl_days)
        self._synchronous = synchronous
        self._queue: queue.SimpleQueue[tuple[str, dict]] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()

    def record(self, attempt: AccessAttempt, *, durable: bool = False) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        path = logs.redact_path(attempt.path)
        entry = {**asdict(attempt), "path": path, "time": now, "expires_at": now + self._ttl}
        logs.log(
            "NOTICE" if attempt.outcome == "allowed" else "WARNING",
            f"access {attempt.outcome}: {attempt.method} {path} {attempt.status}",
            audit=True,
            request_id=attempt.request_id,
            httpRequest={
                "requestMethod": attempt.method,
                "requestUrl": path,
                "status": attempt.status,
                "remoteIp": attempt.client_ip,
            },
            key_id=attempt.key_id,
            team=attempt.team,
            user_id=attempt.user_id,
            reason=attempt.reason,
            **({"link_id": attempt.link_id} if attempt.link_id else {}),
            **({"files": attempt.files} if attempt.files is not None else {}),
        )
        if self._db is None:
            return
        item = (uuid.uuid4().hex, entry)
        if durable or self._synchronous:
            self._write([item])  # raises when every try failed
            return
        self._queue.put(item)
        self._ensure_writer()

    def _ensure_writer(self) -> None:
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._drain, name="audit-writer", daemon=True)
                self._writer.start()

    def _drain(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Linger briefly so a busy instance commits a few times a second, not per request.
            deadline = time.monotonic() + self.LINGER
            while len(batch) < self.BATCH:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            try:
                self._write(batch)
            except Exception:
                logs.exception("audit records not stored", count=len(batch), records=[e for _, e in batch])

    def _write(self, items: list[tuple[str, dict]]) -> None:
        """Commit `items` create-only, `ATTEMPTS` tries; raise the last error."""
        assert self._db is not None
        for attempt in range(self.ATTEMPTS):
            try:
                self._commit(items)
                return
            except gexc.AlreadyExists:
                # A try whose commit landed although its answer was lost: store what is missing, one by one.
                self._commit_each(items)
                return
            except Exception:
                if attempt == self.ATTEMPTS - 1:
                    raise
                time.sleep(self.BACKOFF * 2**attempt)

    def _commit(self, items: list[tuple[str, dict]]) -> None:
        assert self._db is not None
        batch = self._db.batch()
        collection = self._db.collection(COLLECTION)
        for doc_id, entry in items:
            batch.create(collection.document(doc_id), entry)
        batch.commit()

    def _commit_each(self, items: list[tuple[str, dict]]) -> None:
        assert self._db is not None
        collection = self._db.collection(COLLECTION)
        for doc_id, entry in items:
            try:
                collection.document(doc_id).create(entry)
            except gexc.AlreadyExists:
                pass
