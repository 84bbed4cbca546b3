"""Provisioning: keys, bootstrap, and the admin rules of who may create and revoke what (spec S5)."""

from __future__ import annotations

import pytest

from aperture.domain import keys
from aperture.domain.errors import AlreadyExists, ApiError
from aperture.domain.records import Principal
from aperture.services.provisioning import Provisioning, bootstrap, ensure_team, issue_key
from tests.unit.services.helpers import OTHER_TEAM, TEAM


@pytest.fixture
def provisioning(identity, issuer) -> Provisioning:
    return Provisioning(identity, issuer)


@pytest.fixture
def teams(identity):
    identity.create_team(TEAM, "Team A")
    identity.create_team(OTHER_TEAM, "Team B")


def caller(identity, role: str, team: str = TEAM) -> Principal:
    user = identity.create_user(team, f"{role}@{team}.example", role)
    return Principal(f"key_{role}", user.user_id, team, role)


def refused(call, *args, **kwargs) -> int:
    with pytest.raises(ApiError) as error:
        call(*args, **kwargs)
    return error.value.status


# -- keys and bootstrap -------------------------------------------------------------------------


def test_an_issued_key_is_stored_by_its_hash_only(identity, issuer, teams):
    user = identity.create_user(TEAM, "a@example.com", "admin")

    record, secret = issue_key(identity, issuer, user, "laptop")

    assert identity.key_by_hash(keys.key_hash(secret)) == record
    assert secret not in repr(record)
    assert (record.user_id, record.team, record.role, record.issuer) == (user.user_id, TEAM, "admin", "fake")
    assert record.prefix == keys.display_prefix(secret)
    assert record.external_name == issuer.issued[0][1].external_name
    assert issuer.issued[0][0] == "laptop"


def test_bootstrap_makes_a_team_an_owner_and_the_owners_key(identity, issuer):
    team, user, key, secret = bootstrap(identity, issuer, team_id=TEAM, email="root@example.com")

    assert identity.get_team(TEAM) == team
    assert (user.team, user.role, user.email) == (TEAM, "owner", "root@example.com")
    assert identity.key_by_hash(keys.key_hash(secret)) == key
    assert key.role == "owner"


def test_bootstrap_uses_an_existing_team(identity, issuer):
    existing = identity.create_team(TEAM, "Team A", gps_enabled=True)

    team, *_ = bootstrap(identity, issuer, team_id=TEAM, email="second@example.com", role="admin")

    assert team == existing
    assert [t.team_id for t in identity.list_teams()] == [TEAM]


def test_ensure_team_reraises_when_the_team_vanished_between_the_calls(identity):
    identity.create_team(TEAM, "Team A")
    identity.get_team = lambda team_id: None

    with pytest.raises(AlreadyExists):
        ensure_team(identity, TEAM)


# -- teams --------------------------------------------------------------------------------------


def test_an_owner_creates_a_team(provisioning, identity):
    owner = caller(identity, "owner", team="platform")

    team = provisioning.create_team(owner, "new-team", "New team", gps_enabled=True)

    assert (team.team_id, team.name, team.gps_enabled) == ("new-team", "New team", True)
    assert identity.get_team("new-team") == team


@pytest.mark.parametrize("role", ["member", "admin"])
def test_only_an_owner_creates_teams(provisioning, identity, teams, role):
    assert refused(provisioning.create_team, caller(identity, role), "new-team", "New", False) == 403
    assert identity.get_team("new-team") is None


def test_a_duplicate_team_is_a_conflict(provisioning, identity, teams):
    assert refused(provisioning.create_team, caller(identity, "owner"), TEAM, "Again", False) == 409


@pytest.mark.parametrize(
    "team_id", ["ab", "Upper-case", "9starts-with-digit", "ends-with-", "has_underscore", "x" * 41]
)
def test_a_malformed_team_id_is_refused(provisioning, identity, team_id):
    assert refused(provisioning.create_team, caller(identity, "owner", "platform"), team_id, "T", False) == 400


def test_only_an_owner_lists_teams(provisioning, identity, teams):
    assert [t.team_id for t in provisioning.list_teams(caller(identity, "owner"))] == [TEAM, OTHER_TEAM]
    assert refused(provisioning.list_teams, caller(identity, "admin")) == 403


