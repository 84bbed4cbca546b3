"""LinkService: upload links and their signed direct-upload URLs (spec S6); revocation of a link,
and of the key that made it."""

from __future__ import annotations

import datetime as dt

import pytest

from aperture.domain.errors import ApiError
from aperture.domain.records import Principal
from aperture.services.access import Access, RevocationForgets
from aperture.services.provisioning import bootstrap
from aperture.services.upload_links import (
    DIRECT_CONTENT_TYPE,
    KEY_REVOKED,
    REVOKED,
    LinkService,
    direct_headers,
    incoming_name,
)
from aperture.storage.upload_links import token_hash
from tests.unit.services.helpers import OTHER_TEAM, TEAM, UPLOADS

MAX_FILE_BYTES = 2_000_000


@pytest.fixture
def access(identity, audit) -> Access:
    return Access(identity, audit)


@pytest.fixture
def creator(identity, issuer):
    """The member key that makes the links."""
    _, _, key, _ = bootstrap(identity, issuer, team_id=TEAM, email="maker@example.com", role="member")
    return key


@pytest.fixture
def by(creator) -> dict:
    return {"key_id": creator.key_id, "user_id": creator.user_id}


@pytest.fixture
def service(links, signer, access) -> LinkService:
    return LinkService(links, signer, UPLOADS, access, max_file_bytes=MAX_FILE_BYTES)


@pytest.fixture
def new_link(service, by):
    def make(max_files: int = 3, seconds: int = 3600, signed_urls: int = 0, created_by: dict | None = None):
        return service.create(
            TEAM,
            max_files=max_files,
            lifetime=dt.timedelta(seconds=seconds),
            signed_urls=signed_urls,
            created_by=by if created_by is None else created_by,
        )

    return make


def member_of(team: str) -> Principal:
    return Principal("key_x", "usr_x", team, "member")


def status_of(call, *args) -> tuple[int, str]:
    with pytest.raises(ApiError) as error:
        call(*args)
    return error.value.status, error.value.message


def test_a_new_link_is_the_teams_and_expires_after_its_lifetime(service, new_link, by):
    before = dt.datetime.now(dt.timezone.utc)

    made = new_link(max_files=5, seconds=600)

    link = made.link
    assert (link.team, link.max_files, link.created_by) == (TEAM, 5, by)
    assert before + dt.timedelta(seconds=600) <= link.expires_at <= before + dt.timedelta(seconds=601)
    assert made.token.startswith("upl_")


def test_only_the_hash_of_the_token_names_the_link(service, links, new_link):
    made = new_link()

    link, digest = links.find(made.token)

    assert digest == token_hash(made.token) != made.token
    assert link.link_id == digest[:16]


def test_a_link_without_signed_urls_has_no_direct_uploads(service, signer, new_link):
    assert new_link().direct_uploads == []
    assert signer.signed == []


def test_each_direct_upload_is_a_signed_put_to_its_own_incoming_name(service, signer, new_link):
    made = new_link(max_files=3, signed_urls=2)

    names = [incoming_name(TEAM, made.link.link_id, n) for n in range(2)]
    assert [(b, n, e, t) for b, n, e, t in signer.signed] == [
        (UPLOADS, name, made.link.expires_at, DIRECT_CONTENT_TYPE) for name in names
    ]
    assert [d["method"] for d in made.direct_uploads] == ["PUT", "PUT"]
    assert [d["headers"] for d in made.direct_uploads] == [direct_headers(MAX_FILE_BYTES)] * 2
    assert len({d["url"] for d in made.direct_uploads}) == 2


def test_incoming_names_are_under_the_team_and_link():
    assert incoming_name("team-a", "0123456789abcdef", 7) == "incoming/team-a/0123456789abcdef/7"


def test_opening_a_link_gives_the_link(service, new_link):
    made = new_link()

    link, _ = service.open(made.token)

    assert link == made.link


def test_an_unknown_token_is_a_404(service, new_link):
    new_link()

    with pytest.raises(ApiError) as error:
        service.open("upl_nobody-issued-this-token")

    assert error.value.status == 404


def test_an_expired_link_is_a_410(service, new_link):
    made = new_link(seconds=-1)

    with pytest.raises(ApiError) as error:
        service.open(made.token)

    assert error.value.status == 410
    assert "expired" in error.value.message


def test_a_link_gives_out_its_slots_up_to_max_files(service, new_link):
    _, slots = service.open(new_link(max_files=2).token)

    taken = [slots.claim(), slots.claim(), slots.claim()]

    assert taken == ["0", "1", None]


