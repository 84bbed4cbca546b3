"""The `admin` function: teams, users and API keys (spec S5).

Roles: a platform owner manages teams and anything in them; a team admin
manages the users and keys of their own team; a member can read who they are.
Other teams' users and keys answer 404, exactly as missing ones do.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict

import flask
from werkzeug.routing import Map, Rule

from aperture import provisioning
from aperture.access import Principal, default_access, team_route
from aperture.config import get_config
from aperture.http_errors import ApiError, not_found
from aperture.http_io import dispatch, json_response, read_json, string_field
from aperture.identity_store import AlreadyExists, ApiKey, IdentityStore, Team, User
from aperture.key_issuers import KeyIssuer, issuer_for

TEAM_ID = re.compile(r"[a-z][a-z0-9-]{1,38}[a-z0-9]")
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}")

ROUTES = Map(
    [
        Rule("/v1/me", methods=["GET"], endpoint="me"),
        Rule("/v1/teams", methods=["GET"], endpoint="list_teams"),
        Rule("/v1/teams", methods=["POST"], endpoint="create_team"),
        Rule("/v1/teams/<team>", methods=["GET"], endpoint="get_team"),
        Rule("/v1/teams/<team>/users", methods=["GET"], endpoint="list_users"),
        Rule("/v1/teams/<team>/users", methods=["POST"], endpoint="create_user"),
        Rule("/v1/keys", methods=["GET"], endpoint="list_keys"),
        Rule("/v1/keys", methods=["POST"], endpoint="create_key"),
        Rule("/v1/keys/<key_id>", methods=["DELETE"], endpoint="revoke_key"),
    ],
    strict_slashes=False,
)


@functools.cache
def issuer() -> KeyIssuer:
    config = get_config()
    return issuer_for(config.key_issuer, config.project, config.api_service)


@team_route(default_access)
def handle(request: flask.Request, principal: Principal) -> flask.Response:
    endpoint, args = dispatch(ROUTES, request)
    return _HANDLERS[endpoint](request, principal, default_access().identity, **args)


# -- views ----------------------------------------------------------------------


def _team_view(team: Team) -> dict:
    return asdict(team)


def _user_view(user: User) -> dict:
    return asdict(user)


def _key_view(key: ApiKey) -> dict:
    view = asdict(key)
    del view["key_hash"], view["external_name"]  # never shown: the hash is as good as an index
    view["revoked"] = key.revoked
    return view


# -- handlers -------------------------------------------------------------------


def me(request, principal: Principal, identity: IdentityStore) -> flask.Response:
    return json_response({"key_id": principal.key_id, "user_id": principal.user_id,
                          "team": principal.team, "role": principal.role})


def list_teams(request, principal: Principal, identity: IdentityStore) -> flask.Response:
    principal.require_role("owner")
    return json_response({"teams": [_team_view(t) for t in identity.list_teams()]})


def create_team(request, principal: Principal, identity: IdentityStore) -> flask.Response:
    principal.require_role("owner")
    body = read_json(request, max_bytes=get_config().max_json_bytes,
                     allowed={"team_id", "name", "gps_enabled"}, required={"team_id"})
    team_id = body["team_id"]
    if not isinstance(team_id, str) or not TEAM_ID.fullmatch(team_id):
        raise ApiError(400, "team_id must be 3-40 characters: lower-case letters, digits and '-', starting with a letter")
    gps = body.get("gps_enabled", False)
    if not isinstance(gps, bool):
        raise ApiError(400, "gps_enabled must be true or false")
    name = string_field(body, "name", default=team_id)
    try:
        team = identity.create_team(team_id, name, gps)
    except AlreadyExists as exc:
        raise ApiError(409, str(exc)) from None
    return json_response(_team_view(team), 201)


def get_team(request, principal: Principal, identity: IdentityStore, team: str) -> flask.Response:
    principal.require_team(team, "team", owner_allowed=True)
    found = identity.get_team(team)
    if found is None:
        raise not_found("team not found")
    return json_response(_team_view(found))


def list_users(request, principal: Principal, identity: IdentityStore, team: str) -> flask.Response:
    principal.require_team(team, "team", owner_allowed=True)
    principal.require_role("admin")
    return json_response({"users": [_user_view(u) for u in identity.list_users(team)]})


def create_user(request, principal: Principal, identity: IdentityStore, team: str) -> flask.Response:
    principal.require_team(team, "team", owner_allowed=True)
    principal.require_role("admin")
    body = read_json(request, max_bytes=get_config().max_json_bytes, allowed={"email", "role"}, required={"email"})
    email = string_field(body, "email", max_length=254)
    if not EMAIL.fullmatch(email):
        raise ApiError(400, "email is not an e-mail address")
    role = body.get("role", "member")
    if role not in ("member", "admin", "owner"):
        raise ApiError(400, "role must be member, admin or (for owners) owner")
    if role == "owner" and not principal.is_owner:
        raise ApiError(403, "only an owner can create an owner")
    if identity.get_team(team) is None:
        raise not_found("team not found")
    return json_response(_user_view(identity.create_user(team, email, role)), 201)


def list_keys(request, principal: Principal, identity: IdentityStore) -> flask.Response:
    principal.require_role("admin")
    team = request.args.get("team", principal.team)
    principal.require_team(team, "team", owner_allowed=True)
    return json_response({"keys": [_key_view(k) for k in identity.list_keys(team)]})


def create_key(request, principal: Principal, identity: IdentityStore) -> flask.Response:
    principal.require_role("admin")
    body = read_json(request, max_bytes=get_config().max_json_bytes, allowed={"user_id", "name"}, required={"user_id"})
    user_id = string_field(body, "user_id", max_length=64)
    user = identity.get_user(user_id)
    if user is None:
        raise not_found("user not found")
    principal.require_team(user.team, "user", owner_allowed=True)
    if user.role == "owner":
        principal.require_role("owner")  # an admin must not mint an owner's key
    name = string_field(body, "name", max_length=60, default=f"{user.team}/{user.email}"[:60])
    key, secret = provisioning.issue_key(identity, issuer(), user, name)
    return json_response({**_key_view(key), "key": secret}, 201)


def revoke_key(request, principal: Principal, identity: IdentityStore, key_id: str) -> flask.Response:
    key = identity.key_by_id(key_id)
    if key is None:
        raise not_found("key not found")
    principal.require_team(key.team, "key", owner_allowed=True)
    if key.user_id != principal.user_id:
        principal.require_role("owner" if key.role == "owner" else "admin")  # anyone may revoke their own key
    revoked = identity.revoke_key(key)
    if not key.revoked:
        issuer().revoke(key.external_name)
    return json_response(_key_view(revoked))


_HANDLERS = {
    "me": me, "list_teams": list_teams, "create_team": create_team, "get_team": get_team,
    "list_users": list_users, "create_user": create_user,
    "list_keys": list_keys, "create_key": create_key, "revoke_key": revoke_key,
}
