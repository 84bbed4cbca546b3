"""Processor: a finalized object's way through `process` (spec S7)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from aperture.domain import stats as statistics
from aperture.domain.imaging import pixels
from aperture.domain.records import Contribution, ImageRecord, ImageStatus, ObjectInfo, object_name
from aperture.services.processing import PENDING_RECORD_SECONDS, Processor, RecordPending, record_on_its_way
from aperture.services.uploads import API_WRITE
from tests.support import hostile
from tests.support.images import encode, random_image
from tests.unit.services.helpers import (
    BY,
    EMBEDDING,
    SOURCE,
    TEAM,
    UPLOADS,
    FakeVision,
    build_processor,
    png,
)


@pytest.fixture
def vision() -> FakeVision:
    return FakeVision()


@pytest.fixture
def processor(objects, images, histograms, counters, identity, links, vision) -> Processor:
    identity.create_team(TEAM, "Team A")
    return build_processor(objects, images, histograms, counters, identity, links, provider=lambda: vision)


def uploaded(processor: Processor, data: bytes, filename: str = "photo.png") -> tuple[ImageRecord, ObjectInfo]:
    """An API upload's record and the finalize event of its object."""
    result = processor.uploads.add(TEAM, filename, data, BY)
    record = processor.images.get(TEAM, result.id)
    return record, processor.objects.event(UPLOADS, record.object)


# -- team images -------------------------------------------------------------------------------


def test_a_pending_upload_is_processed(processor, images):
    record, event = uploaded(processor, png(seed=1))

    outcome = processor.handle(event)

    done = images.get(TEAM, record.id)
    assert outcome == "processed"
    assert done.status is ImageStatus.PROCESSED
    assert done.generation == str(event.generation)
    assert done.processed_at is not None and done.error is None


def test_processing_adds_the_providers_labels_and_embedding(processor, images, vision):
    record, event = uploaded(processor, png(seed=2))

    processor.handle(event)

    done = images.get(TEAM, record.id)
    assert done.labels == ["cat", "sofa"]
    assert done.label_scores == [{"name": "cat", "score": 0.912346}, {"name": "sofa", "score": 0.4}]
    assert (done.embedding, done.provider) == (EMBEDDING, "fake-vision")
    assert vision.analyzed == [("RGB", (37, 23))]


def test_processing_describes_the_image(processor, images):
    data = encode(random_image("RGBA", size=(50, 40), seed=3), "PNG")
    record, event = uploaded(processor, data)

    processor.handle(event)

    done = images.get(TEAM, record.id)
    assert (done.format, done.mode, done.width, done.height, done.frames, done.size) == (
        "PNG",
        "RGBA",
        50,
        40,
        1,
        len(data),
    )
    assert done.exif is not None
    assert set(done.processing_ms) >= {"download", "decode", "histograms", "labels"}


def test_processing_stores_the_histograms_of_this_generation(processor, images, histograms):
    data = png(seed=4)
    record, event = uploaded(processor, data)

    processor.handle(event)

    stored = histograms.get(UPLOADS, record.object, event.generation)
    expected = statistics.image_histograms(pixels.normalize(Image.open(io.BytesIO(data))))
    assert statistics.deserialize(stored.payload) == expected
    assert images.get(TEAM, record.id).histograms == {
        "bucket": UPLOADS,
        "name": record.object,
        "generation": str(event.generation),
    }


def test_processing_counts_the_image_for_its_team(processor, counters):
    record, event = uploaded(processor, png(seed=5))

    processor.handle(event)

    day = record.created_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d")
    assert counters.counted(TEAM, record.id) == Contribution(day, "PNG", None)
    assert counters.totals(TEAM).formats == {"PNG": 1}
    assert counters.totals(TEAM).days == {day: 1}


def test_a_corrupt_object_marks_its_record_failed(processor, images, objects, counters):
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200  # no image in there
    image_id = hashlib.sha256(data).hexdigest()
    record = dataclasses.replace(
        uploaded(processor, png(seed=6))[0], id=image_id, object=object_name(TEAM, image_id, "png")
    )
    images.create(record)
    event = objects.put(UPLOADS, record.object, data, "image/png")

    outcome = processor.handle(event)

    failed = images.get(TEAM, image_id)
    assert outcome.startswith("failed: ")
    assert failed.status is ImageStatus.FAILED
    assert failed.error and failed.generation == str(event.generation)
    assert counters.counted(TEAM, image_id) is None


def test_a_duplicate_event_is_a_no_op(processor, images, vision, counters):
    record, event = uploaded(processor, png(seed=7))
    processor.handle(event)
    before = images.get(TEAM, record.id)

    outcome = processor.handle(event)

    assert outcome == "duplicate event: already processed"
    assert images.get(TEAM, record.id) == before
    assert len(vision.analyzed) == 1
    assert counters.totals(TEAM).formats == {"PNG": 1}


