"""Keys, roles, team isolation and audit, through the gateway (S5)."""

from __future__ import annotations

import time

import pytest
import requests
from google.cloud.firestore_v1.base_query import FieldFilter

from aperture.storage.audit import COLLECTION as AUDIT

# (method, path template, JSON body, role needed) for every admin route.
ROUTES = [
    ("GET", "/v1/me", None, "member"),
    ("GET", "/v1/teams", None, "owner"),
    ("POST", "/v1/teams", {"team_id": "newteam"}, "owner"),
    ("GET", "/v1/teams/{team}", None, "member"),
    ("GET", "/v1/teams/{team}/users", None, "admin"),
    ("POST", "/v1/teams/{team}/users", {"email": "x@y.example"}, "admin"),
    ("GET", "/v1/keys", None, "admin"),
    ("POST", "/v1/keys", {"user_id": "{user}"}, "admin"),
    ("DELETE", "/v1/keys/{key}", None, "admin"),
]


def call(gateway, method, path, caller=None, body=None, headers=None, **fmt):
    path = path.format(**fmt)
    if body is not None:
        body = {k: (v.format(**fmt) if isinstance(v, str) else v) for k, v in body.items()}
    all_headers = dict(headers or {})
    if caller is not None:
        all_headers.update(caller.headers)
    return gateway.request(method, path, json=body, headers=all_headers)


def assert_error(response, status):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == status
    assert response.json()["error"]["message"]


def audit_records(firestore_client, path, status, key_id=None, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        found = [
            d.to_dict()
            for d in firestore_client.collection(AUDIT).where(filter=FieldFilter("path", "==", path)).stream()
            if d.to_dict()["status"] == status and (key_id is None or d.to_dict()["key_id"] == key_id)
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture
def team_a(make_caller):
    return {"admin": make_caller("team-a", "admin"), "member": make_caller("team-a", "member")}


@pytest.mark.parametrize("method,path,body,role", ROUTES)
def test_no_key_is_401_and_audited(gateway, firestore_client, team_a, method, path, body, role):
    fmt = {"team": "team-a", "user": team_a["member"].user_id, "key": team_a["member"].key_id}

    response = call(gateway, method, path, body=body, **fmt)

    assert_error(response, 401)
    records = audit_records(firestore_client, path.format(**fmt), 401)
    assert records and records[0]["reason"].startswith("missing key")
    assert records[0]["method"] == method and records[0]["client_ip"]


@pytest.mark.parametrize(
    "bad_key", ["short", "has spaces in it and more", "x" * 500, "apk_" + "é" * 30, "apk_;DROP TABLE"]
)
@pytest.mark.parametrize("method,path,body,role", ROUTES)
def test_malformed_key_is_401(gateway, team_a, method, path, body, role, bad_key):
    fmt = {"team": "team-a", "user": team_a["member"].user_id, "key": team_a["member"].key_id}

    response = call(gateway, method, path, body=body, headers={"x-api-key": bad_key.encode("utf-8")}, **fmt)

    assert_error(response, 401)
    assert bad_key not in response.text


@pytest.mark.parametrize("method,path,body,role", ROUTES)
def test_unknown_and_revoked_keys_are_401_and_audited(
    gateway, firestore_client, team_a, make_caller, method, path, body, role
):
    victim = make_caller("team-a", "admin")
    revoke = call(gateway, "DELETE", "/v1/keys/{key}", team_a["admin"], key=victim.key_id)
    assert revoke.status_code == 200 and revoke.json()["revoked"] is True
    fmt = {"team": "team-a", "user": team_a["member"].user_id, "key": team_a["member"].key_id}

    revoked = call(gateway, method, path, victim, body=body, **fmt)
    unknown = call(gateway, method, path, body=body, headers={"x-api-key": "apk_" + "A" * 43}, **fmt)

    assert_error(revoked, 401)
    assert_error(unknown, 401)
    reasons = {r["reason"] for r in audit_records(firestore_client, path.format(**fmt), 401)}
    assert any(r.startswith("revoked key") for r in reasons), reasons
    assert any(r.startswith("unknown key") for r in reasons), reasons


@pytest.mark.parametrize("method,path,body,role", [r for r in ROUTES if r[3] != "member"])
def test_member_on_admin_route_is_403_and_audited(gateway, firestore_client, team_a, method, path, body, role):
    fmt = {"team": "team-a", "user": team_a["member"].user_id, "key": team_a["admin"].key_id}

    response = call(gateway, method, path, team_a["member"], body=body, **fmt)

    assert_error(response, 403)
    records = audit_records(firestore_client, path.format(**fmt), 403)
    assert records and records[0]["key_id"] == team_a["member"].key_id and records[0]["team"] == "team-a"


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/v1/teams/{team}", None),
        ("GET", "/v1/teams/{team}/users", None),
        ("POST", "/v1/teams/{team}/users", {"email": "intruder@x.example"}),
        ("POST", "/v1/keys", {"user_id": "{user}"}),
        ("DELETE", "/v1/keys/{key}", None),
        ("GET", "/v1/keys?team={team}", None),
    ],
)
def test_other_teams_resources_are_404_like_missing_ones(
    gateway, firestore_client, team_a, make_caller, method, path, body
):
    other = make_caller("team-b", "admin")
    theirs = {"team": "team-b", "user": other.user_id, "key": other.key_id}
    missing = {"team": "team-zz", "user": "usr_missing", "key": "key_missing"}

    cross = call(gateway, method, path, team_a["admin"], body=body, **theirs)
    absent = call(gateway, method, path, team_a["admin"], body=body, **missing)

    assert_error(cross, 404)
    assert_error(absent, 404)
    assert cross.json() == absent.json()
    assert audit_records(firestore_client, path.split("?")[0].format(**theirs), 404)
    # nothing changed on the other team's side
    assert call(gateway, "GET", "/v1/me", other).status_code == 200


