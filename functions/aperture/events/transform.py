"""The `transform` function: one job item per Pub/Sub message (CloudEvent
google.cloud.pubsub.topic.v1.messagePublished: functions-framework turns the
push of a Pub/Sub subscription into it, in the cloud (infra/pubsub.tf) and
from the emulator locally).

A message from the dead-letter topic (it carries Pub/Sub's
CloudPubSubDeadLetterSourceDeliveryCount attribute) means the item failed
every delivery: it is marked failed with its last error. An exception from a
run answers 500, so Pub/Sub delivers the message again (with backoff).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aperture.events.pubsub import DEAD_LETTER_COUNT, pushed_message
from aperture.runtime import logs
from aperture.services.jobs import JobWorker

if TYPE_CHECKING:
    from aperture.container import Container


def handle(event: Any, worker: JobWorker) -> None:
    message = pushed_message(event)
    if message is None:
        return
    attributes = message.get("attributes") or {}
    try:
        payload = json.loads(base64.b64decode(message.get("data") or ""))
        job_id, index = str(payload["job_id"]), int(payload["index"])
        deliveries = int(attributes[DEAD_LETTER_COUNT]) if DEAD_LETTER_COUNT in attributes else None
    except (ValueError, KeyError, TypeError, binascii.Error):
        logs.warning("transform: not a job message; dropped", event_id=event["id"])
        return  # acknowledged: delivering it again would not make it readable
    if deliveries is not None:
        outcome = worker.give_up(job_id, index, deliveries)
    else:
        outcome = worker.run(job_id, index)
    logs.info(f"transform: {outcome}", job_id=job_id, index=index, event_id=event["id"])


def build(container: Container) -> Callable[[Any], None]:
    """The `transform` entry point's handler, over the container's worker."""
    return lambda event: handle(event, container.job_worker)
