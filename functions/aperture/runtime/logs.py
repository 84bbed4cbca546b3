"""Structured JSON log lines in Cloud Logging's format, one per call.

Cloud Functions ships stdout lines that are JSON objects to Cloud Logging and
maps `severity`, `message`, `httpRequest` and `logging.googleapis.com/trace`
to the entry's fields, so plain `print(json.dumps(...))` is the logger.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import traceback
import uuid
from collections.abc import Mapping
from typing import Any

_settings = {"project": "aperture-local"}


def configure(*, project: str) -> None:
    """Set once by the composition root: trace ids name the project."""
    _settings["project"] = project


def request_id(headers: Mapping[str, str]) -> str:
    """The id the gateway assigned (X-Request-Id), else the trace id, else a new one."""
    rid = headers.get("X-Request-Id")
    if rid:
        return rid[:128]
    trace = headers.get("X-Cloud-Trace-Context") or headers.get("traceparent")
    if trace:
        return trace.split("/")[0].split("-")[1] if trace.startswith("00-") else trace.split("/")[0]
    return uuid.uuid4().hex


def log(severity: str, message: str, **fields: Any) -> None:
    entry: dict[str, Any] = {
        "severity": severity,
        "message": message,
        "time": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    rid = fields.pop("request_id", None)
    if rid:
        entry["logging.googleapis.com/trace"] = f"projects/{_settings['project']}/traces/{rid}"
        entry["request_id"] = rid
    entry.update(fields)
    sys.stdout.write(json.dumps(entry, default=str) + "\n")
    sys.stdout.flush()


def info(message: str, **fields: Any) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields: Any) -> None:
    log("WARNING", message, **fields)


def exception(message: str, **fields: Any) -> None:
    log("ERROR", message, stack_trace=traceback.format_exc(), **fields)