def test_key_lifecycle(gateway, firestore_client, make_caller):
    owner = make_caller("platform", "owner")

    team = call(gateway, "POST", "/v1/teams", owner, body={"team_id": "acme", "name": "Acme"})
    admin = call(gateway, "POST", "/v1/teams/acme/users", owner, body={"email": "boss@acme.example", "role": "admin"})
    created = call(gateway, "POST", "/v1/keys", owner, body={"user_id": admin.json()["user_id"]})
    key = created.json()["key"]
    me = gateway.get("/v1/me", headers={"x-api-key": key})
    listed = gateway.get("/v1/keys", headers={"x-api-key": key})

    assert team.status_code == 201 and admin.status_code == 201 and created.status_code == 201
    assert me.json() == {
        "key_id": created.json()["key_id"],
        "user_id": admin.json()["user_id"],
        "team": "acme",
        "role": "admin",
    }
    [entry] = listed.json()["keys"]
    assert entry["prefix"] == key[:8] + "…" and entry["created_at"] and "key" not in entry
    assert key not in listed.text

    revoked = gateway.delete(f"/v1/keys/{entry['key_id']}", headers={"x-api-key": key})
    after = gateway.get("/v1/me", headers={"x-api-key": key})

    assert revoked.status_code == 200
    assert_error(after, 401)


def test_a_revoked_key_stops_at_the_revoking_instance_at_once_and_elsewhere_within_the_cache_bound(
    stack, gateway, make_caller
):
    """Each function instance remembers key records for APERTURE_KEY_CACHE_SECONDS
    (docs/data-model.md, "Keys"): the admin instance that revoked refuses the key at once,
    the images instance, which remembers it as good, within that bound."""
    bound = float(stack.extra_env["APERTURE_KEY_CACHE_SECONDS"])
    admin = make_caller("team-a", "admin")
    victim = make_caller("team-a", "member")
    assert gateway.get("/v1/me", headers=victim.headers).status_code == 200  # remembered by admin
    assert gateway.get("/v1/images", headers=victim.headers).status_code == 200  # and by images

    revoke = call(gateway, "DELETE", "/v1/keys/{key}", admin, key=victim.key_id)
    revoked_at = time.monotonic()
    assert revoke.status_code == 200 and revoke.json()["revoked"] is True

    assert_error(gateway.get("/v1/me", headers=victim.headers), 401)
    while (elsewhere := gateway.get("/v1/images", headers=victim.headers)).status_code == 200:
        assert time.monotonic() - revoked_at < bound + 2.0, "revocation not seen by another instance in time"
        time.sleep(0.05)
    assert_error(elsewhere, 401)


