"""The `transform` function's CloudEvent handler: one job item per Pub/Sub message (spec S9)."""

from __future__ import annotations

import base64
import json

import pytest
from cloudevents.http import CloudEvent

from aperture.events.pubsub import DEAD_LETTER_COUNT, PUBLISHED
from aperture.events.transform import handle
from aperture.storage.queue import message

JOB_ID = "job_0123456789abcdef0123"


class RecordingWorker:
    """A JobWorker that notes what it was asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def run(self, job_id: str, index: int) -> str:
        self.calls.append(("run", job_id, index))
        return "done"

    def give_up(self, job_id: str, index: int, deliveries: int) -> str:
        self.calls.append(("give_up", job_id, index, deliveries))
        return "failed"


@pytest.fixture
def worker() -> RecordingWorker:
    return RecordingWorker()


def published(data: bytes | str, attributes: dict[str, str] | None = None, event_type: str = PUBLISHED) -> CloudEvent:
    """A messagePublished event as Eventarc (and the local push bridge) delivers it."""
    encoded = base64.b64encode(data.encode() if isinstance(data, str) else data).decode()
    body = {
        "message": {"data": encoded, "attributes": attributes or {}, "messageId": "1"},
        "subscription": "projects/p/subscriptions/aperture-jobs-transform",
    }
    return CloudEvent({"type": event_type, "source": "//pubsub.googleapis.com/projects/p/topics/aperture-jobs"}, body)


def test_a_job_message_runs_its_item(worker):
    handle(published(message(JOB_ID, 7), {"team": "team-a", "job_id": JOB_ID}), worker)

    assert worker.calls == [("run", JOB_ID, 7)]


def test_a_dead_lettered_message_gives_the_item_up_with_the_delivery_count(worker):
    attributes = {"team": "team-a", "job_id": JOB_ID, DEAD_LETTER_COUNT: "5"}

    handle(published(message(JOB_ID, 2), attributes), worker)

    assert worker.calls == [("give_up", JOB_ID, 2, 5)]


def test_a_message_without_attributes_runs_its_item(worker):
    event = published(message(JOB_ID, 0))
    del event.data["message"]["attributes"]

    handle(event, worker)

    assert worker.calls == [("run", JOB_ID, 0)]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b"42",
        b"null",
        json.dumps({"job_id": JOB_ID}).encode(),
        json.dumps({"index": 3}).encode(),
        json.dumps({"job_id": JOB_ID, "index": "three"}).encode(),
        json.dumps({"job_id": JOB_ID, "index": None}).encode(),
    ],
)
def test_an_undecodable_message_is_dropped(worker, data):
    handle(published(data), worker)

    assert worker.calls == []


def test_data_that_is_not_base64_is_dropped(worker):
    event = published(message(JOB_ID, 1))
    event.data["message"]["data"] = "a"  # one base64 character: never a whole byte

    handle(event, worker)

    assert worker.calls == []


@pytest.mark.parametrize("data", [None, {}, {"message": None}, {"message": {}}])
def test_an_event_without_a_message_is_dropped(worker, data):
    handle(CloudEvent({"type": PUBLISHED, "source": "//pubsub.googleapis.com/t"}, data), worker)

    assert worker.calls == []


@pytest.mark.parametrize(
    "event_type",
    ["google.cloud.storage.object.v1.finalized", "google.cloud.pubsub.topic.v1.messagePublished.v2", "other"],
)
def test_other_event_types_are_ignored(worker, event_type):
    handle(published(message(JOB_ID, 1), event_type=event_type), worker)

    assert worker.calls == []


def test_a_failing_run_raises_so_the_message_is_delivered_again():
    class Failing(RecordingWorker):
        def run(self, job_id: str, index: int) -> str:
            raise ConnectionError("firestore unreachable")

    with pytest.raises(ConnectionError):
        handle(published(message(JOB_ID, 1)), Failing())
