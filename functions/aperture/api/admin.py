"""The `admin` function: teams, users and API keys (spec S5).

The rules (who may see and change what) are the `Provisioning` service's;
this module parses requests and shapes answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import flask

from aperture.api.auth import keyed
from aperture.api.json_io import json_response, read_json, string_field
from aperture.api.routing import Router
from aperture.domain.errors import ApiError
from aperture.domain.records import TEAM_ID, ApiKey, Principal
from aperture.services.provisioning import Provisioning

if TYPE_CHECKING:
    from aperture.container import Container


def build(container: Container) -> Callable[[flask.Request], flask.Response]:
    """The `admin` function's handler, over the container's services."""
    return keyed(container.access, AdminApi(container.provisioning, container.config.max_json_bytes).router)


# What an id the API made can look like (usr_…, key_…): a value that is not
# one names nothing, and must not reach Firestore, where "a/b" is a path and
# "__x__" a reserved id (both were 500s).
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RESERVED = re.compile(r"__.*__")


def _known_shape(value: str) -> bool:
    return bool(_ID.fullmatch(value)) and not _RESERVED.fullmatch(value)


def _team(team: str) -> str:
    """A team id from the path; one that no team can have is 404, like a missing team."""
    if not TEAM_ID.fullmatch(team):
        raise ApiError(404, "team not found")
    return team


def key_view(key: ApiKey) -> dict[str, Any]:
    view = asdict(key)
    del view["key_hash"], view["external_name"]  # never shown: the hash is as good as an index
    view["revoked"] = key.revoked
    return view


class AdminApi:
    def __init__(self, admin: Provisioning, max_json_bytes: int):
        self.admin = admin
        self.max_json_bytes = max_json_bytes
        self.router = Router(
            [
                ("/v1/me", ("GET",), self.me),
                ("/v1/teams", ("GET",), self.list_teams),
                ("/v1/teams", ("POST",), self.create_team),
                ("/v1/teams/<team>", ("GET",), self.get_team),
                ("/v1/teams/<team>/users", ("GET",), self.list_users),
                ("/v1/teams/<team>/users", ("POST",), self.create_user),
                ("/v1/keys", ("GET",), self.list_keys),
                ("/v1/keys", ("POST",), self.create_key),
                ("/v1/keys/<key_id>", ("DELETE",), self.revoke_key),
            ]
        )

    def me(self, request: flask.Request, principal: Principal) -> flask.Response:
        return json_response(
            {"key_id": principal.key_id, "user_id": principal.user_id, "team": principal.team, "role": principal.role}
        )

    def list_teams(self, request: flask.Request, principal: Principal) -> flask.Response:
        return json_response({"teams": [asdict(t) for t in self.admin.list_teams(principal)]})

    def create_team(self, request: flask.Request, principal: Principal) -> flask.Response:
        self.admin.may_create_team(principal)
        body = read_json(
            request, max_bytes=self.max_json_bytes, allowed={"team_id", "name", "gps_enabled"}, required={"team_id"}
        )
        team_id = body["team_id"]
        if not isinstance(team_id, str):
            raise ApiError(400, "team_id must be a string")
        gps = body.get("gps_enabled", False)
        if not isinstance(gps, bool):
            raise ApiError(400, "gps_enabled must be true or false")
        name = string_field(body, "name", default=team_id) or team_id
        return json_response(asdict(self.admin.create_team(principal, team_id, name, gps)), 201)

    def get_team(self, request: flask.Request, principal: Principal, team: str) -> flask.Response:
        return json_response(asdict(self.admin.get_team(principal, _team(team))))

    def list_users(self, request: flask.Request, principal: Principal, team: str) -> flask.Response:
        return json_response({"users": [asdict(u) for u in self.admin.list_users(principal, _team(team))]})

    def create_user(self, request: flask.Request, principal: Principal, team: str) -> flask.Response:
        self.admin.may_create_user(principal, _team(team))
        body = read_json(request, max_bytes=self.max_json_bytes, allowed={"email", "role"}, required={"email"})
        email = string_field(body, "email", max_length=254) or ""
        role = body.get("role", "member")
        if not isinstance(role, str):
            raise ApiError(400, "role must be member, admin or (for owners) owner")
        return json_response(asdict(self.admin.create_user(principal, team, email, role)), 201)

    def list_keys(self, request: flask.Request, principal: Principal) -> flask.Response:
        team = request.args.get("team", principal.team)
        return json_response({"keys": [key_view(k) for k in self.admin.list_keys(principal, team)]})

    def create_key(self, request: flask.Request, principal: Principal) -> flask.Response:
        self.admin.may_create_key(principal)
        body = read_json(request, max_bytes=self.max_json_bytes, allowed={"user_id", "name"}, required={"user_id"})
        user_id = string_field(body, "user_id", max_length=64) or ""
        name = string_field(body, "name", max_length=60)
        if not _known_shape(user_id):
            raise ApiError(404, "user not found")
        key, secret = self.admin.create_key(principal, user_id, name)
        return json_response({**key_view(key), "key": secret}, 201)

    def revoke_key(self, request: flask.Request, principal: Principal, key_id: str) -> flask.Response:
        if not _known_shape(key_id):
            raise ApiError(404, "key not found")
        return json_response(key_view(self.admin.revoke_key(principal, key_id)))