def test_last_used_is_recorded(gateway, identity, make_caller):
    caller = make_caller("team-a", "member")

    assert gateway.get("/v1/me", headers=caller.headers).status_code == 200

    deadline = time.monotonic() + 10
    while identity.key_by_id(caller.key_id).last_used_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert identity.key_by_id(caller.key_id).last_used_at is not None


def test_allowed_requests_are_audited_without_the_key(gateway, firestore_client, make_caller):
    caller = make_caller("team-a", "member")

    gateway.get("/v1/me", headers={**caller.headers, "X-Forwarded-For": "6.6.6.6"})

    [record] = audit_records(firestore_client, "/v1/me", 200, key_id=caller.key_id)
    assert record["outcome"] == "allowed" and record["key_id"] == caller.key_id
    assert record["team"] == "team-a" and record["client_ip"] == "127.0.0.1"  # not the spoofed address
    assert caller.key not in repr(record)


def test_functions_check_the_key_even_when_called_directly(stack, make_caller):
    response = requests.get(stack.function_url("admin") + "/v1/me", timeout=10)

    assert_error(response, 401)


def test_duplicate_team_is_409(gateway, make_caller):
    owner = make_caller("platform", "owner")
    call(gateway, "POST", "/v1/teams", owner, body={"team_id": "dupe"})

    again = call(gateway, "POST", "/v1/teams", owner, body={"team_id": "dupe"})

    assert_error(again, 409)


@pytest.mark.parametrize(
    "body,status",
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"team_id": "UPPER"}', 400),
        (b'{"team_id": "a"}', 400),
        (b'{"team_id": "ok-team", "extra": 1}', 400),
        (b'{"team_id": "../etc"}', 400),
        (b'{"team_id": "ok-team", "gps_enabled": "yes"}', 400),
        (b'{"team_id": "ok-team", "name": "' + b"x" * 70000 + b'"}', 413),
    ],
)
def test_hostile_admin_bodies_are_4xx_and_create_nothing(gateway, identity, make_caller, body, status):
    owner = make_caller("platform", "owner")

    response = gateway.post("/v1/teams", data=body, headers={**owner.headers, "Content-Type": "application/json"})

    assert_error(response, status)
    assert [t.team_id for t in identity.list_teams()] == ["platform"]


def test_wrong_content_type_is_415(gateway, make_caller):
    owner = make_caller("platform", "owner")

    response = gateway.post(
        "/v1/teams", data="team_id=x", headers={**owner.headers, "Content-Type": "application/x-www-form-urlencoded"}
    )

    assert_error(response, 415)


def test_keys_never_appear_in_firestore_logs_or_errors(stack, gateway, firestore_client, make_caller):
    owner = make_caller("platform", "owner")
    created = call(gateway, "POST", "/v1/keys", owner, body={"user_id": owner.user_id}).json()
    new_key = created["key"]
    gateway.get("/v1/me", headers={"x-api-key": new_key})
    gateway.delete(f"/v1/keys/{created['key_id']}", headers=owner.headers)
    error = gateway.get("/v1/me", headers={"x-api-key": new_key})
    time.sleep(0.5)  # let background audit writes land

    secrets = [owner.key, new_key]
    stored = [repr(d.to_dict()) for c in firestore_client.collections() for d in c.stream()]
    logs = [p.read_text(errors="replace") for p in stack.log_dir.glob("*.log")]

    assert error.status_code == 401
    for secret in secrets:
        assert secret not in error.text
        assert not any(secret in doc for doc in stored)
        assert not any(secret in log for log in logs)


def test_admin_cannot_mint_or_revoke_an_owners_key(gateway, make_caller):
    owner = make_caller("team-a", "owner")
    admin = make_caller("team-a", "admin")

    minted = call(gateway, "POST", "/v1/keys", admin, body={"user_id": owner.user_id})
    revoked = call(gateway, "DELETE", "/v1/keys/{key}", admin, key=owner.key_id)

    assert_error(minted, 403)
    assert_error(revoked, 403)
    assert call(gateway, "GET", "/v1/me", owner).status_code == 200
