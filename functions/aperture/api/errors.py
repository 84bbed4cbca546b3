"""JSON errors for every HTTP function: `{"error": {"code": …, "message": …}}`.

Handlers and services raise `ApiError`; `json_errors` turns it (and anything
unexpected) into a response, so no endpoint answers with an HTML page or a
bare 500. This is the one place an error becomes a response.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping

import flask

from aperture.domain.errors import ApiError
from aperture.runtime import logs

__all__ = ["ApiError", "error_response", "guarded", "json_errors"]

Handler = Callable[[flask.Request], flask.Response]


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> flask.Response:
    body = json.dumps({"error": {"code": status, "message": message}})
    response = flask.Response(body, status=status, mimetype="application/json")
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


def guarded(request: flask.Request, call: Callable[[], flask.Response]) -> tuple[flask.Response, str | None]:
    """`call()`'s response, or the JSON error it raised; with the reason of an error, for audit."""
    try:
        return call(), None
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.headers), exc.message
    except Exception:  # the client gets a JSON 500 with the request id; the log gets the trace
        request_id = logs.request_id(request.headers)
        logs.exception("unhandled error", request_id=request_id, path=request.path)
        return error_response(500, f"internal error (request id {request_id})"), "internal error"


def json_errors(handler: Handler) -> Handler:
    @functools.wraps(handler)
    def wrapper(request: flask.Request) -> flask.Response:
        return guarded(request, lambda: handler(request))[0]

    return wrapper
