"""Access: the one key check for /v1 (missing, malformed, unknown, revoked, good), its per-instance
key cache (TTL on a fake clock, bound, revocation), last-used and audit."""

from __future__ import annotations

import dataclasses
import time

import pytest

from aperture.domain import keys
from aperture.domain.errors import ApiError
from aperture.domain.records import AccessAttempt, Principal
from aperture.services.access import (
    INVALID_KEY,
    MALFORMED,
    MISSING,
    MISSING_KEY,
    REVOKED,
    UNKNOWN,
    Access,
    RevocationForgets,
    principal_of,
    refusal_message,
)
from aperture.services.provisioning import Provisioning, bootstrap
from tests.unit.fakes import raising
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


def attempt_of(method: str) -> AccessAttempt:
    return AccessAttempt(method, "/v1/images", 201, "allowed", None, "key_1", TEAM, "usr_1", "10.0.0.1", "req-1")


@pytest.mark.parametrize("method,durably", [("GET", False), ("HEAD", False), ("POST", True), ("DELETE", True)])
def test_writes_are_audited_durably_and_reads_in_the_background(access, audit, method, durably):
    access.audit(attempt_of(method))

    assert audit.durable == [durably]


def test_a_write_whose_audit_record_cannot_be_stored_is_a_503_with_retry_after(access, audit):
    audit.record = raising(RuntimeError("firestore down"))

    with pytest.raises(ApiError) as error:
        access.audit(attempt_of("POST"))

    assert error.value.status == 503
    assert int(error.value.headers["Retry-After"]) > 0


def test_a_read_whose_audit_record_cannot_be_stored_goes_on(access, audit, capsys):
    audit.record = raising(RuntimeError("firestore down"))

    access.audit(attempt_of("GET"))

    assert "audit record of a read not stored" in capsys.readouterr().out


# -- key_live: the key that made an upload link ----------------------------------------


def test_a_good_key_is_live_and_a_revoked_unknown_or_absent_one_is_not(access, identity, member):
    key, _ = member
    assert access.key_live(key.key_id)

    identity.revoke_key(key)

    assert not access.key_live(key.key_id)
    assert not access.key_live("key_nobody")
    assert not access.key_live(None)


# -- the per-instance key cache -------------------------------------------------------

TTL = 5


class Clock:
    """A monotonic clock the test moves by hand: TTLs without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reads(identity) -> list[str]:
    """The key hashes `identity.key_by_hash` was asked for (one per Firestore read)."""
    asked: list[str] = []
    real = identity.key_by_hash

    def counting(digest):
        asked.append(digest)
        return real(digest)

    identity.key_by_hash = counting
    return asked


@pytest.fixture
def cached(identity, audit, clock) -> Access:
    return Access(identity, audit, touch_seconds=60, cache_seconds=TTL, cache_entries=100, clock=clock)


def test_a_good_key_is_read_once_and_then_remembered(cached, member, reads, clock):
    key, secret = member

    answers = [cached.check(secret) for _ in range(5)]
    clock.advance(TTL - 0.01)
    answers.append(cached.check(secret))

    assert answers == [(key, None)] * 6
    assert reads == [key.key_hash]


def test_a_remembered_key_is_read_again_once_its_ttl_is_over(cached, member, reads, clock):
    key, secret = member
    cached.check(secret)

    clock.advance(TTL)
    cached.check(secret)

    assert reads == [key.key_hash, key.key_hash]


def test_a_key_revoked_elsewhere_is_refused_here_within_the_ttl(cached, identity, member, clock):
    """Another instance revokes (a straight Firestore write): this one answers from memory until
    the entry it read expires, never later."""
    key, secret = member
    cached.check(secret)
    identity.revoke_key(key)

    clock.advance(TTL - 0.01)
    within = cached.check(secret)
    clock.advance(0.01)
    after = cached.check(secret)

    assert within == (key, None)
    assert after[1] == REVOKED


def test_a_key_revoked_through_this_instance_is_refused_at_once(cached, identity, issuer, member):
    key, secret = member
    _, _, admin, _ = bootstrap(identity, issuer, team_id=TEAM, email="admin@example.com", role="admin")
    provisioning = Provisioning(RevocationForgets(identity, cached), issuer)
    assert cached.check(secret) == (key, None)

    provisioning.revoke_key(principal_of(admin), key.key_id)

    assert cached.check(secret)[1] == REVOKED


def test_forget_drops_a_remembered_key(cached, member, reads):
    key, secret = member
    cached.check(secret)

    cached.forget(key.key_hash)
    cached.check(secret)

    assert reads == [key.key_hash, key.key_hash]


def test_a_read_that_raced_a_revocation_here_is_not_remembered(cached, identity, member, reads):
    """The read saw the key good, the revocation landed and forgot it meanwhile: caching that
    read would keep the revoked key alive for a whole TTL on the instance that revoked it."""
    key, secret = member
    real = identity.key_by_hash

    def read_then_revoked_meanwhile(digest):
        found = real(digest)
        identity.revoke_key(key)
        cached.forget(digest)
        return found

    identity.key_by_hash = read_then_revoked_meanwhile
    assert cached.check(secret) == (key, None)  # it was good when read
    identity.key_by_hash = real

    assert cached.check(secret)[1] == REVOKED


def test_a_revoked_key_is_remembered_as_revoked(cached, identity, member, reads):
    """Revocation is final, so a revoked record is as safe to keep as a good one."""
    key, secret = member
    identity.revoke_key(key)

    assert [cached.check(secret)[1] for _ in range(3)] == [REVOKED] * 3
    assert reads == [key.key_hash]


def test_unknown_keys_are_not_remembered(cached, identity, issuer, reads):
    """A key is created on one instance and used on another at once: a negative entry would
    refuse it for a TTL; and someone trying random keys never repeats one."""
    presented = keys.generate()

    assert cached.check(presented) == (None, UNKNOWN)
    assert cached.check(presented) == (None, UNKNOWN)
    assert reads == [keys.key_hash(presented)] * 2


def test_a_key_created_after_an_unknown_lookup_works_at_once(cached, identity, member):
    key, secret = member
    not_yet = dataclasses.replace(key, key_id="key_new", key_hash="")
    presented = keys.generate()
    assert cached.check(presented) == (None, UNKNOWN)

    identity.add_key(dataclasses.replace(not_yet, key_hash=keys.key_hash(presented)))

    assert cached.check(presented)[1] is None


def test_the_cache_is_bounded(identity, audit, issuer, clock, reads):
    access = Access(identity, audit, cache_seconds=TTL, cache_entries=2, clock=clock)
    made = [bootstrap(identity, issuer, team_id=TEAM, email=f"u{i}@example.com")[2:] for i in range(3)]

    for _, secret in made:
        access.check(secret)
    access.check(made[0][1])  # the least recently used went when the third came in

    assert reads == [k.key_hash for k, _ in made] + [made[0][0].key_hash]


def test_no_cache_reads_every_time(access, member, reads):
    key, secret = member

    for _ in range(3):
        access.check(secret)

    assert reads == [key.key_hash] * 3


def test_a_remembered_record_does_not_rewrite_last_used_on_every_request(identity, audit, issuer, clock, member):
    """The remembered record keeps the `last_used_at` it was read with (none here): one write per
    key and `touch_seconds` all the same, not one per request."""
    key, secret = member
    access = Access(identity, audit, touch_seconds=60, cache_seconds=TTL, clock=clock)

    assert touches_after(access, identity, issuer, *[secret] * 5) == [key.key_id]
