"""Access: the one key check for /v1 (missing, malformed, unknown, revoked, good), last-used and audit."""

from __future__ import annotations

import time

import pytest

from aperture.domain import keys
from aperture.domain.records import AccessAttempt, Principal
from aperture.services.access import (
    INVALID_KEY,
    MALFORMED,
    MISSING,
    MISSING_KEY,
    REVOKED,
    UNKNOWN,
    Access,
    principal_of,
    refusal_message,
)
from aperture.services.provisioning import bootstrap
from tests.unit.services.helpers import TEAM


@pytest.fixture
def access(identity, audit) -> Access:
    return Access(identity, audit, touch_seconds=60)


@pytest.fixture
def member(identity, issuer):
    """A member's key record and the key string."""
    _, _, key, secret = bootstrap(identity, issuer, team_id=TEAM, email="member@example.com", role="member")
    return key, secret


def touched_soon(identity, key, timeout: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored = identity.key_by_hash(key.key_hash)
        if stored.last_used_at is not None:
            return stored.last_used_at
        time.sleep(0.01)
    return None


def logged_soon(capsys, message: str, timeout: float = 2.0) -> bool:
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += capsys.readouterr().out
        if message in seen:
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("presented", [None, ""])
def test_a_missing_key_is_refused_as_missing(access, presented):
    assert access.check(presented) == (None, MISSING)


@pytest.mark.parametrize(
    "presented", ["short", "apk_" + "x" * 200, "apk_has spaces in it here", "apk_\u00fcn\u00efcode-key-123456"]
)
def test_a_malformed_key_is_refused_without_a_lookup(access, identity, presented):
    identity.key_by_hash = lambda digest: pytest.fail("a malformed key must not be looked up")

    assert access.check(presented) == (None, MALFORMED)


def test_a_well_formed_key_nobody_issued_is_unknown(access, member):
    assert access.check(keys.generate()) == (None, UNKNOWN)


def test_a_revoked_key_is_refused_as_revoked(access, identity, member):
    key, secret = member
    identity.revoke_key(key)

    found, reason = access.check(secret)

    assert reason == REVOKED
    assert found.key_id == key.key_id and found.revoked


def test_a_good_key_is_accepted_with_its_record(access, member):
    key, secret = member

    assert access.check(secret) == (key, None)


def test_a_good_keys_principal_carries_its_team_user_and_role(member):
    key, _ = member

    assert principal_of(key) == Principal(key.key_id, key.user_id, TEAM, "member")


def test_authenticating_a_good_key_records_when_it_was_used(access, identity, member):
    key, secret = member

    found, reason = access.authenticate(secret)

    assert (found, reason) == (key, None)
    assert touched_soon(identity, key) is not None


def touches_after(access, identity, issuer, *presented: str) -> list[str]:
    """The key ids whose last-used time `authenticate` rewrote for `presented`.

    A fresh key is authenticated last and waited for: touches run one at a
    time in order, so once it is touched every earlier touch has happened."""
    touched: list[str] = []
    real_touch = identity.touch_key

    def record(key):
        touched.append(key.key_id)
        real_touch(key)

    identity.touch_key = record
    _, _, marker, marker_secret = bootstrap(identity, issuer, team_id=TEAM, email="marker@example.com")
    for secret in presented:
        access.authenticate(secret)
    access.authenticate(marker_secret)
    assert touched_soon(identity, marker) is not None
    return [key_id for key_id in touched if key_id != marker.key_id]


def test_a_key_used_moments_ago_is_not_rewritten(access, identity, issuer, member):
    key, secret = member
    identity.touch_key(key)

    assert touches_after(access, identity, issuer, secret) == []


def test_a_key_last_used_long_ago_is_rewritten(identity, audit, issuer, member):
    key, secret = member
    identity.touch_key(key)
    access = Access(identity, audit, touch_seconds=0)

    assert touches_after(access, identity, issuer, secret) == [key.key_id]


def test_a_refused_key_is_not_touched(access, identity, issuer, member):
    key, secret = member
    identity.revoke_key(key)

    assert touches_after(access, identity, issuer, secret) == []
    assert identity.key_by_hash(key.key_hash).last_used_at is None


def test_a_failing_last_used_write_is_logged_and_does_not_fail_the_request(access, identity, member, capsys):
    key, secret = member

    def broken(k):
        raise RuntimeError("firestore down")

    identity.touch_key = broken

    assert access.authenticate(secret) == (key, None)
    assert logged_soon(capsys, "last-used update failed")


@pytest.mark.parametrize(
    "reason,message", [(MISSING, MISSING_KEY), (MALFORMED, INVALID_KEY), (UNKNOWN, INVALID_KEY), (REVOKED, INVALID_KEY)]
)
def test_refused_callers_are_not_told_which_invalid_case_it_was(reason, message):
    assert refusal_message(reason) == message


def test_every_attempt_is_audited(access, audit):
    attempt = AccessAttempt("GET", "/v1/images", 401, "denied", UNKNOWN, None, None, None, "10.0.0.1", "req-1")

    access.audit(attempt)

    assert audit.attempts == [attempt]
