"""Direct uploads through an upload link's signed URL: validated, filed by content, always removed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import pytest

from aperture.domain.errors import Gone
from aperture.domain.records import ImageStatus, object_name
from aperture.services.incoming import file_incoming, is_incoming
from aperture.services.upload_links import incoming_name
from aperture.storage.upload_links import token_hash
from tests.unit.services.helpers import BY, LIMITS, OTHER_TEAM, TEAM, UPLOADS, png, upload_service


@pytest.fixture
def link(links):
    """A live link of TEAM with two files; (link, token digest)."""
    made, token = links.create(TEAM, 2, dt.timedelta(hours=1), {"key_id": "key_x"})
    return made, token_hash(token)


def direct(objects, link, data: bytes, n: int = 0, team: str = TEAM):
    return objects.put(UPLOADS, incoming_name(team, link[0].link_id, n), data)


def file(info, objects, links, uploads):
    return file_incoming(info, objects, links, uploads)


def test_a_direct_upload_is_filed_under_its_content_id(objects, images, links, uploads, link):
    data = png(seed=1)

    outcome = file(direct(objects, link, data, n=1), objects, links, uploads)

    image_id = hashlib.sha256(data).hexdigest()
    record = images.get(TEAM, image_id)
    assert outcome == f"created: {image_id}"
    assert (record.status, record.filename) == (ImageStatus.PENDING, "direct-upload-1")
    assert record.uploaded_by == {"upload_link": link[0].link_id, "direct": True}
    assert objects.read(objects.info(UPLOADS, object_name(TEAM, image_id, "png"))) == data


def test_a_direct_upload_is_removed_from_incoming_whatever_happens(objects, links, uploads, link):
    filed = direct(objects, link, png(seed=2), n=0)
    rejected = direct(objects, link, b"not an image", n=1)

    file(filed, objects, links, uploads)
    file(rejected, objects, links, uploads)

    assert not any(is_incoming(name) for name in objects.names(UPLOADS))


def test_a_direct_upload_takes_one_of_the_links_slots(objects, links, uploads, link):
    file(direct(objects, link, png(seed=3)), objects, links, uploads)

    assert links.taken(link[1]) == {"0"}


def test_a_direct_upload_of_an_image_already_filed_is_a_duplicate_and_takes_no_slot(
    objects, images, links, uploads, link
):
    data = png(seed=4)
    uploads.add(TEAM, "earlier.png", data, BY)

    outcome = file(direct(objects, link, data), objects, links, uploads)

    assert outcome == f"duplicate: {hashlib.sha256(data).hexdigest()}"
    assert links.taken(link[1]) == set()
    assert len(images.all()) == 1


def test_a_direct_upload_that_is_not_an_image_is_rejected_and_uses_up_a_slot(objects, images, links, uploads, link):
    outcome = file(direct(objects, link, b"<html>not an image</html>"), objects, links, uploads)

    assert outcome.startswith("rejected: ")
    assert images.all() == [] and objects.names(UPLOADS) == set()
    assert links.taken(link[1]) == {"0"}  # refused files count, so a link cannot buy unbounded validation


def test_a_direct_upload_beyond_the_links_files_is_rejected(objects, images, links, uploads, link):
    for n in range(2):
        file(direct(objects, link, png(seed=10 + n), n=n), objects, links, uploads)

    outcome = file(direct(objects, link, png(seed=12), n=2), objects, links, uploads)

    assert outcome == "rejected: this upload link has no files left"
    assert len(images.all()) == 2


def test_a_direct_upload_over_the_size_limit_is_rejected_without_being_read(objects, images, links, link):
    data = png(seed=5)
    uploads = upload_service(objects, images, limits=dataclasses.replace(LIMITS, max_file_bytes=len(data) - 1))
    objects.read = lambda info: pytest.fail("an oversized direct upload must not be downloaded")

    outcome = file(direct(objects, link, data), objects, links, uploads)

    assert outcome == f"rejected: {len(data)} bytes is over the limit of {len(data) - 1}"
    assert objects.names(UPLOADS) == set()


def test_a_direct_upload_for_an_unknown_link_is_rejected(objects, images, links, uploads):
    info = objects.put(UPLOADS, incoming_name(TEAM, "0123456789abcdef", 0), png(seed=6))

    outcome = file(info, objects, links, uploads)

    assert outcome == "rejected: no such upload link for this team"
    assert images.all() == [] and objects.names(UPLOADS) == set()


def test_a_direct_upload_under_another_teams_name_is_rejected(objects, images, links, uploads, link):
    outcome = file(direct(objects, link, png(seed=7), team=OTHER_TEAM), objects, links, uploads)

    assert outcome == "rejected: no such upload link for this team"
    assert images.all() == []


@pytest.mark.parametrize(
    "name",
    [
        "incoming/team-a/not-a-link-id/0",
        "incoming/team-a/0123456789abcdef/12345",
        "incoming/Team_A/0123456789abcdef/0",
        "incoming/team-a/0123456789abcdef/0/extra",
        "incoming/stray.png",
    ],
)
def test_an_object_not_named_like_a_direct_upload_is_rejected_and_removed(objects, images, links, uploads, name):
    info = objects.put(UPLOADS, name, png(seed=8))

    outcome = file(info, objects, links, uploads)

    assert outcome == "rejected: not an upload-link object name"
    assert objects.names(UPLOADS) == set()


def test_an_event_for_a_replaced_generation_is_gone_and_leaves_the_newer_object(objects, links, uploads, link):
    replaced = direct(objects, link, png(seed=9))
    newer = direct(objects, link, png(seed=10))

    with pytest.raises(Gone):
        file(replaced, objects, links, uploads)

    assert newer.name in objects.names(UPLOADS)


@pytest.mark.parametrize(
    "name,incoming",
    [
        ("incoming/team-a/0123456789abcdef/0", True),
        ("incoming/", True),
        ("teams/team-a/incoming/0", False),
        ("Incoming/x", False),
    ],
)
def test_is_incoming_is_the_incoming_prefix(name, incoming):
    assert is_incoming(name) is incoming
