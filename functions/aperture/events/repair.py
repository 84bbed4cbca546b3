"""The `repair` function: one repair sweep (`RepairSweep.run`) per message of the repair
topic (CloudEvent google.cloud.pubsub.topic.v1.messagePublished, pushed by the topic's
subscription as for `transform`). Cloud Scheduler publishes a tick every 15 minutes
(infra/scheduler.tf); under `make run` a timer child does (devstack.scheduler). What a
message holds does not matter: each one runs a sweep, and sweeps are idempotent and
bounded, so a duplicate tick only repeats harmless work.

A step that fails (its error is in the Report) does not fail the delivery: the next
tick runs every step again within 15 minutes, while a failed delivery would come back
after 10 s to 5 minutes (the subscription's backoff), run the steps that did succeed
again, perhaps beside the next tick's sweep, and after 5 deliveries end as a dead
letter anyway. Only an exception out of the sweep itself (each step is guarded, so
none is expected) answers an error.

A dead letter (a tick whose every delivery failed; Pub/Sub added
CloudPubSubDeadLetterSourceDeliveryCount) is logged and acknowledged, not run: the next
tick sweeps anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aperture.events.pubsub import DEAD_LETTER_COUNT, pushed_message
from aperture.runtime import logs
from aperture.services.repair import RepairSweep, Report

if TYPE_CHECKING:
    from aperture.container import Container


def handle(event: Any, sweep: RepairSweep) -> Report | None:
    message = pushed_message(event)
    if message is None:
        return None
    attributes = message.get("attributes") or {}
    if DEAD_LETTER_COUNT in attributes:
        logs.warning(
            "repair: a tick was dead-lettered; acknowledged, the next tick sweeps",
            deliveries=attributes[DEAD_LETTER_COUNT],
            message_id=message.get("messageId"),
            event_id=event["id"],
        )
        return None
    report = sweep.run()
    summary = f"repair: {report.changes} change(s), {len(report.errors)} step error(s)"
    if report.errors:
        logs.warning(f"{summary}; the next tick tries again", errors=report.errors, event_id=event["id"])
    else:
        logs.info(summary, event_id=event["id"])
    return report


def build(container: Container) -> Callable[[Any], None]:
    """The `repair` entry point's handler, over the container's sweep (one per instance: its
    object cursor and team rotation carry over from tick to tick)."""

    def run(event: Any) -> None:
        handle(event, container.repair)

    return run
