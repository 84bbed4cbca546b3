"""Creating identities: keys for users, and the first owner of a platform.

Shared by the admin API, the `aperture` CLI and the local stack's demo team.
"""

from __future__ import annotations

import datetime as dt

from aperture import keys
from aperture.identity_store import AlreadyExists, ApiKey, IdentityStore, Team, User
from aperture.key_issuers import KeyIssuer


def issue_key(identity: IdentityStore, issuer: KeyIssuer, user: User, name: str) -> tuple[ApiKey, str]:
    """A new key for `user`: the record (hash only) and the key string, shown once."""
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
    )
    identity.add_key(record)
    return record, issued.key


def ensure_team(identity: IdentityStore, team_id: str, name: str | None = None) -> Team:
    try:
        return identity.create_team(team_id, name or team_id)
    except AlreadyExists:
        return identity.get_team(team_id)


def bootstrap(
    identity: IdentityStore, issuer: KeyIssuer, *, team_id: str, email: str, role: str = "owner"
) -> tuple[Team, User, ApiKey, str]:
    """A team (created if missing), a user with `role` in it, and a key for that user."""
    team = ensure_team(identity, team_id)
    user = identity.create_user(team.team_id, email, role)
    key, secret = issue_key(identity, issuer, user, f"{team_id}/{email}")
    return team, user, key, secret