def test_a_duplicate_event_of_a_failed_image_is_a_no_op(processor, images, objects):
    data = b"GIF89a" + b"\x00" * 100
    image_id = hashlib.sha256(data).hexdigest()
    record = dataclasses.replace(
        uploaded(processor, png(seed=8))[0], id=image_id, object=object_name(TEAM, image_id, "gif")
    )
    images.create(record)
    event = objects.put(UPLOADS, record.object, data, "image/gif")
    processor.handle(event)

    outcome = processor.handle(event)

    assert outcome == "duplicate event: already failed"


def test_an_image_processed_again_is_counted_once(processor, objects, counters):
    data = png(seed=9)
    record, event = uploaded(processor, data)
    processor.handle(event)
    rewritten = objects.put(UPLOADS, record.object, data, "image/png")  # same bytes, new generation

    outcome = processor.handle(rewritten)

    assert outcome == "processed"
    assert counters.totals(TEAM).formats == {"PNG": 1}


def test_an_event_for_a_generation_overwritten_meanwhile_is_gone(processor, objects, images):
    data = png(seed=10)
    record, stale = uploaded(processor, data)
    objects.put(UPLOADS, record.object, data, "image/png")

    outcome = processor.handle(stale)

    assert outcome.startswith("gone: ")
    assert images.get(TEAM, record.id).status is ImageStatus.PENDING


def test_an_event_whose_record_was_deleted_meanwhile_is_gone(processor, images):
    record, event = uploaded(processor, png(seed=11))
    real_mark = images.mark_processed

    def deleted_first(rec, analysis):
        images.delete(rec.team, rec.id)
        return real_mark(rec, analysis)

    images.mark_processed = deleted_first

    outcome = processor.handle(event)

    assert outcome.startswith("gone: ")
    assert images.get(TEAM, record.id) is None


# -- objects the upload API wrote, and plain clients' objects ---------------------------------------


def test_an_api_object_whose_record_is_not_committed_yet_is_retried_later(processor, objects):
    data = png(seed=12)
    image_id = hashlib.sha256(data).hexdigest()
    event = objects.put(UPLOADS, object_name(TEAM, image_id, "png"), data, "image/png", metadata=API_WRITE)

    with pytest.raises(RecordPending):
        processor.handle(event)


def test_an_api_object_removed_before_its_record_came_is_not_waited_for(processor, objects, images):
    # The upload gave up after writing its object (a refusal, a lost race) and removed it.
    data = png(seed=14)
    image_id = hashlib.sha256(data).hexdigest()
    event = objects.put(UPLOADS, object_name(TEAM, image_id, "png"), data, "image/png", metadata=API_WRITE)
    objects.delete(UPLOADS, event.name, event.generation)

    outcome = processor.handle(event)

    assert outcome.startswith("gone: ")
    assert images.get(TEAM, image_id) is None


def test_record_on_its_way_only_for_a_recent_api_write():
    created = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    api = ObjectInfo(
        UPLOADS,
        "teams/team-a/x.png",
        1,
        10,
        None,
        None,
        metadata=tuple(API_WRITE.items()),
        created=created.isoformat().replace("+00:00", "Z"),
    )
    plain = dataclasses.replace(api, metadata=())

    assert record_on_its_way(api, now=created + dt.timedelta(seconds=1))
    assert not record_on_its_way(api, now=created + dt.timedelta(seconds=PENDING_RECORD_SECONDS + 1))
    assert not record_on_its_way(plain, now=created + dt.timedelta(seconds=1))
    assert not record_on_its_way(dataclasses.replace(api, created=None))


def test_a_plain_clients_object_under_another_name_is_filed_under_its_content_id(processor, objects, images):
    data = png(seed=13)
    image_id = hashlib.sha256(data).hexdigest()
    event = objects.put(UPLOADS, f"teams/{TEAM}/holiday.png", data, "image/png")

    outcome = processor.handle(event)

    canonical = object_name(TEAM, image_id, "png")
    record = images.get(TEAM, image_id)
    assert outcome == f"filed as {canonical}"
    assert objects.names(UPLOADS) == {canonical}
    assert (record.filename, record.status, record.uploaded_by) == (
        "holiday.png",
        ImageStatus.PENDING,
        {"plain_client": True, "object": f"teams/{TEAM}/holiday.png"},
    )


def test_a_plain_clients_object_filed_is_processed_by_its_own_event(processor, objects, images):
    data = png(seed=14)
    image_id = hashlib.sha256(data).hexdigest()
    processor.handle(objects.put(UPLOADS, f"teams/{TEAM}/holiday.png", data, "image/png"))

    outcome = processor.handle(objects.event(UPLOADS, object_name(TEAM, image_id, "png")))

    assert outcome == "processed"
    assert images.get(TEAM, image_id).status is ImageStatus.PROCESSED


