"""ImageDeleter: an image removed from everywhere it lives, idempotently (spec S8)."""

from __future__ import annotations

import datetime as dt

import pytest

from aperture.domain.jobs import ItemState, JobLimits
from aperture.domain.records import Contribution, ImageStatus, Principal, rendition_name
from aperture.services.deletion import ImageDeleter
from aperture.services.jobs import JobService, JobWorker
from tests.unit.services.helpers import (
    BY,
    DERIVED,
    MAX_PIXELS,
    OTHER_TEAM,
    TEAM,
    UPLOADS,
    build_processor,
    png,
    upload_service,
)


def NOW() -> dt.datetime:  # noqa: N802 - a clock, as JobService takes it
    return dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def deleter(objects, images, counters, histograms) -> ImageDeleter:
    return ImageDeleter(objects, images, counters, histograms)


@pytest.fixture
def processed(objects, images, histograms, counters, identity, links):
    """A team image as `process` leaves it: record, object, stored histograms, counted."""
    identity.create_team(TEAM, "Team A")
    uploads = upload_service(objects, images)
    processor = build_processor(objects, images, histograms, counters, identity, links, uploads)
    result = uploads.add(TEAM, "photo.png", png(seed=1), BY)
    record = images.get(TEAM, result.id)
    assert processor.handle(objects.event(UPLOADS, record.object)) == "processed"
    return images.get(TEAM, result.id)


def test_a_processed_image_is_removed_everywhere(deleter, processed, objects, images, histograms, counters):
    deleter.delete(processed)

    assert images.get(TEAM, processed.id) is None
    assert objects.names(UPLOADS) == set()
    assert histograms.keys() == set()
    assert counters.counted(TEAM, processed.id) is None


def test_deleting_an_image_takes_its_share_of_the_counters_back(deleter, processed, counters):
    day = processed.created_at.strftime("%Y-%m-%d")
    assert counters.totals(TEAM).formats == {"PNG": 1}

    deleter.delete(processed)

    totals = counters.totals(TEAM)
    assert (totals.formats, totals.days) == ({"PNG": 0}, {day: 0})


def test_deleting_twice_is_a_no_op(deleter, processed, counters):
    deleter.delete(processed)

    deleter.delete(processed)

    assert counters.totals(TEAM).formats == {"PNG": 0}


def test_a_pending_image_is_removed_without_touching_the_counters(deleter, objects, images, counters):
    counters.add(TEAM, "f" * 64, Contribution("2024-05-01", "JPEG", None))  # another image
    result = upload_service(objects, images).add(TEAM, "photo.png", png(seed=2), BY)
    pending = images.get(TEAM, result.id)
    assert pending.status is ImageStatus.PENDING

    deleter.delete(pending)

    assert images.get(TEAM, pending.id) is None
    assert objects.names(UPLOADS) == set()
    assert counters.totals(TEAM).formats == {"JPEG": 1}


def test_deleting_leaves_the_teams_other_images_alone(deleter, processed, objects, images):
    other = upload_service(objects, images).add(TEAM, "other.png", png(seed=3), BY)

    deleter.delete(processed)

    assert [r.id for r in images.all()] == [other.id]
    assert objects.names(UPLOADS) == {f"teams/{TEAM}/{other.id}.png"}


# -- every generation, renditions and job outputs (#19 item 3) ----------------------------------


@pytest.fixture
def full_deleter(objects, images, counters, histograms, job_store) -> ImageDeleter:
    return ImageDeleter(objects, images, counters, histograms, derived_bucket=DERIVED, jobs=job_store)


def test_deleting_removes_every_stored_generation_of_the_bytes(full_deleter, processed, objects):
    data = png(seed=1)
    objects.put(UPLOADS, processed.object, data, "image/png")  # rewritten: the first is noncurrent now
    objects.put(UPLOADS, processed.object, data, "image/png")
    assert len(objects.generations(UPLOADS, processed.object)) == 3

    full_deleter.delete(processed)

    assert objects.generations(UPLOADS, processed.object) == []
    assert objects.stored_names(UPLOADS) == set()


def test_deleting_removes_every_generation_of_the_renditions(full_deleter, processed, objects):
    rendition = rendition_name(TEAM, processed.id, "resize:10x10", "png")
    objects.put(DERIVED, rendition, b"old", "image/png")
    objects.put(DERIVED, rendition, b"new", "image/png")
    objects.put(DERIVED, f"renditions/{TEAM}/{'f' * 64}/x.png", b"another image's", "image/png")

    full_deleter.delete(processed)

    assert objects.stored_names(DERIVED) == {f"renditions/{TEAM}/{'f' * 64}/x.png"}


