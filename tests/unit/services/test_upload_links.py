"""LinkService: upload links and their signed direct-upload URLs (spec S6)."""

from __future__ import annotations

import datetime as dt

import pytest

from aperture.domain.errors import ApiError
from aperture.services.upload_links import DIRECT_CONTENT_TYPE, LinkService, incoming_name
from aperture.storage.upload_links import token_hash
from tests.unit.services.helpers import BY, TEAM, UPLOADS


@pytest.fixture
def service(links, signer) -> LinkService:
    return LinkService(links, signer, UPLOADS)


def new_link(service, max_files: int = 3, seconds: int = 3600, signed_urls: int = 0):
    return service.create(
        TEAM, max_files=max_files, lifetime=dt.timedelta(seconds=seconds), signed_urls=signed_urls, created_by=BY
    )


def test_a_new_link_is_the_teams_and_expires_after_its_lifetime(service):
    before = dt.datetime.now(dt.timezone.utc)

    made = new_link(service, max_files=5, seconds=600)

    link = made.link
    assert (link.team, link.max_files, link.created_by) == (TEAM, 5, BY)
    assert before + dt.timedelta(seconds=600) <= link.expires_at <= before + dt.timedelta(seconds=601)
    assert made.token.startswith("upl_")


def test_only_the_hash_of_the_token_names_the_link(service, links):
    made = new_link(service)

    link, digest = links.find(made.token)

    assert digest == token_hash(made.token) != made.token
    assert link.link_id == digest[:16]


def test_a_link_without_signed_urls_has_no_direct_uploads(service, signer):
    assert new_link(service).direct_uploads == []
    assert signer.signed == []


def test_each_direct_upload_is_a_signed_put_to_its_own_incoming_name(service, signer):
    made = new_link(service, max_files=3, signed_urls=2)

    names = [incoming_name(TEAM, made.link.link_id, n) for n in range(2)]
    assert [(b, n, e, t) for b, n, e, t in signer.signed] == [
        (UPLOADS, name, made.link.expires_at, DIRECT_CONTENT_TYPE) for name in names
    ]
    assert [d["method"] for d in made.direct_uploads] == ["PUT", "PUT"]
    assert [d["headers"] for d in made.direct_uploads] == [{"Content-Type": DIRECT_CONTENT_TYPE}] * 2
    assert len({d["url"] for d in made.direct_uploads}) == 2


def test_incoming_names_are_under_the_team_and_link():
    assert incoming_name("team-a", "0123456789abcdef", 7) == "incoming/team-a/0123456789abcdef/7"


def test_opening_a_link_gives_the_link(service):
    made = new_link(service)

    link, _ = service.open(made.token)

    assert link == made.link


def test_an_unknown_token_is_a_404(service):
    new_link(service)

    with pytest.raises(ApiError) as error:
        service.open("upl_nobody-issued-this-token")

    assert error.value.status == 404


def test_an_expired_link_is_a_410(service):
    made = new_link(service, seconds=-1)

    with pytest.raises(ApiError) as error:
        service.open(made.token)

    assert error.value.status == 410
    assert "expired" in error.value.message


def test_a_link_gives_out_its_slots_up_to_max_files(service):
    _, slots = service.open(new_link(service, max_files=2).token)

    taken = [slots.claim(), slots.claim(), slots.claim()]

    assert taken == ["0", "1", None]


def test_a_released_slot_can_be_taken_again(service, links):
    made = new_link(service, max_files=2)
    _, slots = service.open(made.token)
    slots.claim()
    last = slots.claim()

    slots.release(last)

    assert slots.claim() == last
    assert slots.claim() is None
    assert links.taken(token_hash(made.token)) == {"0", "1"}


def test_every_opening_of_a_link_shares_its_slots(service):
    made = new_link(service, max_files=1)
    _, mine = service.open(made.token)
    _, theirs = service.open(made.token)

    assert (mine.claim(), theirs.claim()) == ("0", None)
