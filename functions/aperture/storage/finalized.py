"""Firestore repository of object generations `process` saw and left alone (`objects`).

One create-only document per (bucket, object, generation), so a redelivered
finalize event is a no-op.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from google.api_core import exceptions as gexc
from google.cloud import firestore

from aperture.runtime import logs
from aperture.storage.histograms import document_id

COLLECTION = "objects"


class FinalizedObjects:
    def __init__(self, db: firestore.Client):
        self._collection = db.collection(COLLECTION)

    def record(self, event: Mapping[str, Any], data: Mapping[str, Any]) -> bool:
        """Record one object generation; False when this generation was already recorded."""
        bucket, name, generation = data["bucket"], data["name"], int(data["generation"])
        try:
            self._collection.document(document_id(bucket, name, generation)).create(
                {
                    "bucket": bucket,
                    "name": name,
                    "generation": str(generation),
                    "size": int(data.get("size") or 0),
                    "content_type": data.get("contentType"),
                    "event_id": event["id"],
                    "event_type": event["type"],
                    "event_source": event["source"],
                    # Binary-mode ce-* headers are percent-encoded (CloudEvents HTTP binding);
                    # the SDK hands them over as they came.
                    "event_subject": unquote(event["subject"]) if event.get("subject") else None,
                    "received_at": dt.datetime.now(dt.timezone.utc),
                }
            )
        except gexc.AlreadyExists:
            logs.info("duplicate finalize event ignored", bucket=bucket, object=name, generation=generation)
            return False
        logs.info("object recorded", bucket=bucket, object=name, generation=generation, event_id=event["id"])
        return True
