"""Structured JSON log lines in Cloud Logging's format, one per call.

Cloud Functions ships stdout lines that are JSON objects to Cloud Logging and
maps `severity`, `message`, `httpRequest` and `logging.googleapis.com/trace`
to the entry's fields, so plain `print(json.dumps(...))` is the logger.

An upload link's URL is its credential, so no line carries it: every
`/v1/uploads/{token}` in a line (message, httpRequest, stack trace, any field)
is written as `/v1/uploads/…` (`redact`; the local gateway uses it too).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import traceback
import uuid
from collections.abc import Mapping
from typing import Any

_settings = {"project": "aperture-local"}
# The token segment after /v1/uploads/: in a path, up to the next "/", "?" or "#"; in free text
# (a JSON line) also up to white space, a quote or a backslash.
_PATH_TOKEN = re.compile(r"(/v1/uploads/)[^/?#]+", re.IGNORECASE)
_TEXT_TOKEN = re.compile(r"(/v1/uploads/)[^/?#\s\"\\]+", re.IGNORECASE)
REDACTED = "…"
_REDACTED_JSON = json.dumps(REDACTED)[1:-1]  # as json.dumps writes it (ASCII only)


def redact(text: str, replacement: str = REDACTED) -> str:
    """`text` with every upload-link token replaced by `…`."""
    return _TEXT_TOKEN.sub(lambda m: m.group(1) + replacement, text)


def redact_path(path: str) -> str:
    """A request path as logs and audit records keep it: `/v1/uploads/{token}` becomes `/v1/uploads/…`."""
    return _PATH_TOKEN.sub(lambda m: m.group(1) + REDACTED, path)


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
    sys.stdout.write(redact(json.dumps(entry, default=str), _REDACTED_JSON) + "\n")
    sys.stdout.flush()


def info(message: str, **fields: Any) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields: Any) -> None:
    log("WARNING", message, **fields)


def exception(message: str, **fields: Any) -> None:
    log("ERROR", message, stack_trace=traceback.format_exc(), **fields)
