"""The gate every /v1 route passes: key check, `Principal`, audit of the outcome.

Team isolation lives in `Principal.require_team` (aperture.domain.records): a
resource of another team is reported exactly like a missing one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flask

from aperture.api.errors import error_response, guarded
from aperture.domain.records import AccessAttempt, ApiKey, Principal
from aperture.runtime import logs
from aperture.services.access import Access, principal_of, refusal_message

API_KEY_HEADER = "x-api-key"
KeyedHandler = Callable[[flask.Request, Principal], flask.Response]


def client_ip(request: flask.Request) -> str | None:
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded:
        return forwarded.split(",")[0].strip()
    return request.remote_addr


def attempt(request: flask.Request, status: int, key: ApiKey | None, reason: str | None) -> AccessAttempt:
    return AccessAttempt(
        method=request.method,
        path=request.path,
        status=status,
        outcome="allowed" if status < 400 else "denied",
        reason=reason,
        key_id=key.key_id if key else None,
        team=key.team if key else None,
        user_id=key.user_id if key else None,
        client_ip=client_ip(request),
        request_id=logs.request_id(request.headers),
    )


def keyed(access: Access, handler: KeyedHandler) -> Callable[[flask.Request], flask.Response]:
    """`handler` behind the key check: authenticate, run, audit the outcome."""

    @functools.wraps(handler)
    def wrapper(request: flask.Request) -> flask.Response:
        key, refusal = access.authenticate(request.headers.get(API_KEY_HEADER))
        if key is None or refusal is not None:
            access.audit(attempt(request, 401, key, refusal))
            return error_response(
                401, refusal_message(refusal or ""), {"WWW-Authenticate": 'ApiKey header="x-api-key"'}
            )
        principal = principal_of(key)
        response, reason = guarded(request, lambda: handler(request, principal))
        access.audit(attempt(request, response.status_code, key, reason))
        return response

    return wrapper
