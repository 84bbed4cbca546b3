"""The gateway's key check, as API Gateway does it at the edge.

A request to a secured operation needs an `x-api-key` that names a live key;
otherwise the gateway answers 401 itself and audits the attempt through the
same `AccessAttempt` and `AuditLog` as the functions (the function never sees
it): the client address is the peer (the gateway is the first hop; a client's
own X-Forwarded-For is not believed), the path without an upload link's token,
and the record is stored before the answer; when it cannot be stored the
gateway answers 503 with Retry-After instead. Good keys are remembered for a few seconds, like API Gateway's
own key-validity cache; revocation reaches the functions within their key cache
bound (APERTURE_KEY_CACHE_SECONDS, `aperture.services.access`).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from aperture.api.errors import unavailable
from aperture.config import Config
from aperture.container import Container
from aperture.domain import keys
from aperture.domain.errors import ApiError
from aperture.domain.records import AccessAttempt
from aperture.runtime import logs
from aperture.services.access import Access, refusal_message

GOOD_KEY_SECONDS = 10.0


class EdgeKeyCheck:
    """The same key check as every function's (`Access.check`), with a short memory of good keys."""

    def __init__(self, access: Access):
        self._access = access
        self._good: dict[str, float] = {}

    async def __call__(self, presented: str | None, route, request: web.Request) -> tuple[int, str] | None:
        if presented and self._good.get(keys.key_hash(presented), 0.0) > time.monotonic():
            return None  # remembered as good: no thread hop, no Firestore read
        try:
            reason = await asyncio.to_thread(self._refusal, presented)
        except Exception as exc:
            if not unavailable(exc):
                raise
            # Firestore (or the network to it) is down: the key cannot be checked,
            # so the answer is the functions' own 503, which the client may retry.
            return 503, "a backend is unavailable: try again shortly"
        if reason is None:
            return None
        try:
            await asyncio.to_thread(self._record, request, reason)
        except ApiError as exc:  # the refusal could not be audited
            return exc.status, exc.message
        return 401, refusal_message(reason)

    def _refusal(self, presented: str | None) -> str | None:
        key, reason = self._access.check(presented)
        if key is not None and reason is None and presented:
            self._good[keys.key_hash(presented)] = time.monotonic() + GOOD_KEY_SECONDS
        return reason

    def _record(self, request: web.Request, reason: str) -> None:
        self._access.audit(
            AccessAttempt(
                method=request.method,
                path=logs.redact_path(request.path),
                status=401,
                outcome="denied",
                reason=f"{reason} (at the gateway)",
                key_id=None,
                team=None,
                user_id=None,
                client_ip=request.remote,
                request_id=request.get("request_id") or logs.request_id(request.headers),
            )
        )


def firestore_edge_check(project: str) -> EdgeKeyCheck:
    """The gateway's check over the project's Firestore, audited synchronously (the gateway has no
    background writer thread to flush before it exits)."""
    from aperture.storage.audit import AuditLog

    parts = Container(Config(project=project))
    return EdgeKeyCheck(Access(parts.identity, AuditLog(parts.firestore, synchronous=True)))
