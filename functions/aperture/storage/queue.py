"""The jobs topic: one Pub/Sub message per job item (spec S9).

The message names the item (`{"job_id", "index"}`); the worker reads the rest
from Firestore, so a message is small and a redelivered one sees the item's
current state. The team rides along as an attribute for logs and filters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from google.cloud import pubsub_v1


class JobQueue:
    def __init__(self, publisher: pubsub_v1.PublisherClient, project: str, topic: str):
        self._publisher = publisher
        self._topic = publisher.topic_path(project, topic)

    def publish(self, team: str, job_id: str, indices: Iterable[int], timeout: float = 60.0) -> None:
        """Publish one message per item and wait until Pub/Sub has every one (raises otherwise)."""
        futures = [
            self._publisher.publish(self._topic, message(job_id, index), team=team, job_id=job_id) for index in indices
        ]
        for future in futures:
            future.result(timeout=timeout)


def message(job_id: str, index: int) -> bytes:
    return json.dumps({"job_id": job_id, "index": index}, separators=(",", ":")).encode()
