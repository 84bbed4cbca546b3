"""ImageDeleter: an image removed from everywhere it lives, idempotently (spec S8)."""

from __future__ import annotations

import pytest

from aperture.domain.records import Contribution, ImageStatus
from aperture.services.deletion import ImageDeleter
from aperture.services.processing import Processor
from tests.unit.services.helpers import BY, MAX_PIXELS, SOURCE, TEAM, UPLOADS, FakeVision, png, upload_service


@pytest.fixture
def deleter(objects, images, counters, histograms) -> ImageDeleter:
    return ImageDeleter(objects, images, counters, histograms)


@pytest.fixture
def processed(objects, images, histograms, counters, identity, links):
    """A team image as `process` leaves it: record, object, stored histograms, counted."""
    identity.create_team(TEAM, "Team A")
    uploads = upload_service(objects, images)
    processor = Processor(
        objects=objects,
        images=images,
        histograms=histograms,
        counters=counters,
        identity=identity,
        uploads=uploads,
        links=links,
        provider=FakeVision,
        uploads_bucket=UPLOADS,
        source_bucket=SOURCE,
        max_pixels=MAX_PIXELS,
    )
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
