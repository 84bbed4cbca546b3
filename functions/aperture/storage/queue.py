"""Pub/Sub topics the functions publish to.

* The jobs topic: one message per job item (spec S9). The message names the
  item (`{"job_id", "index"}`); the worker reads the rest from Firestore, so a
  message is small and a redelivered one sees the item's current state. The
  team rides along as an attribute for logs and filters.
* The processing dead-letter topic: one message per team image `process` gave
  up on (its attempts used up), kept by a pull subscription for operators to
  inspect and replay (infra/pubsub.tf, docs/reliability.md).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

from google.cloud import pubsub_v1

from aperture.domain.records import DeadLetter


class _Topic:
    def __init__(self, publisher: pubsub_v1.PublisherClient, project: str, topic: str):
        self._publisher = publisher
        self.name = topic
        self._topic = publisher.topic_path(project, topic)


class JobQueue(_Topic):
    def publish(self, team: str, job_id: str, indices: Iterable[int], timeout: float = 60.0) -> None:
        """Publish one message per item and wait until Pub/Sub has every one (raises otherwise)."""
        futures = [
            self._publisher.publish(self._topic, message(job_id, index), team=team, job_id=job_id) for index in indices
        ]
        for future in futures:
            future.result(timeout=timeout)


class DeadLetterTopic(_Topic):
    def publish(self, letter: DeadLetter, timeout: float = 60.0) -> str:
        """Publish one dead letter and wait until Pub/Sub has it: its message id (raises otherwise)."""
        data, attributes = dead_letter_message(letter)
        return str(self._publisher.publish(self._topic, data, **attributes).result(timeout=timeout))


def message(job_id: str, index: int) -> bytes:
    return json.dumps({"job_id": job_id, "index": index}, separators=(",", ":")).encode()


def dead_letter_message(letter: DeadLetter) -> tuple[bytes, dict[str, str]]:
    """The JSON body (every field) and the attributes (every field but the error, which may be long)."""
    fields = dataclasses.asdict(letter)
    attributes = {key: str(value) for key, value in fields.items() if key != "error"}
    return json.dumps(fields, separators=(",", ":"), sort_keys=True).encode(), attributes