def submit_and_run(job_store, job_queue, images, objects, pairs, operations=()):
    service = JobService(job_store, job_queue, images, objects, derived_bucket=DERIVED, limits=JobLimits(), clock=NOW)
    member = Principal(BY["key_id"], BY["user_id"], TEAM, "member")
    body = {"images": [{"input": i, "output": o} for i, o in pairs], "operations": list(operations)}
    submitted = service.submit(member, body)
    worker = JobWorker(job_store, objects, derived_bucket=DERIVED, max_pixels=MAX_PIXELS)
    for index in range(len(pairs)):
        assert worker.run(submitted.job_id, index) == "done"
    return submitted.job_id


def test_deleting_removes_the_outputs_of_jobs_made_from_the_image(
    full_deleter, processed, objects, images, job_store, job_queue
):
    other = images.get(TEAM, upload_service(objects, images).add(TEAM, "other.png", png(seed=5), BY).id)
    job_id = submit_and_run(
        job_store, job_queue, images, objects, [(processed.id, "a.png"), (other.id, "b.png")], ["split=True"]
    )
    base = f"jobs/{TEAM}/{job_id}/"
    made = {base + name for item in job_store.items(job_id) for name in item.outputs}
    assert len(made) == 8
    first = sorted(n for n in made if n.startswith(base + "a"))[0]
    objects.put(DERIVED, first, b"rewritten", "image/png")  # a noncurrent generation too

    full_deleter.delete(processed)

    mine, theirs = job_store.items(job_id)
    assert objects.stored_names(DERIVED) == {base + name for name in theirs.outputs}
    assert (mine.state, mine.outputs, len(theirs.outputs)) == (ItemState.DONE, (), 4)
    note = job_store.outputs_deleted(job_id, 0)
    assert note["reason"] == "the input image was deleted"
    assert {base + n for n in note["names"]} == {n for n in made if n.startswith(base + "a")}
    assert job_store.outputs_deleted(job_id, 1) is None


def test_outputs_an_unfinished_item_may_have_written_are_deleted(
    full_deleter, processed, objects, images, job_store, job_queue
):
    service = JobService(job_store, job_queue, images, objects, derived_bucket=DERIVED, limits=JobLimits(), clock=NOW)
    member = Principal(BY["key_id"], BY["user_id"], TEAM, "member")
    job_id = service.submit(member, {"images": [{"input": processed.id, "output": "x.png"}]}).job_id
    objects.put(DERIVED, f"jobs/{TEAM}/{job_id}/x.png", b"written by a run still going", "image/png")

    full_deleter.delete(processed)

    assert objects.stored_names(DERIVED) == set()
    assert job_store.outputs_deleted(job_id, 0)["names"] == ["x.png"]


def test_another_teams_job_on_the_same_bytes_is_left_alone(
    full_deleter, processed, objects, images, job_store, job_queue, identity
):
    same = upload_service(objects, images).add(OTHER_TEAM, "photo.png", png(seed=1), BY)
    assert same.id == processed.id
    service = JobService(job_store, job_queue, images, objects, derived_bucket=DERIVED, limits=JobLimits(), clock=NOW)
    outsider = Principal("key_fedcba9876543210", "usr_fedcba9876543210", OTHER_TEAM, "member")
    job_id = service.submit(outsider, {"images": [{"input": same.id, "output": "x.png"}]}).job_id
    JobWorker(job_store, objects, derived_bucket=DERIVED, max_pixels=MAX_PIXELS).run(job_id, 0)

    full_deleter.delete(processed)

    assert objects.stored_names(DERIVED) == {f"jobs/{OTHER_TEAM}/{job_id}/x.png"}
    assert job_store.items(job_id)[0].outputs == ("x.png",)


def test_deleting_with_job_outputs_twice_is_a_no_op(full_deleter, processed, objects, images, job_store, job_queue):
    job_id = submit_and_run(job_store, job_queue, images, objects, [(processed.id, "a.png")])

    full_deleter.delete(processed)
    full_deleter.delete(processed)

    assert objects.stored_names(DERIVED) == set()
    assert job_store.items(job_id)[0].outputs == ()