def test_a_plain_clients_object_under_its_content_name_is_filed_and_processed_at_once(processor, objects, images):
    data = png(seed=15)
    image_id = hashlib.sha256(data).hexdigest()
    name = object_name(TEAM, image_id, "png")

    outcome = processor.handle(objects.put(UPLOADS, name, data, "image/png"))

    assert outcome == "processed"
    assert images.get(TEAM, image_id).status is ImageStatus.PROCESSED
    assert objects.names(UPLOADS) == {name}


def test_a_plain_clients_non_image_is_removed_and_not_filed(processor, objects, images):
    event = objects.put(UPLOADS, f"teams/{TEAM}/notes.jpg", b"plain text, not a photo", "image/jpeg")

    outcome = processor.handle(event)

    assert outcome.startswith("rejected: ") and outcome.endswith("; object removed")
    assert objects.names(UPLOADS) == set()
    assert images.all() == []


def test_a_plain_clients_object_for_an_unknown_team_is_removed(processor, objects, images):
    event = objects.put(UPLOADS, "teams/nobody-here/photo.png", png(seed=16), "image/png")

    outcome = processor.handle(event)

    assert outcome == "rejected: no team 'nobody-here'; object removed"
    assert objects.names(UPLOADS) == set()
    assert images.all() == []


# -- direct uploads, the source bucket and the rest ----------------------------------------------


def test_a_direct_upload_is_filed_through_its_upload_link(processor, objects, links, images):
    link, _ = links.create(TEAM, 2, dt.timedelta(hours=1), {"key_id": "key_x"})
    data = png(seed=17)
    event = objects.put(UPLOADS, f"incoming/{TEAM}/{link.link_id}/0", data)

    outcome = processor.handle(event)

    image_id = hashlib.sha256(data).hexdigest()
    assert outcome == f"created: {image_id}"
    assert images.get(TEAM, image_id) is not None
    assert objects.names(UPLOADS) == {object_name(TEAM, image_id, "png")}


def test_a_source_object_gets_its_histograms_ahead_of_the_first_request(processor, objects, histograms):
    data = hostile.jpeg(seed=18)
    event = objects.put(SOURCE, "IMG_1.jpg", data, "image/jpeg")

    outcome = processor.handle(event)

    stored = histograms.get(SOURCE, "IMG_1.jpg", event.generation)
    assert outcome == "histograms stored"
    assert statistics.deserialize(stored.payload) == statistics.image_histograms(
        pixels.normalize(Image.open(io.BytesIO(data)))
    )
    assert (stored.width, stored.height, stored.format) == (64, 48, "JPEG")


def test_a_source_object_with_stored_histograms_is_left_alone(processor, objects):
    event = objects.put(SOURCE, "IMG_1.jpg", hostile.jpeg(seed=19), "image/jpeg")
    processor.handle(event)

    assert processor.handle(event) == "histograms already stored"


def test_a_source_object_that_is_no_image_is_reported(processor, objects, histograms):
    event = objects.put(SOURCE, "README.txt", b"hello")

    outcome = processor.handle(event)

    assert outcome.startswith("not an image: ")
    assert histograms.keys() == set()


def test_source_objects_are_ignored_when_prewarming_is_off(processor, objects, histograms):
    processor = dataclasses.replace(processor, prewarm_source=False)
    event = objects.put(SOURCE, "IMG_1.jpg", hostile.jpeg(seed=20), "image/jpeg")

    assert processor.handle(event) == "ignored"
    assert histograms.keys() == set()


@pytest.mark.parametrize(
    "bucket,name",
    [
        (UPLOADS, "exports/report.csv"),
        (UPLOADS, "teams/team-a/nested/dir/photo.png"),
        ("some-other-bucket", "teams/team-a/photo.png"),
    ],
)
def test_other_objects_are_ignored(processor, objects, bucket, name):
    event = objects.put(bucket, name, png(seed=21))

    assert processor.handle(event) == "ignored"
    assert name in objects.names(bucket)


def test_a_float_image_over_the_wide_bound_is_processed_without_histograms(processor, images, histograms):
    samples = np.random.default_rng(3).random((64, 64), dtype=np.float32)
    data = encode(Image.fromarray(samples, "F"), "TIFF")
    wide = dataclasses.replace(processor, max_wide_pixels=4000)  # 64x64 = 4096 pixels
    record, event = uploaded(wide, data, "wide.tiff")

    wide.handle(event)

    done = images.get(TEAM, record.id)
    assert done.status is ImageStatus.PROCESSED and done.labels  # labels and the rest as usual
    assert histograms.get(UPLOADS, record.object, event.generation) is None