def test_a_member_reads_their_own_team(provisioning, identity, teams):
    assert provisioning.get_team(caller(identity, "member"), TEAM).team_id == TEAM


def test_another_teams_team_is_not_found(provisioning, identity, teams):
    assert refused(provisioning.get_team, caller(identity, "admin"), OTHER_TEAM) == 404


def test_an_owner_reads_any_team_and_a_missing_one_is_not_found(provisioning, identity, teams):
    owner = caller(identity, "owner")

    assert provisioning.get_team(owner, OTHER_TEAM).team_id == OTHER_TEAM
    assert refused(provisioning.get_team, owner, "no-such-team") == 404


# -- users --------------------------------------------------------------------------------------


def test_an_admin_creates_a_user_in_their_team(provisioning, identity, teams):
    user = provisioning.create_user(caller(identity, "admin"), TEAM, "new@example.com", "member")

    assert identity.get_user(user.user_id) == user
    assert (user.team, user.role) == (TEAM, "member")


def test_a_member_cannot_create_users(provisioning, identity, teams):
    assert refused(provisioning.create_user, caller(identity, "member"), TEAM, "x@example.com", "member") == 403


def test_an_admin_cannot_create_users_in_another_team(provisioning, identity, teams):
    assert refused(provisioning.create_user, caller(identity, "admin"), OTHER_TEAM, "x@example.com", "member") == 404


def test_an_admin_cannot_create_an_owner(provisioning, identity, teams):
    assert refused(provisioning.create_user, caller(identity, "admin"), TEAM, "x@example.com", "owner") == 403


def test_an_owner_creates_an_owner_in_any_team(provisioning, identity, teams):
    user = provisioning.create_user(caller(identity, "owner"), OTHER_TEAM, "boss@example.com", "owner")

    assert (user.team, user.role) == (OTHER_TEAM, "owner")


@pytest.mark.parametrize("email,role", [("not-an-email", "member"), ("x@example.com", "superuser")])
def test_a_bad_email_or_role_is_refused(provisioning, identity, teams, email, role):
    assert refused(provisioning.create_user, caller(identity, "admin"), TEAM, email, role) == 400


def test_a_user_for_a_missing_team_is_not_found(provisioning, identity):
    assert (
        refused(
            provisioning.create_user, caller(identity, "owner", "platform"), "ghost-team", "x@example.com", "member"
        )
        == 404
    )


def test_users_are_listed_by_admins_of_their_team_only(provisioning, identity, teams):
    admin = caller(identity, "admin")
    caller(identity, "member", team=OTHER_TEAM)

    assert [u.team for u in provisioning.list_users(admin, TEAM)] == [TEAM]
    assert refused(provisioning.list_users, admin, OTHER_TEAM) == 404
    assert refused(provisioning.list_users, caller(identity, "member"), TEAM) == 403


# -- keys ---------------------------------------------------------------------------------------


def test_an_admin_creates_a_key_for_a_member_of_their_team(provisioning, identity, teams):
    member = identity.create_user(TEAM, "m@example.com", "member")

    record, secret = provisioning.create_key(caller(identity, "admin"), member.user_id, "ci")

    assert identity.key_by_hash(keys.key_hash(secret)) == record
    assert (record.user_id, record.role) == (member.user_id, "member")


def test_a_key_made_through_the_api_records_the_key_and_user_that_made_it(provisioning, identity, teams):
    member = identity.create_user(TEAM, "m@example.com", "member")
    admin = caller(identity, "admin")

    record, secret = provisioning.create_key(admin, member.user_id, None)

    assert record.created_by == {"key_id": admin.key_id, "user_id": admin.user_id}
    assert identity.key_by_hash(keys.key_hash(secret)).created_by == record.created_by
    assert [k.created_by for k in provisioning.list_keys(admin, TEAM)] == [record.created_by]


def test_a_bootstrapped_key_says_it_was_made_by_bootstrap(identity, issuer):
    _, _, key, _ = bootstrap(identity, issuer, team_id=TEAM, email="o@example.com")

    assert key.created_by == {"via": "bootstrap"}


