"""Who is calling: the one key check, shared by every /v1 route and the local gateway's edge.

`check` maps a presented `x-api-key` to its key record or to the reason it is
refused. A record read from Firestore (good or revoked) is remembered for
`cache_seconds` in a bounded per-instance cache keyed by the key's hash, so
most requests make no Firestore read; a key revoked through another instance
is therefore refused here within `cache_seconds` of the revocation, and one
revoked through this instance at once (`forget`, wired to the revoke path by
`RevocationForgets`). A hash Firestore does not know is not remembered: a key
created a moment ago on another instance must work at once, and a negative
entry would save nothing against someone trying random keys.
`authenticate` is `check` plus the key's last-used time, rewritten at most
every `touch_seconds` per key and instance, off the request path.
`key_live` answers whether a key named by its id (the key that made an upload
link) is still good, through the same cache and the same revocation rule.

`audit` records an attempt with its final status, whatever the outcome. A
write (any method but GET, HEAD and OPTIONS) is audited durably: the record is
stored before the answer goes out, retried a few times, and when it still
cannot be stored the caller gets 503 with Retry-After instead of an answer
nobody could account for. Reads are audited in the background (the log line is
written at once; the Firestore record is batched and retried, and logged in
full if it is finally lost), so an audit outage never slows or fails a read.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache

from aperture.domain import keys
from aperture.domain.errors import ApiError
from aperture.domain.records import AccessAttempt, ApiKey, Principal
from aperture.runtime import logs

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from aperture.storage.audit import AuditLog
    from aperture.storage.identity import IdentityStore

MISSING, MALFORMED, UNKNOWN, REVOKED = "missing key", "malformed key", "unknown key", "revoked key"
INVALID_KEY = "invalid API key"
MISSING_KEY = "missing API key: send it in the x-api-key header"
READS = frozenset({"GET", "HEAD", "OPTIONS"})
AUDIT_RETRY_AFTER = "5"  # seconds a client is asked to wait when a durable audit write failed


def durable(method: str) -> bool:
    """Is a request with this method audited before it is answered (writes), or in the background (reads)?"""
    return method.upper() not in READS


def refusal_message(reason: str) -> str:
    """What a refused caller is told: never which of the invalid cases it was."""
    return MISSING_KEY if reason == MISSING else INVALID_KEY


def principal_of(key: ApiKey) -> Principal:
    return Principal(key.key_id, key.user_id, key.team, key.role)


class Access:
    def __init__(
        self,
        identity: IdentityStore,
        audit: AuditLog,
        *,
        touch_seconds: int = 60,
        cache_seconds: float = 0,
        cache_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        """`cache_seconds` 0 reads every key from Firestore (the local gateway's edge check, which keeps
        its own memory of good keys); the functions get `APERTURE_KEY_CACHE_SECONDS` from the container."""
        self._identity = identity
        self._audit = audit
        self._touch = dt.timedelta(seconds=touch_seconds)
        self._toucher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="key-touch")
        self._lock = threading.Lock()  # TTLCache is not thread-safe; request threads share it
        self._cached: TTLCache[str, ApiKey] | None = (
            TTLCache(cache_entries, cache_seconds, timer=clock) if cache_seconds > 0 else None
        )
        # The same records by key id, for `key_live` (links name the key that made them by id).
        self._cached_by_id: TTLCache[str, ApiKey] | None = (
            TTLCache(cache_entries, cache_seconds, timer=clock) if cache_seconds > 0 else None
        )
        # Bumped by `forget`: a read that started before a revocation is not remembered after it.
        self._forgets = 0
        # Keys whose last-used write this instance submitted: a remembered record's
        # `last_used_at` is stale, so it alone would submit one write per request.
        self._touched: TTLCache[str, bool] = TTLCache(cache_entries, touch_seconds, timer=clock)

    def check(self, presented: str | None) -> tuple[ApiKey | None, str | None]:
        """(key, None) when the key is good, else (key or None, reason it is refused)."""
        if not presented:
            return None, MISSING
        if not keys.well_formed(presented):
            return None, MALFORMED
        key = self._key(keys.key_hash(presented))
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

    def key_live(self, key_id: str | None) -> bool:
        """Is the key with this id still good (exists, not revoked)? Cached as `check` is: a key
        revoked on another instance is seen within `cache_seconds`, on this one at once."""
        if not key_id:
            return False
        key = self._key_by_id(key_id)
        return key is not None and not key.revoked

    def forget(self, key_hash: str, key_id: str | None = None) -> None:
        """Drop a key from this instance's cache (it was just revoked here): its next check reads Firestore."""
        with self._lock:
            self._forgets += 1
            if self._cached is not None:
                self._cached.pop(key_hash, None)
            if self._cached_by_id is not None:
                if key_id is None:
                    key_id = next((k.key_id for k in self._cached_by_id.values() if k.key_hash == key_hash), None)
                if key_id is not None:
                    self._cached_by_id.pop(key_id, None)

    def audit(self, attempt: AccessAttempt) -> None:
        """Record `attempt`; a write's record durably, else ApiError 503 with Retry-After (module doc)."""
        if not durable(attempt.method):
            try:
                self._audit.record(attempt)
            except Exception:  # a synchronous log (the edge's) failed: the log line is written, the read goes on
                logs.exception("audit record of a read not stored", request_id=attempt.request_id)
            return
        try:
            self._audit.record(attempt, durable=True)
        except Exception:
            logs.exception("durable audit write failed", request_id=attempt.request_id)
            raise ApiError(
                503,
                "the audit log is unavailable, so this request cannot be accounted for; retry later",
                {"Retry-After": AUDIT_RETRY_AFTER},
            ) from None

    def _key(self, key_hash: str) -> ApiKey | None:
        return self._through_cache(self._cached, self._identity.key_by_hash, key_hash)

    def _key_by_id(self, key_id: str) -> ApiKey | None:
        return self._through_cache(self._cached_by_id, self._identity.key_by_id, key_id)

    def _through_cache(self, cache, load: Callable[[str], ApiKey | None], name: str) -> ApiKey | None:
        """`load(name)`, remembered in `cache` (None: no cache); a load that a `forget` overtook is
        not remembered, so a revoked key is never cached again after its revocation."""
        if cache is None:
            return load(name)
        with self._lock:
            key = cache.get(name)
            forgets = self._forgets
        if key is not None:
            return key
        key = load(name)
        if key is not None:
            with self._lock:
                if forgets == self._forgets:
                    cache[name] = key
        return key

    def _maybe_touch(self, key: ApiKey) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        if key.last_used_at is not None and now - key.last_used_at <= self._touch:
            return
        with self._lock:
            if key.key_hash in self._touched:
                return
            self._touched[key.key_hash] = True
        self._toucher.submit(self._touch_quietly, key)

    def _touch_quietly(self, key: ApiKey) -> None:
        try:
            self._identity.touch_key(key)
        except Exception:
            logs.exception("last-used update failed", key_id=key.key_id)


class RevocationForgets:
    """An identity store as the revoke path sees it: revoking a key also drops it from `access`'s
    cache, so a key revoked through this instance is refused here at once (elsewhere: within the TTL)."""

    def __init__(self, identity: IdentityStore, access: Access):
        self._identity = identity
        self._access = access

    def revoke_key(self, key: ApiKey) -> ApiKey:
        try:
            return self._identity.revoke_key(key)
        finally:
            self._access.forget(key.key_hash, key.key_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._identity, name)
