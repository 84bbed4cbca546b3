"""The local Eventarc: bucket notifications in, storage CloudEvents out.

fake-gcs-server publishes an object notification to Pub/Sub for every write,
whoever makes it; this bridge pulls them and POSTs each finalize as a
`google.cloud.storage.object.v1.finalized` CloudEvent in binary content mode,
the shape Eventarc delivers to a Cloud Functions gen2 function. A non-2xx
answer is retried with backoff, as Eventarc does, up to a limit. The backoff
is a timer, not a sleep on the delivery thread: events waiting for a retry
must not hold up new ones (the subscriber has a handful of callback threads).

Header values are percent-encoded where the CloudEvents HTTP binding says so
(space, `"`, `%` and anything outside printable ASCII): an object name such
as `naïve ✓.png` travels in `ce-subject`.
"""

from __future__ import annotations

import argparse
import functools
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from aperture.runtime import logs

FINALIZED = "google.cloud.storage.object.v1.finalized"
MAX_ATTEMPTS = 8
# Printable ASCII but for space, '"' and '%': left as they are in ce-* headers.
_HEADER_SAFE = "!#$&'()*+,/:;<=>?@[\\]^`{|}~"


def binary_headers(headers: dict[str, str]) -> dict[str, str]:
    """`to_binary`'s headers with ce-* values percent-encoded (CloudEvents HTTP binding, 3.1.3.2)."""
    return {
        key: quote(value, safe=_HEADER_SAFE) if key.lower().startswith("ce-") else value
        for key, value in headers.items()
    }


def storage_event(attributes: dict[str, str], payload: dict[str, Any], message_id: str) -> CloudEvent | None:
    """The CloudEvent Eventarc would send for one notification, or None if it sends none."""
    if attributes.get("eventType") != "OBJECT_FINALIZE":
        return None
    bucket, name = attributes["bucketId"], attributes["objectId"]
    data = dict(payload)
    generation = str(data.get("generation") or attributes.get("objectGeneration"))
    # Fields the real notification payload carries that fake-gcs-server may omit.
    data.setdefault("kind", "storage#object")
    data.setdefault("bucket", bucket)
    data.setdefault("name", name)
    data["generation"] = generation
    data.setdefault("metageneration", "1")
    data.setdefault("id", f"{bucket}/{name}/{generation}")
    data.setdefault(
        "selfLink", f"https://www.googleapis.com/storage/v1/b/{bucket}/o/{requests.utils.quote(name, safe='')}"
    )
    data.setdefault(
        "mediaLink",
        f"https://storage.googleapis.com/download/storage/v1/b/{bucket}/o/"
        f"{requests.utils.quote(name, safe='')}?generation={generation}&alt=media",
    )
    return CloudEvent(
        {
            "id": message_id,
            "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "type": FINALIZED,
            "subject": f"objects/{name}",
            "time": attributes.get("eventTime") or data.get("updated"),
            "datacontenttype": "application/json",
        },
        data,
    )


def _after(delay: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()


class Bridge:
    def __init__(self, target: str, after: Callable[[float, Callable[[], None]], None] = _after):
        self._target = target
        self._after = after
        self._session = requests.Session()
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, message) -> None:
        try:
            event = storage_event(dict(message.attributes), json.loads(message.data or b"{}"), message.message_id)
        except (KeyError, ValueError) as exc:
            _log("WARNING", f"dropping malformed notification: {exc}")
            message.ack()
            return
        if event is None:
            message.ack()
            return
        headers, body = to_binary(event)
        try:
            status = self._session.post(
                self._target, headers=binary_headers(headers), data=body, timeout=600
            ).status_code
        except Exception as exc:  # an exception out of this callback would stop the whole subscription
            status = 0
            _log("WARNING", f"delivery failed: {type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            with self._lock:
                self._attempts.pop(message.message_id, None)
            message.ack()
            _log("INFO", f"delivered {event['subject']} -> {status}", event_id=event["id"])
            return
        with self._lock:
            attempt = self._attempts[message.message_id] = self._attempts.get(message.message_id, 0) + 1
        if attempt >= MAX_ATTEMPTS:
            _log("ERROR", f"giving up on {event['subject']} after {attempt} attempts", event_id=event["id"])
            message.ack()
            return
        self._after(backoff_seconds(attempt), message.nack)


def backoff_seconds(attempt: int) -> float:
    """How long a failed event waits before it is delivered again."""
    return min(0.2 * 2**attempt, 10.0)


# The functions' structured log lines (aperture.runtime.logs), tagged with this component.
_log = functools.partial(logs.log, component="bridge")


def main(argv: list[str] | None = None) -> None:
    from google.cloud import pubsub_v1

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--target", required=True, help="URL of the process function")
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(args.project, args.subscription)
    future = subscriber.subscribe(path, callback=Bridge(args.target))
    if args.ready_file:
        args.ready_file.write_text("ready\n")
    _log("INFO", f"bridging {path} -> {args.target}")
    future.result()


if __name__ == "__main__":
    main()
