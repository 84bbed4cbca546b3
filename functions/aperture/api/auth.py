"""The gate every /v1 route passes: key check (or, on the routes that allow
it, a signed link), `Principal`, audit of the outcome.

Team isolation lives in `Principal.require_team` (aperture.domain.records): a
resource of another team is reported exactly like a missing one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flask

from aperture.api.errors import error_response, guarded
from aperture.domain.errors import ApiError
from aperture.domain.links import SIGNATURE, LinkRefused, Links
from aperture.domain.records import AccessAttempt, ApiKey, Principal
from aperture.runtime import logs
from aperture.services.access import Access, principal_of, refusal_message

API_KEY_HEADER = "x-api-key"
KeyedHandler = Callable[[flask.Request, Principal], flask.Response]
# The key id, user and role a signed link acts as: it reads the one thing its
# signature names, as any member of the team could.
LINK_PRINCIPAL = ("signed-link", "signed-link", "member")


# Which X-Forwarded-For entry, counted from the right, is the client's address. The gateway's
# front end appends two entries, the address it was connected from (the client) and its own
# hop, so the client is the last but one; everything left of it came from the client and is
# never believed. The local gateway appends the same two (scripts/devstack/gateway.py).
# docs/api.md ("Audit") has the chain and how to check it against a deployment.
CLIENT_HOP = 2


def client_ip(request: flask.Request) -> str | None:
    """The caller's address as the gateway saw it (module comment); the peer when the request did not
    come through a gateway (fewer entries than the gateway appends)."""
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    hops = [hop for hop in hops if hop]
    if len(hops) >= CLIENT_HOP:
        return hops[-CLIENT_HOP][:64]
    return request.remote_addr


def attempt(
    request: flask.Request,
    status: int,
    key: ApiKey | Principal | None,
    reason: str | None,
    *,
    team: str | None = None,
    link_id: str | None = None,
    files: list[dict] | None = None,
) -> AccessAttempt:
    """The audit record of a request (an upload link's token never in its path)."""
    return AccessAttempt(
        method=request.method,
        path=logs.redact_path(request.path),
        status=status,
        outcome="allowed" if status < 400 else "denied",
        reason=logs.redact(reason) if reason else reason,
        key_id=key.key_id if key else None,
        team=key.team if key else team,
        user_id=key.user_id if key else None,
        client_ip=client_ip(request),
        request_id=logs.request_id(request.headers),
        link_id=link_id,
        files=files,
    )


def audited(access: Access, record: AccessAttempt, response: flask.Response) -> flask.Response:
    """`response`, once `record` is audited; 503 with Retry-After when a write's record could not be stored."""
    try:
        access.audit(record)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    return response


def keyed(
    access: Access,
    handler: KeyedHandler,
    links: Links | None = None,
    signable: Callable[[str], bool] = lambda path: False,
) -> Callable[[flask.Request], flask.Response]:
    """`handler` behind the key check: authenticate, run, audit the outcome.

    A request that carries `sig` on a path `signable` accepts is let in by
    its signature instead (`Links.verify`), with no key and no key lookup;
    anywhere else `sig` means nothing and the key is required."""

    @functools.wraps(handler)
    def wrapper(request: flask.Request) -> flask.Response:
        if links is not None and signable(request.path) and SIGNATURE in request.args:
            return _by_link(request, list(request.args.items(multi=True)))
        key, refusal = access.authenticate(request.headers.get(API_KEY_HEADER))
        if key is None or refusal is not None:
            refused = error_response(
                401, refusal_message(refusal or ""), {"WWW-Authenticate": 'ApiKey header="x-api-key"'}
            )
            return audited(access, attempt(request, 401, key, refusal), refused)
        principal = principal_of(key)
        response, reason = guarded(request, lambda: handler(request, principal))
        return audited(access, attempt(request, response.status_code, key, reason), response)

    def _by_link(request: flask.Request, params: list[tuple[str, str]]) -> flask.Response:
        assert links is not None
        try:
            grant = links.verify(request.method, request.path, params)
        except LinkRefused as exc:
            return audited(
                access, attempt(request, exc.status, None, exc.message), error_response(exc.status, exc.message)
            )
        principal = Principal(LINK_PRINCIPAL[0], LINK_PRINCIPAL[1], grant.team, LINK_PRINCIPAL[2])
        response, reason = guarded(request, lambda: handler(request, principal))
        if response.status_code == 200:
            # Anyone holding the link may read it until it expires, so shared
            # caches may keep it that long (and no longer).
            response.headers["Cache-Control"] = f"public, max-age={grant.seconds_left(links.clock())}"
        return audited(access, attempt(request, response.status_code, principal, reason), response)

    return wrapper