def test_a_released_slot_can_be_taken_again(service, links, new_link):
    made = new_link(max_files=2)
    _, slots = service.open(made.token)
    slots.claim()
    last = slots.claim()

    slots.release(last)

    assert slots.claim() == last
    assert slots.claim() is None
    assert links.taken(token_hash(made.token)) == {"0", "1"}


def test_every_opening_of_a_link_shares_its_slots(service, new_link):
    made = new_link(max_files=1)
    _, mine = service.open(made.token)
    _, theirs = service.open(made.token)

    assert (mine.claim(), theirs.claim()) == ("0", None)


# -- signed PUT URLs: size-limited and create-only ----------------------------------


def test_a_signed_put_signs_the_size_range_and_the_create_only_precondition(service, signer, new_link):
    made = new_link(signed_urls=1)

    assert signer.signed_headers == [
        {"x-goog-content-length-range": f"0,{MAX_FILE_BYTES}", "x-goog-if-generation-match": "0"}
    ]
    [direct] = made.direct_uploads
    assert direct["headers"] == {
        "Content-Type": DIRECT_CONTENT_TYPE,
        "x-goog-content-length-range": f"0,{MAX_FILE_BYTES}",
        "x-goog-if-generation-match": "0",
    }


# -- revoking a link ----------------------------------------------------------------


def test_a_revoked_link_answers_410_revoked_and_gives_no_slot(service, new_link, links):
    made = new_link()

    revoked = service.revoke(member_of(TEAM), made.link.link_id)

    assert revoked.revoked and revoked.revoked_at is not None
    assert status_of(service.open, made.token) == (410, REVOKED)
    assert links.taken(token_hash(made.token)) == set()


def test_revoking_twice_keeps_the_first_revocation(service, new_link):
    made = new_link()
    first = service.revoke(member_of(TEAM), made.link.link_id)

    again = service.revoke(member_of(TEAM), made.link.link_id)

    assert again.revoked_at == first.revoked_at


def test_another_teams_link_is_not_found_and_stays_usable(service, new_link):
    made = new_link()

    assert status_of(service.revoke, member_of(OTHER_TEAM), made.link.link_id)[0] == 404
    assert service.open(made.token)[0].link_id == made.link.link_id


@pytest.mark.parametrize("link_id", ["0123456789abcdef", "not-a-link-id", "../x", ""])
def test_a_link_id_nobody_has_is_not_found(service, new_link, links, link_id):
    new_link()
    links.find_by_id = lambda link_id: pytest.fail("only a well-formed id is looked up") if len(link_id) != 16 else None

    assert status_of(service.revoke, member_of(TEAM), link_id)[0] == 404


def test_a_revoked_link_is_still_410_after_it_expires(service, new_link):
    made = new_link(seconds=-1)
    service.revoke(member_of(TEAM), made.link.link_id)

    assert status_of(service.open, made.token) == (410, REVOKED)


# -- a link ends with the key that made it ------------------------------------------


def test_a_link_stops_working_when_the_key_that_made_it_is_revoked(service, new_link, identity, access, creator):
    made = new_link()
    service.open(made.token)

    RevocationForgets(identity, access).revoke_key(creator)

    assert status_of(service.open, made.token) == (410, KEY_REVOKED)


def test_a_link_whose_key_is_unknown_or_unnamed_does_not_work(service, new_link):
    for created_by in ({"key_id": "key_nobody", "user_id": "usr_x"}, {"user_id": "usr_x"}):
        made = new_link(created_by=created_by)

        assert status_of(service.open, made.token) == (410, KEY_REVOKED)


def test_the_creating_key_is_checked_through_the_access_cache(links, signer, identity, audit, new_link, creator):
    now = [0.0]
    cached = Access(identity, audit, cache_seconds=5, clock=lambda: now[0])
    service = LinkService(links, signer, UPLOADS, cached, max_file_bytes=MAX_FILE_BYTES)
    made = new_link()
    service.open(made.token)
    reads = []
    by_id = identity.key_by_id
    identity.key_by_id = lambda key_id: reads.append(key_id) or by_id(key_id)

    service.open(made.token)
    identity.revoke_key(creator)  # revoked through another instance: this one still remembers it
    service.open(made.token)
    now[0] = 6.0  # past the cache bound

    assert reads == []
    assert status_of(service.open, made.token) == (410, KEY_REVOKED)
    assert reads == [creator.key_id]


def test_revoking_the_key_here_is_seen_at_once_despite_the_cache(links, signer, identity, audit, new_link, creator):
    cached = Access(identity, audit, cache_seconds=60)
    service = LinkService(links, signer, UPLOADS, cached, max_file_bytes=MAX_FILE_BYTES)
    made = new_link()
    service.open(made.token)

    RevocationForgets(identity, cached).revoke_key(creator)

    assert status_of(service.open, made.token) == (410, KEY_REVOKED)
