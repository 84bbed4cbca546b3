"""Firestore repository for teams, users and API keys (schema: docs/data-model.md).

Writes are create-only where identity matters (a team id or key hash is
claimed once); revocation and last-used are plain field updates.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from aperture.domain.errors import AlreadyExists
from aperture.domain.records import ApiKey, Team, User

TEAMS, USERS, KEYS = "teams", "users", "keys"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class IdentityStore:
    def __init__(self, db: firestore.Client):
        self._db = db

    # teams ---------------------------------------------------------------------
    def create_team(self, team_id: str, name: str, gps_enabled: bool = False) -> Team:
        team = Team(team_id, name, gps_enabled, _now())
        try:
            self._db.collection(TEAMS).document(team_id).create(asdict(team))
        except gexc.AlreadyExists:
            raise AlreadyExists(f"team {team_id!r} already exists") from None
        return team

    def get_team(self, team_id: str) -> Team | None:
        snap = self._db.collection(TEAMS).document(team_id).get()
        return Team(**snap.to_dict()) if snap.exists else None

    def list_teams(self) -> list[Team]:
        return [Team(**s.to_dict()) for s in self._db.collection(TEAMS).order_by("team_id").stream()]

    # users ---------------------------------------------------------------------
    def create_user(self, team: str, email: str, role: str) -> User:
        user = User("usr_" + uuid.uuid4().hex[:16], team, email, role, _now())
        self._db.collection(USERS).document(user.user_id).create(asdict(user))
        return user

    def get_user(self, user_id: str) -> User | None:
        snap = self._db.collection(USERS).document(user_id).get()
        return User(**snap.to_dict()) if snap.exists else None

    def list_users(self, team: str) -> list[User]:
        query = self._db.collection(USERS).where(filter=FieldFilter("team", "==", team))
        return sorted((User(**s.to_dict()) for s in query.stream()), key=lambda u: u.created_at)

    # keys ----------------------------------------------------------------------
    def add_key(self, key: ApiKey) -> None:
        # The document id is the key's hash: the hot path is one get by id.
        self._db.collection(KEYS).document(key.key_hash).create(asdict(key))

    def key_by_hash(self, key_hash: str) -> ApiKey | None:
        snap = self._db.collection(KEYS).document(key_hash).get()
        return ApiKey(**snap.to_dict()) if snap.exists else None

    def key_by_id(self, key_id: str) -> ApiKey | None:
        query = self._db.collection(KEYS).where(filter=FieldFilter("key_id", "==", key_id)).limit(1)
        for snap in query.stream():
            return ApiKey(**snap.to_dict())
        return None

    def list_keys(self, team: str | None = None) -> list[ApiKey]:
        query = self._db.collection(KEYS)
        if team is not None:
            query = query.where(filter=FieldFilter("team", "==", team))
        return sorted((ApiKey(**s.to_dict()) for s in query.stream()), key=lambda k: k.created_at)

    def revoke_key(self, key: ApiKey) -> ApiKey:
        if key.revoked:
            return key
        revoked_at = _now()
        self._db.collection(KEYS).document(key.key_hash).update({"revoked_at": revoked_at})
        return ApiKey(**{**asdict(key), "revoked_at": revoked_at})

    def touch_key(self, key: ApiKey) -> None:
        self._db.collection(KEYS).document(key.key_hash).update({"last_used_at": _now()})
