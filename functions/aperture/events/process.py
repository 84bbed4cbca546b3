"""The `process` function: reacts to google.cloud.storage.object.v1.finalized.

Team images, direct uploads and source-bucket objects go to the `Processor`
service; every other object generation is recorded once (create-only, so a
redelivered event is a no-op).

An exception answers the delivery with an error, and Eventarc (the trigger's
RETRY_POLICY_RETRY; the local bridge likewise) delivers the event again with
backoff: `RecordPending` and the processor's `TransientFailure` (counted in
the record, which is failed once APERTURE_MAX_PROCESS_ATTEMPTS are used up)
are logged as such; permanent failures never get here (the record is marked
failed and the event acknowledged).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aperture.domain.records import ObjectInfo
from aperture.runtime import logs
from aperture.services.processing import Processor, RecordPending, TransientFailure
from aperture.storage.finalized import FinalizedObjects

if TYPE_CHECKING:
    from aperture.container import Container

FINALIZED = "google.cloud.storage.object.v1.finalized"


def object_info(data: dict[str, Any]) -> ObjectInfo:
    """The object an event's data describes (the JSON shape of a GCS object resource)."""
    return ObjectInfo(
        data["bucket"],
        data["name"],
        int(data["generation"]),
        int(data.get("size") or 0),
        data.get("contentType"),
        data.get("md5Hash"),
        metadata=tuple(sorted((data.get("metadata") or {}).items())),
        created=data.get("timeCreated"),
    )


def handle(event: Any, processor: Processor, finalized: FinalizedObjects) -> None:
    """One CloudEvent."""
    if event["type"] != FINALIZED:
        return
    data = event.data
    info = object_info(data)
    try:
        outcome = processor.handle(info)
    except RecordPending as exc:
        # An error answer makes Eventarc (and the local bridge) deliver the event again later.
        logs.info(f"process: retry later: {exc}", bucket=info.bucket, object=info.name, event_id=event["id"])
        raise
    except TransientFailure as exc:
        logs.warning(
            f"process: transient failure, retry later: {exc}",
            bucket=info.bucket,
            object=info.name,
            generation=info.generation,
            attempt=exc.attempt,
            max_attempts=exc.max_attempts,
            event_id=event["id"],
        )
        raise
    if outcome == "ignored":
        finalized.record(event.get_attributes(), data)
    else:
        logs.info(
            f"process: {outcome}",
            bucket=info.bucket,
            object=info.name,
            generation=info.generation,
            event_id=event["id"],
        )


def build(container: Container) -> Callable[[Any], None]:
    """The `process` entry point's handler, over the container's services."""
    return lambda event: handle(event, container.processor, container.finalized)
