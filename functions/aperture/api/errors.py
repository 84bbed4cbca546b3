"""JSON errors for every HTTP function: `{"error": {"code": …, "message": …}}`.

Handlers and services raise `ApiError`; `json_errors` turns it (and anything
unexpected) into a response, so no endpoint answers with an HTML page or a
bare 500. This is the one place an error becomes a response.

A backend that cannot be reached (Firestore, Cloud Storage or Pub/Sub down,
slow or restarting) is not our bug: `unavailable` recognises it from the
exception or what it was raised from (the domain's `Unavailable`, the Google
client libraries' ServiceUnavailable, DeadlineExceeded and RetryError, gRPC
UNAVAILABLE, connection errors of requests and urllib3) and the client gets
503 with `Retry-After`, logged as a warning with the request id, never a 500.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping

import flask

from aperture.domain.errors import ApiError, Unavailable
from aperture.runtime import logs

__all__ = ["ApiError", "error_response", "guarded", "json_errors", "unavailable", "unhandled"]

# What a client is told to wait before it tries again when a backend is unavailable.
RETRY_AFTER_SECONDS = 5
# gRPC status codes (grpc.StatusCode names) that mean "not reachable now".
_UNAVAILABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})

Handler = Callable[[flask.Request], flask.Response]


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> flask.Response:
    body = json.dumps({"error": {"code": status, "message": message}})
    response = flask.Response(body, status=status, mimetype="application/json")
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


@functools.cache
def _unavailable_types() -> tuple[type[BaseException], ...]:
    """The client libraries' exception types that mean a backend could not be reached (imported
    once, lazily: a function that never loads a library does not pay for it here)."""
    found: list[type[BaseException]] = [Unavailable, ConnectionError, TimeoutError]
    try:
        from google.api_core import exceptions as gexc

        found += [gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError, gexc.GatewayTimeout]
    except ImportError:  # pragma: no cover - always installed with the functions
        pass
    try:
        from google.auth.exceptions import TransportError

        found.append(TransportError)
    except ImportError:  # pragma: no cover
        pass
    try:
        import requests

        found += [requests.exceptions.ConnectionError, requests.exceptions.Timeout]
    except ImportError:  # pragma: no cover
        pass
    try:
        import urllib3

        found += [
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.NewConnectionError,
            urllib3.exceptions.MaxRetryError,
            urllib3.exceptions.TimeoutError,
        ]
    except ImportError:  # pragma: no cover
        pass
    return tuple(found)


def unavailable(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from (`__cause__`), means a backend is unreachable."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, _unavailable_types()):
            return True
        code = getattr(exc, "code", None)
        if callable(code) and not isinstance(exc, ApiError):  # grpc.RpcError: code() is a grpc.StatusCode
            try:
                if getattr(code(), "name", None) in _UNAVAILABLE_CODES:
                    return True
            except Exception:  # noqa: BLE001 - a code() that is not gRPC's says nothing
                pass
        exc = exc.__cause__
    return False


def unavailable_response(request_id: str) -> flask.Response:
    return error_response(
        503,
        f"a backend is temporarily unavailable; retry in a few seconds (request id {request_id})",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def unhandled(request: flask.Request, exc: BaseException) -> tuple[flask.Response, str]:
    """The response to an exception nothing else handled, and the reason for audit: 503 with
    Retry-After for an unreachable backend (a warning in the log, no trace), else a JSON 500 with
    the request id (the trace goes to the log, never to the client). Call inside `except`."""
    request_id = logs.request_id(request.headers)
    if unavailable(exc):
        logs.warning(
            "backend unavailable",
            request_id=request_id,
            path=request.path,
            error=f"{type(exc).__name__}: {exc}"[:500],
        )
        return unavailable_response(request_id), "backend unavailable"
    logs.exception("unhandled error", request_id=request_id, path=request.path)
    return error_response(500, f"internal error (request id {request_id})"), "internal error"


def guarded(request: flask.Request, call: Callable[[], flask.Response]) -> tuple[flask.Response, str | None]:
    """`call()`'s response, or the JSON error it raised; with the reason of an error, for audit."""
    try:
        return call(), None
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.headers), exc.message
    except Exception as exc:  # noqa: BLE001 - 503 for an unreachable backend, else a JSON 500 (`unhandled`)
        return unhandled(request, exc)


def json_errors(handler: Handler) -> Handler:
    @functools.wraps(handler)
    def wrapper(request: flask.Request) -> flask.Response:
        return guarded(request, lambda: handler(request))[0]

    return wrapper
