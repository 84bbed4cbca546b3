"""What the Pub/Sub-fed functions share: the event type functions-framework makes of a
push subscription's request, and the attribute Pub/Sub adds to a dead letter."""

from __future__ import annotations

from typing import Any

PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
# Added by Pub/Sub when it moves a message to a dead-letter topic: the deliveries it had.
DEAD_LETTER_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"


def pushed_message(event: Any) -> dict[str, Any] | None:
    """The Pub/Sub message of a messagePublished event ({} when it has none); None for other events."""
    if event["type"] != PUBLISHED:
        return None
    return (event.data or {}).get("message") or {}
