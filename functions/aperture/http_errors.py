"""JSON errors for every HTTP function: `{"error": {"code": …, "message": …}}`.

Handlers raise `ApiError`; `json_errors` turns it (and anything unexpected)
into a response, so no endpoint answers with an HTML page or a bare 500.
"""

from __future__ import annotations

import functools
import json
from typing import Callable, Mapping

import flask

from aperture import logs


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def not_found(message: str = "not found") -> ApiError:
    return ApiError(404, message)


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> flask.Response:
    body = json.dumps({"error": {"code": status, "message": message}})
    response = flask.Response(body, status=status, mimetype="application/json")
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


def json_errors(handler: Callable[[flask.Request], flask.Response]) -> Callable[[flask.Request], flask.Response]:
    @functools.wraps(handler)
    def wrapper(request: flask.Request) -> flask.Response:
        try:
            return handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        except Exception:  # the client gets a JSON 500 with the request id; the log gets the trace
            request_id = logs.request_id(request.headers)
            logs.exception("unhandled error", request_id=request_id, path=request.path)
            return error_response(500, f"internal error (request id {request_id})")

    return wrapper
