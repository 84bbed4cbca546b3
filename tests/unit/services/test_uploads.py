"""UploadService: validate, address by content, store once, leave nothing behind on failure."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import pytest
from google.api_core.exceptions import ServiceUnavailable

from aperture.domain.imaging.validation import Rejected
from aperture.domain.records import ImageStatus
from aperture.services import uploads as uploads_module
from aperture.services.uploads import (
    API_WRITE,
    CREATED,
    DUPLICATE,
    REJECTED,
    FileResult,
    LinkSlots,
    clean_filename,
    overall_status,
)
from aperture.storage.upload_links import token_hash
from tests.support import hostile
from tests.unit.fakes import raising
from tests.unit.services.helpers import BY, LIMITS, OTHER_TEAM, TEAM, UPLOADS, png, upload_service

HOSTILE = hostile.corpus()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def link_slots(links, max_files: int = 2, claim_first=None) -> tuple[LinkSlots, str]:
    _, token = links.create(TEAM, max_files, dt.timedelta(hours=1), {"key_id": "key_x"})
    digest = token_hash(token)

    def claim():
        if claim_first is not None:
            claim_first()
        return links.claim(digest, max_files)

    return LinkSlots(claim=claim, release=lambda slot: links.release(digest, slot)), digest


# -- created ---------------------------------------------------------------------------


def test_a_valid_image_is_created_under_its_content_id(uploads):
    data = png(seed=1)

    result = uploads.add(TEAM, "holiday.png", data, BY)

    assert (result.status, result.status_code, result.id) == (CREATED, 201, sha(data))
    assert result.error is None


def test_a_created_image_has_a_pending_record_describing_it(uploads, images):
    data = png(seed=1, size=(40, 30))

    result = uploads.add(TEAM, "holiday.png", data, BY)

    record = images.get(TEAM, result.id)
    assert record.status is ImageStatus.PENDING
    assert (record.filename, record.format, record.mime_type, record.extension) == (
        "holiday.png",
        "PNG",
        "image/png",
        "png",
    )
    assert (record.width, record.height, record.frames, record.size) == (40, 30, 1, len(data))
    assert (record.bucket, record.object) == (UPLOADS, f"teams/{TEAM}/{result.id}.png")
    assert record.uploaded_by == BY
    assert record.created_at.tzinfo is not None


def test_a_created_image_has_its_bytes_stored_marked_as_an_api_write(uploads, objects):
    data = hostile.jpeg(seed=2)

    result = uploads.add(TEAM, "photo.jpg", data, BY)

    name = f"teams/{TEAM}/{result.id}.jpg"
    info = objects.info(UPLOADS, name)
    assert objects.read(info) == data
    assert info.content_type == "image/jpeg"
    assert objects.metadata(UPLOADS, name) == API_WRITE


def test_the_created_result_carries_the_new_record(uploads):
    result = uploads.add(TEAM, "a.png", png(seed=3), BY)

    assert result.image is not None and result.image.id == result.id


# -- duplicates --------------------------------------------------------------------------


def test_the_same_bytes_twice_make_one_record_and_one_object(uploads, images, objects):
    data = png(seed=4)

    first = uploads.add(TEAM, "one.png", data, BY)
    second = uploads.add(TEAM, "two.png", data, BY)

    assert (first.status, second.status) == (CREATED, DUPLICATE)
    assert (second.id, second.status_code) == (first.id, 200)
    assert [r.id for r in images.all()] == [first.id]
    assert objects.names(UPLOADS) == {f"teams/{TEAM}/{first.id}.png"}


def test_a_duplicate_keeps_the_first_uploads_filename(uploads, images):
    data = png(seed=4)
    uploads.add(TEAM, "one.png", data, BY)

    uploads.add(TEAM, "two.png", data, BY)

    assert images.get(TEAM, sha(data)).filename == "one.png"


def test_the_same_bytes_twice_in_one_request_are_created_then_duplicate(uploads, images):
    data = png(seed=5)

    results = uploads.add_many(TEAM, [("a.png", data), ("b.png", data)], BY)

    assert [r.status for r in results] == [CREATED, DUPLICATE]
    assert len(images.all()) == 1


def test_the_same_bytes_in_two_teams_are_two_images(uploads, images, objects):
    data = png(seed=6)

    mine = uploads.add(TEAM, "a.png", data, BY)
    theirs = uploads.add(OTHER_TEAM, "a.png", data, BY)

    assert (mine.status, theirs.status) == (CREATED, CREATED)
    assert images.get(TEAM, mine.id) and images.get(OTHER_TEAM, theirs.id)
    assert len(objects.names(UPLOADS)) == 2


# -- rejected ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_rejected_file_leaves_no_object_and_no_record(uploads, images, objects, case):
    filename, data, expected = HOSTILE[case]

    result = uploads.add(TEAM, filename, data, BY)

    assert (result.status, result.status_code, result.id) == (REJECTED, expected, None)
    assert result.error
    assert images.all() == [] and objects.names(UPLOADS) == set()


def test_a_file_over_the_size_limit_is_rejected_with_413(objects, images):
    data = png(seed=7)
    uploads = upload_service(objects, images, limits=dataclasses.replace(LIMITS, max_file_bytes=len(data) - 1))

    result = uploads.add(TEAM, "big.png", data, BY)

    assert (result.status, result.status_code) == (REJECTED, 413)


def test_a_request_of_several_files_answers_each_in_order(uploads, images):
    good, other = png(seed=8), png(seed=9)

    results = uploads.add_many(TEAM, [("a.png", good), ("notes.jpg", b"plain text"), ("b.png", other)], BY)

    assert [(r.filename, r.status) for r in results] == [
        ("a.png", CREATED),
        ("notes.jpg", REJECTED),
        ("b.png", CREATED),
    ]
    assert {r.id for r in images.all()} == {sha(good), sha(other)}


# -- failures leave nothing half-made ----------------------------------------------------------


def test_a_failing_record_commit_removes_the_objects_it_wrote(uploads, images, objects):
    images.create_all = raising(ServiceUnavailable("firestore unavailable"))

    with pytest.raises(ServiceUnavailable):
        uploads.add_many(TEAM, [("a.png", png(seed=10)), ("b.png", png(seed=11))], BY)

    assert objects.names(UPLOADS) == set()


def test_a_failing_record_commit_keeps_the_object_of_an_image_filed_before(uploads, images, objects):
    filed = uploads.add(TEAM, "old.png", png(seed=12), BY)
    images.create_all = raising(ServiceUnavailable("firestore unavailable"))

    with pytest.raises(ServiceUnavailable):
        uploads.add_many(TEAM, [("old.png", png(seed=12)), ("new.png", png(seed=13))], BY)

    assert objects.names(UPLOADS) == {f"teams/{TEAM}/{filed.id}.png"}


def test_a_failing_object_write_removes_the_record_again(uploads, images, objects):
    objects.create = raising(ServiceUnavailable("storage unavailable"))

    [result] = uploads.add_many(TEAM, [("a.png", png(seed=14))], BY)

    assert (result.status, result.status_code) == (REJECTED, 503)
    assert images.all() == []


def test_a_failing_object_write_of_a_single_upload_raises_and_removes_the_record(uploads, images, objects):
    objects.create = raising(ServiceUnavailable("storage unavailable"))

    with pytest.raises(ServiceUnavailable):
        uploads.add(TEAM, "a.png", png(seed=15), BY)

    assert images.all() == []


def test_a_failing_object_write_fails_only_its_own_file(uploads, images, objects):
    real_create, broken = objects.create, sha(png(seed=17))

    def create(bucket, name, data, content_type, metadata=None):
        if broken in name:
            raise ServiceUnavailable("storage unavailable")
        return real_create(bucket, name, data, content_type, metadata)

    objects.create = create

    results = uploads.add_many(TEAM, [("ok.png", png(seed=16)), ("broken.png", png(seed=17))], BY)

    assert [(r.status, r.status_code) for r in results] == [(CREATED, 201), (REJECTED, 503)]
    assert [r.id for r in images.all()] == [sha(png(seed=16))]


def test_abandon_removes_the_objects_its_starts_wrote(uploads, images, objects):
    started = [
        uploads.start(TEAM, "a.png", png(seed=18)),
        uploads.start(TEAM, "b.png", png(seed=19)),
        uploads.start(TEAM, "c.txt", b"not an image"),
    ]

    uploads.abandon(TEAM, started)

    assert objects.names(UPLOADS) == set()
    assert images.all() == []


def test_abandon_keeps_the_object_of_an_image_filed_before(uploads, objects):
    filed = uploads.add(TEAM, "a.png", png(seed=20), BY)

    uploads.abandon(TEAM, [uploads.start(TEAM, "again.png", png(seed=20))])

    assert objects.names(UPLOADS) == {f"teams/{TEAM}/{filed.id}.png"}


def test_started_files_are_filed_by_add_many(uploads, images):
    started = [uploads.start(TEAM, "a.png", png(seed=21))]

    [result] = uploads.add_many(TEAM, [("a.png", png(seed=21))], BY, started=started)

    assert result.status == CREATED
    assert images.get(TEAM, result.id) is not None


# -- upload link slots -------------------------------------------------------------------------


def test_a_link_upload_takes_one_slot_per_created_file(uploads, links):
    slots, digest = link_slots(links, max_files=3)

    uploads.add(TEAM, "a.png", png(seed=22), BY, slots=slots)
    uploads.add(TEAM, "b.png", png(seed=23), BY, slots=slots)

    assert links.taken(digest) == {"0", "1"}


def test_a_duplicate_link_upload_takes_no_slot(uploads, links):
    uploads.add(TEAM, "a.png", png(seed=24), BY)
    slots, digest = link_slots(links)

    result = uploads.add(TEAM, "a.png", png(seed=24), BY, slots=slots)

    assert result.status == DUPLICATE
    assert links.taken(digest) == set()


def test_a_rejected_link_upload_uses_up_its_slot(uploads, links):
    slots, digest = link_slots(links)

    result = uploads.add(TEAM, "a.txt", b"not an image", BY, slots=slots)

    assert result.status == REJECTED
    assert links.taken(digest) == {"0"}


def test_hostile_files_through_a_link_use_up_its_files_and_then_are_not_validated(uploads, links, monkeypatch):
    # Arrange: a link for 2 files, and 4 hostile files
    slots, digest = link_slots(links, max_files=2)
    files = [HOSTILE[name][1] for name in ("polyglot gif+zip", "jpeg with a bogus progression")] * 2
    validated = []
    real_validate = uploads_module.validate
    monkeypatch.setattr(
        uploads_module, "validate", lambda data, limits: validated.append(data) or real_validate(data, limits)
    )

    # Act
    results = [uploads.add(TEAM, f"f{i}", data, BY, slots=slots) for i, data in enumerate(files)]

    # Assert
    assert [r.status_code for r in results] == [422, 422, 410, 410]
    assert links.taken(digest) == {"0", "1"}
    assert len(validated) == 2


def test_a_link_with_no_slots_left_refuses_with_410_and_stores_nothing(uploads, links, images, objects):
    slots, _ = link_slots(links, max_files=1)
    first = uploads.add(TEAM, "a.png", png(seed=25), BY, slots=slots)

    result = uploads.add(TEAM, "b.png", png(seed=26), BY, slots=slots)

    assert (result.status, result.status_code) == (REJECTED, 410)
    assert [r.id for r in images.all()] == [first.id]
    assert objects.names(UPLOADS) == {f"teams/{TEAM}/{first.id}.png"}


def test_a_failing_link_upload_gives_its_slot_back(uploads, links, objects):
    slots, digest = link_slots(links)
    objects.create = raising(ServiceUnavailable("storage unavailable"))

    with pytest.raises(ServiceUnavailable):
        uploads.add(TEAM, "a.png", png(seed=27), BY, slots=slots)

    assert links.taken(digest) == set()


def test_a_link_upload_filed_by_someone_else_meanwhile_gives_its_slot_back(objects, images, links):
    data = png(seed=28)
    uploads = upload_service(objects, images)
    concurrent = upload_service(objects, images)
    slots, digest = link_slots(links, claim_first=lambda: concurrent.add(TEAM, "same.png", data, BY))

    result = uploads.add(TEAM, "a.png", data, BY, slots=slots)

    assert result.status == DUPLICATE
    assert links.taken(digest) == set()
    assert len(images.all()) == 1


# -- filenames and summaries -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,shown",
    [
        ("photo.jpg", "photo.jpg"),
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
        ("../../etc/passwd.png", "passwd.png"),
        ("  spaced.png  ", "spaced.png"),
        ("", "unnamed"),
        (None, "unnamed"),
        ("dir/", "unnamed"),
        ("Cafe\u0301.png", "Caf\u00e9.png"),
    ],
)
def test_the_filename_shown_is_the_last_path_component_in_nfc(raw, shown):
    assert clean_filename(raw) == shown


@pytest.mark.parametrize("raw", ["evil\x00.png", "two\nlines.png", "del\x7f.png", "a" * 256])
def test_an_unusable_filename_is_refused_with_400(raw):
    with pytest.raises(Rejected) as refused:
        clean_filename(raw)

    assert refused.value.status == 400


def test_the_record_keeps_the_cleaned_filename(uploads, images):
    result = uploads.add(TEAM, "uploads/2024/beach.png", png(seed=29), BY)

    assert (result.filename, images.get(TEAM, result.id).filename) == ("beach.png", "beach.png")


@pytest.mark.parametrize(
    "statuses,expected",
    [
        ([(CREATED, 201), (DUPLICATE, 200), (REJECTED, 422)], 201),
        ([(DUPLICATE, 200), (REJECTED, 422)], 200),
        ([(REJECTED, 413), (REJECTED, 413)], 413),
        ([(REJECTED, 413), (REJECTED, 400)], 422),
    ],
)
def test_overall_status_is_created_then_duplicate_then_the_rejections(statuses, expected):
    results = [FileResult("f", status, status_code=code) for status, code in statuses]

    assert overall_status(results) == expected


def test_a_result_view_shows_the_error_and_its_status_only_when_refused():
    created = FileResult("a.png", CREATED, "ab" * 32)
    refused = FileResult("b.png", REJECTED, error="empty file", status_code=422)

    assert created.view() == {"filename": "a.png", "id": "ab" * 32, "status": CREATED}
    assert refused.view() == {
        "filename": "b.png",
        "id": None,
        "status": REJECTED,
        "error": "empty file",
        "status_code": 422,
    }


def test_max_file_bytes_is_the_limit_it_was_built_with(uploads):
    assert uploads.max_file_bytes == 2_000_000
