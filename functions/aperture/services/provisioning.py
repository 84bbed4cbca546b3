"""Creating identities: keys for users, and the first owner of a platform.

Shared by the admin API, the `aperture` CLI and the local stack's demo team.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from aperture.domain import keys
from aperture.domain.errors import AlreadyExists, ApiError
from aperture.domain.records import EMAIL, ROLES, TEAM_ID, TEAM_ID_RULE, ApiKey, Principal, Team, User

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from aperture.storage.identity import IdentityStore
    from aperture.storage.key_issuers import KeyIssuer


BOOTSTRAP = {"via": "bootstrap"}  # `created_by` of keys made outside the API (CLI bootstrap, demo team)


def made_by(principal: Principal) -> dict[str, Any]:
    """`created_by` of a key made through the API: the key that asked and its user."""
    return {"key_id": principal.key_id, "user_id": principal.user_id}


def issue_key(
    identity: IdentityStore, issuer: KeyIssuer, user: User, name: str, created_by: dict[str, Any] | None = None
) -> tuple[ApiKey, str]:
    """A new key for `user`: the record (hash only) and the key string, shown once. `created_by`
    says who made it (`made_by`, or BOOTSTRAP when nobody's key did)."""
    issued = issuer.issue(name)
    record = ApiKey(
        key_id=keys.new_key_id(),
        key_hash=keys.key_hash(issued.key),
        prefix=keys.display_prefix(issued.key),
        user_id=user.user_id,
        team=user.team,
        role=user.role,
        issuer=issuer.name,
        external_name=issued.external_name,
        created_at=dt.datetime.now(dt.timezone.utc),
        last_used_at=None,
        revoked_at=None,
        created_by=dict(created_by or BOOTSTRAP),
    )
    identity.add_key(record)
    return record, issued.key


def ensure_team(identity: IdentityStore, team_id: str, name: str | None = None) -> Team:
    try:
        return identity.create_team(team_id, name or team_id)
    except AlreadyExists:
        team = identity.get_team(team_id)
        if team is None:  # deleted between the two calls
            raise
        return team


def bootstrap(
    identity: IdentityStore, issuer: KeyIssuer, *, team_id: str, email: str, role: str = "owner"
) -> tuple[Team, User, ApiKey, str]:
    """A team (created if missing), a user with `role` in it, and a key for that user."""
    team = ensure_team(identity, team_id)
    user = identity.create_user(team.team_id, email, role)
    key, secret = issue_key(identity, issuer, user, f"{team_id}/{email}")
    return team, user, key, secret


class Provisioning:
    """The admin use cases (S5), with their rules: who may see and change which teams, users and keys.

    Roles: a platform owner manages teams and anything in them; a team admin
    manages the users and keys of their own team; a member can read who they
    are. Other teams' users and keys answer 404, exactly as missing ones do.
    """

    def __init__(self, identity: IdentityStore, issuer: KeyIssuer):
        self._identity = identity
        self._issuer = issuer

    def list_teams(self, principal: Principal) -> list[Team]:
        principal.require_role("owner")
        return self._identity.list_teams()

    @staticmethod
    def may_create_team(principal: Principal) -> None:
        """403 unless the caller may create teams (checked before the request body is read)."""
        principal.require_role("owner")

    @staticmethod
    def may_create_user(principal: Principal, team: str) -> None:
        principal.require_team(team, "team", owner_allowed=True)
        principal.require_role("admin")

    @staticmethod
    def may_create_key(principal: Principal) -> None:
        principal.require_role("admin")

    def create_team(self, principal: Principal, team_id: str, name: str, gps_enabled: bool) -> Team:
        self.may_create_team(principal)
        if not TEAM_ID.fullmatch(team_id):
            raise ApiError(400, f"team_id must be {TEAM_ID_RULE}")
        try:
            return self._identity.create_team(team_id, name, gps_enabled)
        except AlreadyExists as exc:
            raise ApiError(409, str(exc)) from None

    def get_team(self, principal: Principal, team: str) -> Team:
        principal.require_team(team, "team", owner_allowed=True)
        found = self._identity.get_team(team)
        if found is None:
            raise ApiError(404, "team not found")
        return found

    def list_users(self, principal: Principal, team: str) -> list[User]:
        principal.require_team(team, "team", owner_allowed=True)
        principal.require_role("admin")
        return self._identity.list_users(team)

    def create_user(self, principal: Principal, team: str, email: str, role: str) -> User:
        self.may_create_user(principal, team)
        if not EMAIL.fullmatch(email):
            raise ApiError(400, "email is not an e-mail address")
        if role not in ROLES:
            raise ApiError(400, "role must be member, admin or (for owners) owner")
        if role == "owner" and not principal.is_owner:
            raise ApiError(403, "only an owner can create an owner")
        if self._identity.get_team(team) is None:
            raise ApiError(404, "team not found")
        return self._identity.create_user(team, email, role)

    def list_keys(self, principal: Principal, team: str) -> list[ApiKey]:
        principal.require_role("admin")
        principal.require_team(team, "team", owner_allowed=True)
        return self._identity.list_keys(team)

    def create_key(self, principal: Principal, user_id: str, name: str | None) -> tuple[ApiKey, str]:
        self.may_create_key(principal)
        user = self._identity.get_user(user_id)
        if user is None:
            raise ApiError(404, "user not found")
        principal.require_team(user.team, "user", owner_allowed=True)
        if user.role == "owner":
            principal.require_role("owner")  # an admin must not mint an owner's key
        name = name or f"{user.team}/{user.email}"[:60]
        return issue_key(self._identity, self._issuer, user, name, made_by(principal))

    def revoke_key(self, principal: Principal, key_id: str) -> ApiKey:
        key = self._identity.key_by_id(key_id)
        if key is None:
            raise ApiError(404, "key not found")
        principal.require_team(key.team, "key", owner_allowed=True)
        if key.user_id != principal.user_id:
            principal.require_role("owner" if key.role == "owner" else "admin")  # anyone may revoke their own key
        revoked = self._identity.revoke_key(key)
        if not key.revoked:
            self._issuer.revoke(key.external_name)
        return revoked
