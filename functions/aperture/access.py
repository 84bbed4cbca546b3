"""Who is calling, and what they may see: the one gate every /v1 route passes.

`team_route` authenticates the `x-api-key` (fresh from Firestore on every
request, so a revoked key stops at once), hands the handler a `Principal`,
and audits the attempt with its final status, whatever the outcome. Team
isolation lives in `Principal.require_team`: a resource of another team is
reported exactly like a missing one (same status, same body).
"""

from __future__ import annotations

import datetime as dt
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import flask

from aperture import keys, logs
from aperture.audit import AccessAttempt, AuditLog
from aperture.http_errors import ApiError, error_response
from aperture.identity_store import ApiKey, IdentityStore

API_KEY_HEADER = "x-api-key"
_RANK = {"member": 1, "admin": 2, "owner": 3}
INVALID_KEY = "invalid API key"


@dataclass(frozen=True)
class Principal:
    key_id: str
    user_id: str
    team: str
    role: str

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    def require_role(self, *roles: str) -> None:
        """403 unless the caller has one of `roles` or a higher one (member < admin < owner)."""
        if _RANK.get(self.role, 0) >= min(_RANK[r] for r in roles):
            return
        raise ApiError(403, f"this route needs the {' or '.join(roles)} role; your key has {self.role}")

    def require_team(self, team: str | None, what: str, *, owner_allowed: bool = False) -> None:
        """404, identical to a missing resource, when `team` is not the caller's."""
        if team == self.team or (owner_allowed and self.is_owner):
            return
        raise ApiError(404, f"{what} not found")


class Access:
    def __init__(self, identity: IdentityStore, audit: AuditLog, *, touch_seconds: int = 60):
        self._identity = identity
        self._audit = audit
        self._touch = dt.timedelta(seconds=touch_seconds)
        self._toucher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="key-touch")

    @property
    def identity(self) -> IdentityStore:
        return self._identity

    def authenticate(self, presented: str | None) -> tuple[ApiKey | None, str | None]:
        """(key, None) when the key is good, else (key or None, reason it is refused)."""
        if not presented:
            return None, "missing key"
        if not keys.well_formed(presented):
            return None, "malformed key"
        key = self._identity.key_by_hash(keys.key_hash(presented))
        if key is None or not keys.matches(presented, key.key_hash):
            return None, "unknown key"
        if key.revoked:
            return key, "revoked key"
        self._maybe_touch(key)
        return key, None

    def _maybe_touch(self, key: ApiKey) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        if key.last_used_at is None or now - key.last_used_at > self._touch:
            self._toucher.submit(self._touch_quietly, key)

    def _touch_quietly(self, key: ApiKey) -> None:
        try:
            self._identity.touch_key(key)
        except Exception:
            logs.exception("last-used update failed", key_id=key.key_id)

    def audit(self, request: flask.Request, status: int, key: ApiKey | None, reason: str | None) -> None:
        self._audit.record(
            AccessAttempt(
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
        )


def client_ip(request: flask.Request) -> str | None:
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded:
        return forwarded.split(",")[0].strip()
    return request.remote_addr


@functools.cache
def default_access() -> Access:
    """The gate of this function instance, over the instance's Firestore client."""
    from aperture import clients
    from aperture.config import get_config
    from aperture.identity_store import IdentityStore as _IdentityStore

    config = get_config()
    db = clients.firestore_client()
    return Access(_IdentityStore(db), AuditLog(db, config.audit_ttl_days), touch_seconds=config.key_touch_seconds)


Handler = Callable[[flask.Request, Principal], flask.Response]


def team_route(access: Callable[[], Access]) -> Callable[[Handler], Callable[[flask.Request], flask.Response]]:
    """Decorate a /v1 handler: authenticate, run, audit the outcome."""

    def decorate(handler: Handler) -> Callable[[flask.Request], flask.Response]:
        @functools.wraps(handler)
        def wrapper(request: flask.Request) -> flask.Response:
            gate = access()
            key, refusal = gate.authenticate(request.headers.get(API_KEY_HEADER))
            if refusal is not None:
                message = "missing API key: send it in the x-api-key header" if refusal == "missing key" else INVALID_KEY
                gate.audit(request, 401, key, refusal)
                return error_response(401, message, {"WWW-Authenticate": 'ApiKey header="x-api-key"'})
            principal = Principal(key.key_id, key.user_id, key.team, key.role)
            reason = None
            try:
                response = handler(request, principal)
            except ApiError as exc:
                response, reason = error_response(exc.status, exc.message, exc.headers), exc.message
            except Exception:
                logs.exception("unhandled error", request_id=logs.request_id(request.headers), path=request.path)
                response = error_response(500, f"internal error (request id {logs.request_id(request.headers)})")
                reason = "internal error"
            gate.audit(request, response.status_code, key, reason)
            return response

        return wrapper

    return decorate
