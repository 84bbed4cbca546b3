"""The local Eventarc bridge (scripts/devstack/bridge.py): a storage notification
becomes a finalized CloudEvent POSTed to the target; a failed delivery is retried
after a backoff that does not hold the delivery thread, so events waiting for
their retry cannot delay new ones (a CI run once waited 30 s behind them)."""

from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.cloud.pubsub_v1.subscriber import message as pubsub_message
from google.cloud.pubsub_v1.subscriber._protocol import requests as pubsub_requests
from google.pubsub_v1 import types

from devstack.bridge import MAX_ATTEMPTS, Bridge, backoff_seconds


@pytest.fixture
def target():
    """A local HTTP endpoint answering each POST with the next of `answers` (then 200)."""
    received: list[dict[str, str]] = []
    answers: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            received.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(answers.pop(0) if answers else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", received, answers
    server.shutdown()
    server.server_close()


def _notification(name: str) -> tuple[pubsub_message.Message, queue.Queue]:
    requests_out: queue.Queue = queue.Queue()
    proto = types.PubsubMessage(
        data=json.dumps({"bucket": "b", "name": name, "generation": "7", "size": "3"}).encode(),
        attributes={"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": name, "objectGeneration": "7"},
        message_id=f"id-{name}",
    )
    return pubsub_message.Message(types.PubsubMessage.pb(proto), f"ack-{name}", 1, requests_out), requests_out


def _sent(requests_out: queue.Queue) -> list[type]:
    return [type(requests_out.get_nowait()) for _ in range(requests_out.qsize())]


def test_a_delivered_finalize_is_posted_as_a_binary_cloudevent_and_acked(target):
    url, received, _ = target
    message, requests_out = _notification("teams/t/naïve ✓.png")

    Bridge(url, after=lambda delay, action: pytest.fail("no retry expected"))(message)

    [headers] = received
    assert headers["ce-type"] == "google.cloud.storage.object.v1.finalized"
    assert headers["ce-subject"] == "objects/teams/t/na%C3%AFve%20%E2%9C%93.png"
    assert _sent(requests_out) == [pubsub_requests.AckRequest]


def test_a_failed_delivery_is_nacked_after_the_backoff_not_on_the_delivery_thread(target):
    url, received, answers = target
    answers.extend([500, 503])
    scheduled: list[tuple[float, object]] = []
    bridge = Bridge(url, after=lambda delay, action: scheduled.append((delay, action)))
    message, requests_out = _notification("teams/t/a.png")

    bridge(message)

    assert len(received) == 1
    assert _sent(requests_out) == [], "the callback returns at once; the nack waits for the backoff"
    [(delay, retry)] = scheduled
    assert delay == backoff_seconds(1)
    retry()
    assert _sent(requests_out) == [pubsub_requests.NackRequest]

    bridge(message)  # the redelivery fails too: a longer wait
    assert scheduled[-1][0] == backoff_seconds(2) > backoff_seconds(1)
    bridge(message)  # and then succeeds
    assert _sent(requests_out) == [pubsub_requests.AckRequest]


def test_an_event_that_keeps_failing_is_given_up_and_acked(target):
    url, received, answers = target
    answers.extend([500] * MAX_ATTEMPTS)
    scheduled: list[float] = []
    bridge = Bridge(url, after=lambda delay, action: scheduled.append(delay))
    message, requests_out = _notification("teams/t/poison.png")

    for _ in range(MAX_ATTEMPTS):
        bridge(message)

    assert len(received) == MAX_ATTEMPTS
    assert len(scheduled) == MAX_ATTEMPTS - 1
    assert _sent(requests_out) == [pubsub_requests.AckRequest]


def test_the_default_backoff_runs_on_a_timer(target):
    url, _, answers = target
    answers.append(500)
    message, requests_out = _notification("teams/t/b.png")
    done = threading.Event()
    original_nack = message.nack

    def nack():
        original_nack()
        done.set()

    message.nack = nack  # observe when the timer fires; the real nack still runs

    Bridge(url)(message)

    assert _sent(requests_out) == []
    assert done.wait(timeout=10)
    assert _sent(requests_out) == [pubsub_requests.NackRequest]


def test_other_notifications_are_acked_without_a_delivery(target):
    url, received, _ = target
    message, requests_out = _notification("teams/t/gone.png")
    message.attributes["eventType"] = "OBJECT_DELETE"

    Bridge(url)(message)

    assert received == []
    assert _sent(requests_out) == [pubsub_requests.AckRequest]
