"""The local Cloud Scheduler: a tick published to a Pub/Sub topic every N seconds.

The local stack runs one as a child process for the repair topic, as
infra/scheduler.tf's job publishes to it every 15 minutes in the cloud; the
topic's push subscription hands each tick to the `repair` function, which runs
one sweep. The first tick comes N seconds after the start (Cloud Scheduler too
fires on its schedule, not when the job is made). A tick that cannot be
published (the emulator is down or restarting) is logged, and the next one
comes on time.

    python -m devstack.scheduler --project P --topic aperture-repair --every 900
    python -m devstack.scheduler --project P --topic aperture-repair --once   # one tick now

(PUBSUB_EMULATOR_HOST names the emulator, as for every client of the stack.)
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
import time
from pathlib import Path

from aperture.runtime import logs

ORIGIN = "devstack-scheduler"


def tick_message(topic: str, number: int) -> bytes:
    """What a tick holds (the repair function reads none of it: it is for logs and readers)."""
    return json.dumps({"tick": topic, "number": number}, separators=(",", ":")).encode()


def publish_tick(publisher, path: str, topic: str, number: int, timeout: float = 30.0) -> str:
    """Publish tick `number` and wait until Pub/Sub has it: its message id (raises otherwise)."""
    return str(publisher.publish(path, tick_message(topic, number), origin=ORIGIN).result(timeout=timeout))


def run(publisher, path: str, topic: str, every: float) -> None:
    """A tick every `every` seconds, until the process is stopped."""
    number = 0
    due = time.monotonic() + every
    while True:
        time.sleep(max(0.0, due - time.monotonic()))
        number += 1
        try:
            message_id = publish_tick(publisher, path, topic, number)
        except Exception as exc:  # the emulator restarting must not end the clock
            _log("WARNING", f"tick {number} not published: {type(exc).__name__}: {exc}", topic=topic)
        else:
            _log("INFO", f"tick {number} published", topic=topic, message_id=message_id)
        # On time, and never a burst to catch up after a slow publish.
        due = max(due + every, time.monotonic())


def _stop(signum, frame) -> None:
    # Exit at once, wherever the clock is (nothing to finish): no lock a second signal could wait on.
    sys.exit(0)


# The functions' structured log lines (aperture.runtime.logs), tagged with this component.
_log = functools.partial(logs.log, component="scheduler")


def main(argv: list[str] | None = None) -> int:
    from google.cloud import pubsub_v1

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--topic", required=True)
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--every", type=float, help="seconds between ticks")
    when.add_argument("--once", action="store_true", help="publish one tick now and exit")
    parser.add_argument("--ready-file", type=Path, help="written once the clock runs")
    args = parser.parse_args(argv)
    if args.every is not None and args.every <= 0:
        parser.error("--every must be more than 0 seconds")
    publisher = pubsub_v1.PublisherClient()
    path = publisher.topic_path(args.project, args.topic)
    if args.once:
        _log("INFO", "tick published", topic=args.topic, message_id=publish_tick(publisher, path, args.topic, 1))
        return 0
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if args.ready_file:
        args.ready_file.write_text("ready\n")
    _log("INFO", f"a tick to {path} every {args.every:g} s")
    run(publisher, path, args.topic, args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
