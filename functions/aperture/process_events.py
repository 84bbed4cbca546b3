"""The `process` function: reacts to google.cloud.storage.object.v1.finalized.

Team images, direct uploads and source-bucket objects go to `processing`;
every other object generation is recorded once (create-only, so a
redelivered event is a no-op).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping
from urllib.parse import unquote

from google.api_core import exceptions as gexc
from google.cloud import firestore

from aperture import clients, logs, services
from aperture.histogram_store import document_id
from aperture.object_store import ObjectInfo
from aperture.processing import RecordPending

FINALIZED = "google.cloud.storage.object.v1.finalized"
COLLECTION = "objects"


def handle(event) -> None:
    """Entry point of the `process` function for one CloudEvent."""
    if event["type"] != FINALIZED:
        return
    data = event.data
    info = ObjectInfo(data["bucket"], data["name"], int(data["generation"]), int(data.get("size") or 0),
                      data.get("contentType"), data.get("md5Hash"),
                      metadata=tuple(sorted((data.get("metadata") or {}).items())), created=data.get("timeCreated"))
    try:
        outcome = services.processor().handle(info)
    except RecordPending as exc:
        # An error answer makes Eventarc (and the local bridge) deliver the event again later.
        logs.info(f"process: retry later: {exc}", bucket=info.bucket, object=info.name, event_id=event["id"])
        raise
    if outcome == "ignored":
        record_finalized(clients.firestore_client(), event.get_attributes(), data)
    else:
        logs.info(f"process: {outcome}", bucket=info.bucket, object=info.name, generation=info.generation,
                  event_id=event["id"])


def record_finalized(db: firestore.Client, event: Mapping[str, Any], data: Mapping[str, Any]) -> bool:
    """Record one object generation; False when this generation was already recorded."""
    bucket, name, generation = data["bucket"], data["name"], int(data["generation"])
    try:
        db.collection(COLLECTION).document(document_id(bucket, name, generation)).create(
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
