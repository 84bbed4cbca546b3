"""Firestore repository for per-object-generation histograms.

One document per (bucket, object, generation): an overwrite creates a new
generation and so a new key, which is why a stored histogram can never be
stale. Documents are written create-only (first writer wins, no
read-modify-write transaction) and carry `expires_at` for a TTL policy.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from google.api_core import exceptions as gexc
from google.cloud import firestore

from aperture.domain.records import StoredHistograms

COLLECTION = "histograms"


def document_id(bucket: str, name: str, generation: int) -> str:
    # Object names may hold "/" and be 1 KiB long; document ids may not.
    digest = hashlib.sha256(f"{bucket}\0{name}".encode()).hexdigest()[:40]
    return f"{digest}-{generation}"


class HistogramStore:
    def __init__(self, db: firestore.Client, ttl_days: int = 30, collection: str = COLLECTION):
        self._collection = db.collection(collection)
        self._ttl = dt.timedelta(days=ttl_days)

    def get(self, bucket: str, name: str, generation: int) -> StoredHistograms | None:
        snap = self._collection.document(document_id(bucket, name, generation)).get()
        if not snap.exists:
            return None
        data = snap.to_dict()
        return StoredHistograms(
            payload=bytes(data["payload"]),
            width=data["width"],
            height=data["height"],
            mode=data["mode"],
            format=data.get("format"),
            frames=data.get("frames", 1),
        )

    def put(self, bucket: str, name: str, generation: int, record: StoredHistograms) -> bool:
        """Store once; returns False when another writer got there first."""
        now = dt.datetime.now(dt.timezone.utc)
        try:
            self._collection.document(document_id(bucket, name, generation)).create(
                {
                    "bucket": bucket,
                    "name": name,
                    "generation": str(generation),
                    "payload": record.payload,
                    "width": record.width,
                    "height": record.height,
                    "mode": record.mode,
                    "format": record.format,
                    "frames": record.frames,
                    "created_at": now,
                    "expires_at": now + self._ttl,
                }
            )
        except gexc.AlreadyExists:
            return False
        return True

    def delete(self, bucket: str, name: str, generation: int) -> None:
        self._collection.document(document_id(bucket, name, generation)).delete()
