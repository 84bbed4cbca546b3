"""The repair sweep as scheduled on the local stack (#19 item 1): a tick published to the repair
topic reaches the `repair` function, whose sweep mends drift made directly in Firestore; and
the timer child (devstack.scheduler, Cloud Scheduler's stand-in) publishes ticks on its own.
Nothing here waits for the stack's own 15-minute timer."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
import uuid

from aperture.domain.records import Contribution
from devstack.processes import spawn
from devstack.scheduler import ORIGIN
from devstack.stack import REPAIR_TOPIC, REPO
from tests.support.images import encode, random_image
from tests.support.records import pending_record

DEADLINE = 90.0  # seconds the sweep gets to show its work (it takes well under one)


def scheduler_argv(stack, topic: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "devstack.scheduler", f"--project={stack.project}", f"--topic={topic}", *extra]


def client_env(stack) -> dict[str, str]:
    return {
        **os.environ,
        **stack.client_env(),
        "PYTHONPATH": os.pathsep.join([str(REPO / "functions"), str(REPO / "scripts")]),
    }


def test_a_tick_on_the_repair_topic_runs_a_sweep_in_the_repair_function(stack, container, make_caller, tmp_path):
    make_caller("team-s", "member")
    two_hours_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)  # past the sweep's 30 minutes
    lost = pending_record(
        "team-s", encode(random_image("RGB", seed=41)), stack.uploads_bucket, created_at=two_hours_ago
    )
    assert container.images.create(lost)
    # a counter for an image that does not exist: the team's totals one too high
    container.counters.add("team-s", "e" * 64, Contribution(format="PNG", camera=None, day="2026-12-03"))
    assert container.counters.totals("team-s").formats == {"PNG": 1}

    # one tick now, as `gcloud scheduler jobs run` would in the cloud
    child = spawn("tick", scheduler_argv(stack, REPAIR_TOPIC, "--once"), env=client_env(stack), log_dir=tmp_path)
    assert child.popen.wait(timeout=60) == 0, child.tail()

    def sweeps() -> list[dict]:
        lines = (stack.log_dir / "function-repair.log").read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{") and '"message": "repair sweep"' in line]

    def ours() -> list[dict]:  # the sweep that mended both (it logs its report once every step is done)
        return [s for s in sweeps() if (s["pending_deleted"], s["markers_removed"]) == (1, 1)]

    deadline = time.monotonic() + DEADLINE
    while not ours() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert container.images.get("team-s", lost.id) is None, "the stale record without its object was not deleted"
    assert container.counters.totals("team-s").formats.get("PNG", 0) == 0, "the marker of a missing image was kept"
    # every step without an error (a team left with no marker too)
    assert ours() and ours()[-1]["errors"] == [], sweeps()


def test_the_stack_runs_the_timer_and_the_timer_publishes_ticks(stack, tmp_path):
    from google.cloud import pubsub_v1

    assert "scheduler" in stack.parts and not stack.child("scheduler").stopped  # `make run`'s timer is up
    # A timer of its own on a topic of its own, every half second, read through a pull subscription.
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    name = f"ticks-{uuid.uuid4().hex[:12]}"
    topic = publisher.topic_path(stack.project, name)
    subscription = subscriber.subscription_path(stack.project, f"{name}-read")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    ready = tmp_path / "scheduler.ready"
    argv = scheduler_argv(stack, name, "--every=0.5", f"--ready-file={ready}")
    child = spawn("scheduler", argv, env=client_env(stack), log_dir=tmp_path)
    try:
        ticks: list = []
        deadline = time.monotonic() + DEADLINE
        while len(ticks) < 2 and time.monotonic() < deadline:
            assert child.popen.poll() is None, child.tail()
            pulled = subscriber.pull(subscription=subscription, max_messages=10, timeout=10)
            if pulled.received_messages:
                subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in pulled.received_messages])
            ticks += [m.message for m in pulled.received_messages]
    finally:
        child.stop()
    assert len(ticks) >= 2, child.tail()
    assert ready.exists()
    assert all(m.attributes["origin"] == ORIGIN for m in ticks)
    numbers = sorted(json.loads(m.data)["number"] for m in ticks)
    assert numbers[:2] == [1, 2]
