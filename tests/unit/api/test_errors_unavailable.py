"""`guarded`: an unreachable backend is a 503 with Retry-After and the JSON body, never a 500."""

from __future__ import annotations

import json

import flask
import grpc
import pytest
import requests
import urllib3
from google.api_core import exceptions as gexc

from aperture.api.errors import RETRY_AFTER_SECONDS, guarded, unavailable
from aperture.domain.errors import ApiError, Unavailable

app = flask.Flask(__name__)


class RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode):
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def _wrapped(inner: BaseException) -> BaseException:
    try:
        raise inner
    except BaseException as exc:
        try:
            raise RuntimeError("while reading") from exc
        except RuntimeError as outer:
            return outer


UNAVAILABLE = [
    Unavailable("firestore"),
    gexc.ServiceUnavailable("down"),
    gexc.DeadlineExceeded("slow"),
    gexc.RetryError("Timeout of 10.0s exceeded", gexc.ServiceUnavailable("down")),
    requests.exceptions.ConnectionError("refused"),
    requests.exceptions.ReadTimeout("slow"),
    urllib3.exceptions.NewConnectionError(None, "refused"),
    urllib3.exceptions.ProtocolError("reset"),
    ConnectionRefusedError(111, "refused"),
    RpcError(grpc.StatusCode.UNAVAILABLE),
    _wrapped(gexc.ServiceUnavailable("down")),
]
NOT_UNAVAILABLE = [
    ValueError("bug"),
    KeyError("bug"),
    gexc.NotFound("gone"),
    gexc.PermissionDenied("no"),
    RpcError(grpc.StatusCode.INVALID_ARGUMENT),
    _wrapped(ValueError("bug")),
]


@pytest.mark.parametrize("exc", UNAVAILABLE, ids=lambda e: type(e).__name__)
def test_unreachable_backends_are_recognised(exc):
    assert unavailable(exc)


@pytest.mark.parametrize("exc", NOT_UNAVAILABLE, ids=lambda e: type(e).__name__)
def test_other_errors_are_not(exc):
    assert not unavailable(exc)


def _answer(exc: BaseException):
    def call():
        raise exc

    with app.test_request_context("/v1/images", headers={"X-Request-Id": "rid-1"}):
        return guarded(flask.request, call)


@pytest.mark.parametrize("exc", UNAVAILABLE, ids=lambda e: type(e).__name__)
def test_unavailable_is_503_with_retry_after_and_no_trace(exc, capsys):
    response, reason = _answer(exc)
    assert response.status_code == 503 and reason == "backend unavailable"
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response.headers["Cache-Control"] == "no-store"
    body = json.loads(response.get_data())
    assert body["error"]["code"] == 503 and "rid-1" in body["error"]["message"]
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["severity"] == "WARNING" and line["request_id"] == "rid-1" and "stack_trace" not in line


def test_a_bug_is_still_a_json_500_with_the_trace_in_the_log_only(capsys):
    response, reason = _answer(ValueError("secret detail"))
    assert response.status_code == 500 and reason == "internal error"
    assert "Retry-After" not in response.headers
    assert "secret detail" not in response.get_data(as_text=True)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["severity"] == "ERROR" and "secret detail" in line["stack_trace"]


def test_api_errors_keep_their_status():
    response, reason = _answer(ApiError(409, "conflict", {"X-A": "1"}))
    assert response.status_code == 409 and reason == "conflict" and response.headers["X-A"] == "1"
