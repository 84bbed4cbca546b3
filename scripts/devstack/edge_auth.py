"""The gateway's key check, as API Gateway does it at the edge.

A request to a secured operation needs an `x-api-key` that names a live key;
otherwise the gateway answers 401 itself and audits the attempt (the function
never sees it). Good keys are remembered for a few seconds, like API Gateway's
own key-validity cache; revocation still takes effect at once because every
function re-checks the key in Firestore (`aperture.access`).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from aperture import keys, logs
from aperture.audit import AccessAttempt, AuditLog
from aperture.identity_store import IdentityStore

GOOD_KEY_SECONDS = 10.0


class EdgeKeyCheck:
    def __init__(self, identity: IdentityStore, audit: AuditLog):
        self._identity = identity
        self._audit = audit
        self._good: dict[str, float] = {}

    async def __call__(self, presented: str | None, route, request: web.Request) -> tuple[int, str] | None:
        if presented and self._good.get(keys.key_hash(presented), 0.0) > time.monotonic():
            return None  # remembered as good: no thread hop, no Firestore read
        reason = await asyncio.to_thread(self._refusal, presented)
        if reason is None:
            return None
        message = "missing API key: send it in the x-api-key header" if reason == "missing key" else "invalid API key"
        await asyncio.to_thread(self._record, request, reason)
        return 401, message

    def _refusal(self, presented: str | None) -> str | None:
        if not presented:
            return "missing key"
        if not keys.well_formed(presented):
            return "malformed key"
        digest = keys.key_hash(presented)
        if self._good.get(digest, 0.0) > time.monotonic():
            return None
        key = self._identity.key_by_hash(digest)
        if key is None:
            return "unknown key"
        if key.revoked:
            return "revoked key"
        self._good[digest] = time.monotonic() + GOOD_KEY_SECONDS
        return None

    def _record(self, request: web.Request, reason: str) -> None:
        forwarded = request.headers.get("X-Forwarded-For")
        self._audit.record(
            AccessAttempt(
                method=request.method,
                path=request.path,
                status=401,
                outcome="denied",
                reason=f"{reason} (at the gateway)",
                key_id=None,
                team=None,
                user_id=None,
                client_ip=forwarded.split(",")[0].strip() if forwarded else request.remote,
                request_id=request.get("request_id") or logs.request_id(request.headers),
            )
        )


def firestore_edge_check(project: str) -> EdgeKeyCheck:
    from google.cloud import firestore

    db = firestore.Client(project=project)
    return EdgeKeyCheck(IdentityStore(db), AuditLog(db, synchronous=True))
