"""Request bodies in, JSON out: the parsing every HTTP function shares."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import flask

from aperture.domain.errors import ApiError


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> flask.Response:
    response = flask.Response(json.dumps(body, default=_jsonable), status=status, mimetype="application/json")
    response.headers.update(headers or {})
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def read_json(request: flask.Request, *, max_bytes: int, allowed: set[str], required: set[str] = frozenset()) -> dict:
    """The body as a JSON object with only `allowed` keys; 400/413/415 otherwise."""
    if request.mimetype != "application/json":
        raise ApiError(415, "send the body as application/json")
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, f"body is larger than {max_bytes} bytes")
    raw = request.get_data(cache=False)[: max_bytes + 1]
    if len(raw) > max_bytes:
        raise ApiError(413, f"body is larger than {max_bytes} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "body is not valid JSON") from None
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
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
