"""Request bodies in, JSON out: the parsing every HTTP function shares."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

import flask

from aperture.domain.errors import ApiError

# Request bodies nest no deeper than this (the deepest real one, a job, is 3):
# deeper ones are refused before anything walks them recursively.
MAX_JSON_DEPTH = 32
# JSON may escape half of a surrogate pair (\ud800) alone; such a string has no
# UTF-8 form, so nothing downstream (Firestore, logs, responses) can store it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> flask.Response:
    response = flask.Response(json.dumps(body, default=_jsonable), status=status, mimetype="application/json")
    response.headers.update(headers or {})
    # Every JSON answer is one caller's (their team's records, or their error):
    # shared caches must never keep it.
    response.headers.setdefault("Cache-Control", "private, no-store")
    return response


def empty_response(status: int, headers: Mapping[str, str] | None = None) -> flask.Response:
    """A 204, 304 or 307: no body, so no Content-Type (Flask's default would claim text/html)."""
    response = flask.Response(status=status, headers=dict(headers or {}))
    response.headers.pop("Content-Type", None)
    return response


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def read_json_value(request: flask.Request, *, max_bytes: int, what: str = "the body") -> Any:
    """The body as any JSON value; 415 when it is not application/json, 413 over
    `max_bytes`, 400 when it is not JSON, nests deeper than MAX_JSON_DEPTH or
    holds an unpaired surrogate."""
    if request.mimetype != "application/json":
        raise ApiError(415, f"send {what} as application/json")
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, f"body is larger than {max_bytes} bytes")
    raw = request.get_data(cache=False)[: max_bytes + 1]
    if len(raw) > max_bytes:
        raise ApiError(413, f"body is larger than {max_bytes} bytes")
    return parse_json(raw)


def parse_json(raw: bytes | str) -> Any:
    """`raw` as JSON, with the checks of `read_json_value` (400 with the reason)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested past the parser's stack
        raise ApiError(400, "body is not valid JSON") from None
    _check_structure(body)
    return body


def _check_structure(body: Any) -> None:
    pending = [(body, 0)]
    while pending:  # iterative: a deep body must not recurse here either
        value, depth = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise ApiError(400, "body has a string with an unpaired surrogate (not Unicode text)")
        elif isinstance(value, (list, dict)):
            if depth >= MAX_JSON_DEPTH:
                raise ApiError(400, f"body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels")
            children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)


def read_json(request: flask.Request, *, max_bytes: int, allowed: set[str], required: set[str] = frozenset()) -> dict:
    """The body as a JSON object with only `allowed` keys; 400/413/415 otherwise."""
    body = read_json_value(request, max_bytes=max_bytes)
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    missing = required - set(body)
    if missing:
        raise ApiError(400, f"missing field(s): {', '.join(sorted(missing))}")
    return body


def string_field(body: dict, name: str, *, max_length: int = 200, default: str | None = None) -> str | None:
    value = body.get(name, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{name} must be a non-empty string")
    if len(value) > max_length or any(ord(c) < 32 for c in value):
        raise ApiError(400, f"{name} must be at most {max_length} printable characters")
    return value.strip()


def parse_time(raw: str | None, name: str) -> dt.datetime | None:
    """An ISO 8601 date or time from a query parameter (UTC when it has no zone); 400 otherwise."""
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO 8601 date or time, e.g. 2026-11-22T10:00:00Z") from None
    if not value.tzinfo:
        return value.replace(tzinfo=dt.timezone.utc)
    try:  # 0001-01-01T00:00:00+05:00 is a valid time before year 1 in UTC: no datetime holds it
        value.astimezone(dt.timezone.utc)
    except OverflowError:
        raise ApiError(400, f"{name} is out of range (years 1 to 9999, in UTC)") from None
    return value
