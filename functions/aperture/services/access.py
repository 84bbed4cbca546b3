"""Who is calling: the one key check, shared by every /v1 route and the local gateway's edge.

`check` maps a presented `x-api-key` to its key record or to the reason it is
refused, fresh from Firestore on every call, so a revoked key stops at once.
`authenticate` is `check` plus the key's last-used time, rewritten at most
every `touch_seconds`, off the request path. `audit` records an attempt with
its final status, whatever the outcome.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from aperture.domain import keys
from aperture.domain.records import AccessAttempt, ApiKey, Principal
from aperture.runtime import logs

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from aperture.storage.audit import AuditLog
    from aperture.storage.identity import IdentityStore

MISSING, MALFORMED, UNKNOWN, REVOKED = "missing key", "malformed key", "unknown key", "revoked key"
INVALID_KEY = "invalid API key"
MISSING_KEY = "missing API key: send it in the x-api-key header"


def refusal_message(reason: str) -> str:
    """What a refused caller is told: never which of the invalid cases it was."""
    return MISSING_KEY if reason == MISSING else INVALID_KEY


def principal_of(key: ApiKey) -> Principal:
    return Principal(key.key_id, key.user_id, key.team, key.role)


class Access:
    def __init__(self, identity: IdentityStore, audit: AuditLog, *, touch_seconds: int = 60):
        self._identity = identity
        self._audit = audit
        self._touch = dt.timedelta(seconds=touch_seconds)
        self._toucher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="key-touch")

    def check(self, presented: str | None) -> tuple[ApiKey | None, str | None]:
        """(key, None) when the key is good, else (key or None, reason it is refused)."""
        if not presented:
            return None, MISSING
        if not keys.well_formed(presented):
            return None, MALFORMED
        key = self._identity.key_by_hash(keys.key_hash(presented))
        if key is None or not keys.matches(presented, key.key_hash):
            return None, UNKNOWN
        if key.revoked:
            return key, REVOKED
        return key, None

    def authenticate(self, presented: str | None) -> tuple[ApiKey | None, str | None]:
        """`check`, and the key's last-used time kept (at most every `touch_seconds`)."""
        key, refusal = self.check(presented)
        if key is not None and refusal is None:
            self._maybe_touch(key)
        return key, refusal

    def audit(self, attempt: AccessAttempt) -> None:
        self._audit.record(attempt)

    def _maybe_touch(self, key: ApiKey) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        if key.last_used_at is None or now - key.last_used_at > self._touch:
            self._toucher.submit(self._touch_quietly, key)

    def _touch_quietly(self, key: ApiKey) -> None:
        try:
            self._identity.touch_key(key)
        except Exception:
            logs.exception("last-used update failed", key_id=key.key_id)