def test_a_member_cannot_create_keys(provisioning, identity, teams):
    member = caller(identity, "member")

    assert refused(provisioning.create_key, member, member.user_id, None) == 403


def test_an_admin_cannot_mint_an_owners_key(provisioning, identity, issuer, teams):
    owner = identity.create_user(TEAM, "boss@example.com", "owner")

    assert refused(provisioning.create_key, caller(identity, "admin"), owner.user_id, None) == 403
    assert issuer.issued == []


def test_an_owner_mints_an_owners_key(provisioning, identity, teams):
    owner = identity.create_user(TEAM, "boss@example.com", "owner")

    record, _ = provisioning.create_key(caller(identity, "owner"), owner.user_id, None)

    assert record.role == "owner"


def test_a_key_for_another_teams_user_is_not_found(provisioning, identity, issuer, teams):
    stranger = identity.create_user(OTHER_TEAM, "s@example.com", "member")

    assert refused(provisioning.create_key, caller(identity, "admin"), stranger.user_id, None) == 404
    assert issuer.issued == []


def test_a_key_for_a_missing_user_is_not_found(provisioning, identity, teams):
    assert refused(provisioning.create_key, caller(identity, "admin"), "usr_missing", None) == 404


def test_a_key_without_a_name_is_named_after_its_user(provisioning, identity, issuer, teams):
    member = identity.create_user(TEAM, "m@example.com", "member")

    provisioning.create_key(caller(identity, "admin"), member.user_id, None)

    assert issuer.issued[0][0] == f"{TEAM}/m@example.com"


def test_keys_are_listed_by_admins_for_their_team_only(provisioning, identity, issuer, teams):
    admin = caller(identity, "admin")
    issue_key(identity, issuer, identity.create_user(TEAM, "a@example.com", "member"), "a")
    issue_key(identity, issuer, identity.create_user(OTHER_TEAM, "b@example.com", "member"), "b")

    assert [k.team for k in provisioning.list_keys(admin, TEAM)] == [TEAM]
    assert refused(provisioning.list_keys, admin, OTHER_TEAM) == 404
    assert refused(provisioning.list_keys, caller(identity, "member"), TEAM) == 403


# -- revocation ---------------------------------------------------------------------------------


def test_anyone_revokes_their_own_key(provisioning, identity, issuer, teams):
    user = identity.create_user(TEAM, "m@example.com", "member")
    key, _ = issue_key(identity, issuer, user, "mine")
    me = Principal(key.key_id, user.user_id, TEAM, "member")

    revoked = provisioning.revoke_key(me, key.key_id)

    assert revoked.revoked
    assert identity.key_by_id(key.key_id).revoked


def test_revoking_revokes_with_the_issuer_once(provisioning, identity, issuer, teams):
    key, _ = issue_key(identity, issuer, identity.create_user(TEAM, "m@example.com", "member"), "k")
    admin = caller(identity, "admin")

    provisioning.revoke_key(admin, key.key_id)
    provisioning.revoke_key(admin, key.key_id)

    assert issuer.revoked == [key.external_name]


def test_a_member_cannot_revoke_someone_elses_key(provisioning, identity, issuer, teams):
    key, _ = issue_key(identity, issuer, identity.create_user(TEAM, "m@example.com", "member"), "k")

    assert refused(provisioning.revoke_key, caller(identity, "member"), key.key_id) == 403
    assert not identity.key_by_id(key.key_id).revoked


def test_an_admin_cannot_revoke_an_owners_key(provisioning, identity, issuer, teams):
    key, _ = issue_key(identity, issuer, identity.create_user(TEAM, "boss@example.com", "owner"), "k")

    assert refused(provisioning.revoke_key, caller(identity, "admin"), key.key_id) == 403


def test_another_teams_key_is_not_found(provisioning, identity, issuer, teams):
    key, _ = issue_key(identity, issuer, identity.create_user(OTHER_TEAM, "b@example.com", "member"), "k")

    assert refused(provisioning.revoke_key, caller(identity, "admin"), key.key_id) == 404
    assert issuer.revoked == []


def test_a_missing_key_is_not_found(provisioning, identity, teams):
    assert refused(provisioning.revoke_key, caller(identity, "owner"), "key_missing") == 404
