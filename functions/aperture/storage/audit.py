"""Audit trail: every access attempt, allowed or denied.

Each attempt becomes one structured log line (Cloud Logging fields) and one
Firestore record in `audit` with `expires_at` for the TTL policy. Records name
the key by its public id, never the key. Records are written by a background thread in batches (one commit
for everything that queued up meanwhile), so auditing adds neither latency
nor a write per request to the request path.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from dataclasses import asdict

from google.cloud import firestore

from aperture.domain.records import AccessAttempt
from aperture.runtime import logs

COLLECTION = "audit"


class AuditLog:
    BATCH = 400  # below Firestore's 500 writes per commit
    LINGER = 0.1  # seconds

    def __init__(self, db: firestore.Client | None, ttl_days: int = 90, *, synchronous: bool = False):
        self._db = db
        self._ttl = dt.timedelta(days=ttl_days)
        self._synchronous = synchronous
        self._queue: queue.SimpleQueue[dict] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()

    def record(self, attempt: AccessAttempt) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        entry = {**asdict(attempt), "time": now, "expires_at": now + self._ttl}
        logs.log(
            "NOTICE" if attempt.outcome == "allowed" else "WARNING",
            f"access {attempt.outcome}: {attempt.method} {attempt.path} {attempt.status}",
            audit=True,
            request_id=attempt.request_id,
            httpRequest={
                "requestMethod": attempt.method,
                "requestUrl": attempt.path,
                "status": attempt.status,
                "remoteIp": attempt.client_ip,
            },
            key_id=attempt.key_id,
            team=attempt.team,
            user_id=attempt.user_id,
            reason=attempt.reason,
        )
        if self._db is None:
            return
        if self._synchronous:
            self._write([entry])
            return
        self._queue.put(entry)
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
            self._write(batch)

    def _write(self, entries: list[dict]) -> None:
        try:
            batch = self._db.batch()
            collection = self._db.collection(COLLECTION)
            for entry in entries:
                batch.create(collection.document(), entry)
            batch.commit()
        except Exception:
            logs.exception("audit records not stored", count=len(entries))
