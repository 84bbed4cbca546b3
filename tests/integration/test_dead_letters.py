"""Processing dead letters against the emulators (#19 item 2): the topic adapter publishes what
an operator pulls from the hold subscription, the record names the first dead letter of a
generation, and `process` giving up on a team image publishes it and names it in the record."""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import pytest

from aperture.config import Config
from aperture.domain.errors import Gone
from aperture.domain.records import DeadLetter, ImageStatus, object_name
from aperture.services.uploads import API_WRITE
from aperture.storage.queue import DeadLetterTopic
from devstack.stack import PROCESS_DEAD_LETTER_HOLD, PROCESS_DEAD_LETTER_TOPIC
from tests.support.api import settled
from tests.support.images import encode, random_image
from tests.support.records import pending_record


@pytest.fixture(scope="module")
def hold(stack):
    """Pull the hold subscription for the dead letter of one image (others are left for their tests)."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(stack.project, PROCESS_DEAD_LETTER_HOLD)

    def pull(image_id: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pulled = subscriber.pull(subscription=path, max_messages=20, timeout=10).received_messages
            ours = [m for m in pulled if m.message.attributes.get("image_id") == image_id]
            others = [m.ack_id for m in pulled if m not in ours]
            if others:  # back to the subscription at once
                subscriber.modify_ack_deadline(subscription=path, ack_ids=others, ack_deadline_seconds=0)
            if ours:
                subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in ours])
                return [m.message for m in ours]
        raise AssertionError(f"no dead letter of {image_id} in {PROCESS_DEAD_LETTER_HOLD}")

    return pull


def test_the_topic_adapter_publishes_what_the_hold_subscription_keeps(stack, container, hold):
    assert Config().process_dead_letter_topic == PROCESS_DEAD_LETTER_TOPIC == container.process_dead_letters.name
    image_id = uuid.uuid4().hex * 2
    letter = DeadLetter("aperture-uploads", f"teams/team-q/{image_id}.png", "17", "team-q", image_id, 5, "boom")

    message_id = DeadLetterTopic(container.publisher, stack.project, PROCESS_DEAD_LETTER_TOPIC).publish(letter)

    [message] = hold(image_id)
    assert message.message_id == message_id
    assert json.loads(message.data) == {
        "bucket": "aperture-uploads",
        "object": f"teams/team-q/{image_id}.png",
        "generation": "17",
        "team": "team-q",
        "image_id": image_id,
        "attempts": 5,
        "error": "boom",
    }
    assert dict(message.attributes) == {
        "bucket": "aperture-uploads",
        "object": f"teams/team-q/{image_id}.png",
        "generation": "17",
        "team": "team-q",
        "image_id": image_id,
        "attempts": "5",
    }


def test_a_record_names_the_first_dead_letter_of_a_generation(stack, container):
    record = pending_record("team-q", encode(random_image("RGB", seed=51)), stack.uploads_bucket)
    assert container.images.create(record)
    first = {"topic": PROCESS_DEAD_LETTER_TOPIC, "message_id": "1", "generation": "7"}

    assert container.images.note_dead_letter("team-q", record.id, first)
    assert not container.images.note_dead_letter("team-q", record.id, {**first, "message_id": "2"})
    assert container.images.note_dead_letter("team-q", record.id, {**first, "message_id": "3", "generation": "8"})
    assert container.images.get("team-q", record.id).dead_letter["message_id"] == "3"
    with pytest.raises(Gone):
        container.images.note_dead_letter("team-q", "0" * 64, first)


def test_process_giving_up_on_an_image_dead_letters_it(stack, container, storage_client, gateway, make_caller, hold):
    """Attempts that never finished (timeouts) used up: the next delivery gives up without
    trying, publishes the image to the dead-letter topic and names the message in the record."""
    caller = make_caller("team-d", "member")
    data = encode(random_image("RGB", seed=52))
    blob = storage_client.bucket(stack.uploads_bucket).blob(
        object_name("team-d", hashlib.sha256(data).hexdigest(), "png")
    )
    blob.metadata = dict(API_WRITE)  # as the upload API writes it: `process` waits for its record
    blob.upload_from_string(data, content_type="image/png")
    used_up = Config().max_process_attempts
    record = pending_record(
        "team-d", data, stack.uploads_bucket, attempts=used_up, attempt_generation=str(blob.generation)
    )
    assert container.images.create(record)

    failed = settled(container.images, "team-d", record.id)

    assert failed.status is ImageStatus.FAILED
    assert failed.error == f"gave up after {used_up} attempts: an attempt did not finish (timeout or out of memory?)"
    assert failed.dead_letter["topic"] == PROCESS_DEAD_LETTER_TOPIC
    assert failed.dead_letter["generation"] == str(blob.generation)
    [message] = hold(record.id)
    assert message.message_id == failed.dead_letter["message_id"]
    body = json.loads(message.data)
    assert (body["object"], body["generation"], body["attempts"]) == (record.object, str(blob.generation), used_up + 1)
    shown = gateway.get(f"/v1/images/{record.id}", headers=caller.headers).json()
    assert shown["status"] == "failed" and shown["dead_letter"]["message_id"] == message.message_id
