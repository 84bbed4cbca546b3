"""Processor: failures classified — permanent ones fail the record at once, transient ones are
counted in the record and raised (the event is retried) until the attempts run out (#19 item 2)."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from google.api_core import exceptions as gexc

from aperture.domain.errors import Gone
from aperture.domain.imaging import pixels
from aperture.domain.records import Contribution, ImageStatus, object_name
from aperture.services.processing import (
    PERMANENT,
    TRANSIENT,
    PermanentFailure,
    Processor,
    TransientFailure,
    classify,
)
from tests.unit.fakes import FakeDeadLetterTopic, raising
from tests.unit.services.helpers import BY, TEAM, UPLOADS, FakeVision, build_processor, png

MAX_ATTEMPTS = 3


class FlakyVision(FakeVision):
    """A provider whose calls fail with `errors`, one per call, then succeed."""

    def __init__(self, *errors: BaseException):
        super().__init__()
        self.errors = list(errors)

    def analyze(self, image):
        if self.errors:
            raise self.errors.pop(0)
        return super().analyze(image)


@pytest.fixture
def vision() -> FlakyVision:
    return FlakyVision()


@pytest.fixture
def dead_letters() -> FakeDeadLetterTopic:
    return FakeDeadLetterTopic()


@pytest.fixture
def processor(objects, images, histograms, counters, identity, links, vision, dead_letters) -> Processor:
    identity.create_team(TEAM, "Team A")
    return build_processor(
        objects,
        images,
        histograms,
        counters,
        identity,
        links,
        provider=lambda: vision,
        max_attempts=MAX_ATTEMPTS,
        dead_letters=lambda: dead_letters,
    )


def uploaded(processor: Processor, seed: int):
    result = processor.uploads.add(TEAM, "photo.png", png(seed=seed), BY)
    record = processor.images.get(TEAM, result.id)
    return record, processor.objects.event(UPLOADS, record.object)


def corrupt_upload(processor: Processor, objects, images, data: bytes, seed: int):
    """A record whose object does not decode (slipped past validation)."""
    image_id = hashlib.sha256(data).hexdigest()
    record = dataclasses.replace(uploaded(processor, seed)[0], id=image_id, object=object_name(TEAM, image_id, "png"))
    images.create(record)
    return record, objects.put(UPLOADS, record.object, data, "image/png")


# -- classification ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        pixels.ImageError("cannot identify image file"),
        PermanentFailure("cannot be analysed"),
        Gone("record deleted"),
        gexc.InvalidArgument("the image is refused"),
        gexc.BadRequest("bad"),
    ],
)
def test_permanent_failures(exc):
    assert classify(exc) == PERMANENT


@pytest.mark.parametrize(
    "exc",
    [
        gexc.ServiceUnavailable("firestore down"),
        gexc.DeadlineExceeded("deadline"),
        gexc.TooManyRequests("429"),
        gexc.ResourceExhausted("quota"),
        gexc.InternalServerError("500"),
        gexc.BadGateway("502"),
        gexc.GatewayTimeout("504"),
        gexc.Aborted("contention"),
        gexc.RetryError("retries ran out", cause=None),
        ConnectionError("reset by peer"),
        TimeoutError("read timed out"),
        MemoryError(),
        RuntimeError("not known to be permanent"),
    ],
)
def test_transient_failures(exc):
    assert classify(exc) == TRANSIENT


# -- permanent: failed at once ---------------------------------------------------------------------


def test_an_undecodable_object_fails_at_once_with_the_reason(processor, objects, images, counters):
    record, event = corrupt_upload(processor, objects, images, b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, seed=1)

    outcome = processor.handle(event)

    failed = images.get(TEAM, record.id)
    assert outcome.startswith("failed: ")
    assert (failed.status, failed.attempts) == (ImageStatus.FAILED, 1)
    assert failed.error and failed.error in outcome
    assert counters.counted(TEAM, record.id) is None


def test_an_image_over_the_pixel_limit_fails_at_once(processor, images):
    processor = dataclasses.replace(processor, max_pixels=100)
    record, event = uploaded(processor, seed=2)  # 37 x 23 = 851 pixels

    outcome = processor.handle(event)

    failed = images.get(TEAM, record.id)
    assert outcome.startswith("failed: ")
    assert (failed.status, failed.attempts) == (ImageStatus.FAILED, 1)


def test_a_failure_in_the_pixel_work_is_permanent(processor, images, monkeypatch):
    record, event = uploaded(processor, seed=3)
    monkeypatch.setattr(pixels, "normalize", raising(ValueError("unsupported mode")))

    outcome = processor.handle(event)

    failed = images.get(TEAM, record.id)
    assert failed.status is ImageStatus.FAILED
    assert failed.error == "cannot be analysed: ValueError: unsupported mode"
    assert outcome == f"failed: {failed.error}"


def test_a_refusal_by_a_google_service_is_permanent(processor, images, vision):
    vision.errors = [gexc.InvalidArgument("Bad image data.")]
    record, event = uploaded(processor, seed=4)

    processor.handle(event)

    failed = images.get(TEAM, record.id)
    assert (failed.status, failed.error) == (ImageStatus.FAILED, "InvalidArgument: 400 Bad image data.")


def test_a_record_deleted_before_the_attempt_is_gone_not_failed(processor, images):
    record, event = uploaded(processor, seed=5)
    images.begin_attempt = raising(Gone("image record deleted"))

    assert processor.handle(event).startswith("gone: ")


# -- transient: raised, counted, failed after the max ------------------------------------------


def test_a_transient_failure_raises_and_is_counted_in_the_record(processor, images, vision):
    vision.errors = [gexc.ServiceUnavailable("vision is down")]
    record, event = uploaded(processor, seed=6)

    with pytest.raises(TransientFailure) as raised:
        processor.handle(event)

    pending = images.get(TEAM, record.id)
    assert (raised.value.attempt, raised.value.max_attempts) == (1, MAX_ATTEMPTS)
    assert (pending.status, pending.attempts) == (ImageStatus.PENDING, 1)
    assert pending.error == "ServiceUnavailable: 503 vision is down"
    assert pending.view()["attempts"] == 1 and pending.view()["error"] == pending.error


def test_a_retry_after_a_transient_failure_processes_the_image(processor, images, vision, counters):
    vision.errors = [gexc.DeadlineExceeded("deadline"), gexc.TooManyRequests("slow down")]
    record, event = uploaded(processor, seed=7)
    for _ in range(2):
        with pytest.raises(TransientFailure):
            processor.handle(event)

    outcome = processor.handle(event)

    done = images.get(TEAM, record.id)
    assert outcome == "processed"
    assert (done.status, done.attempts, done.error) == (ImageStatus.PROCESSED, 3, None)
    assert counters.totals(TEAM).formats == {"PNG": 1}


def test_transient_failures_end_failed_after_the_max_attempts(processor, images, vision):
    vision.errors = [gexc.ServiceUnavailable(f"down {n}") for n in range(1, 10)]
    record, event = uploaded(processor, seed=8)
    for _ in range(MAX_ATTEMPTS - 1):
        with pytest.raises(TransientFailure):
            processor.handle(event)

    outcome = processor.handle(event)  # the last attempt is acknowledged

    failed = images.get(TEAM, record.id)
    assert failed.status is ImageStatus.FAILED
    assert failed.attempts == MAX_ATTEMPTS
    assert failed.error == f"gave up after {MAX_ATTEMPTS} attempts: ServiceUnavailable: 503 down {MAX_ATTEMPTS}"
    assert outcome == f"failed: {failed.error}"
    assert processor.handle(event) == "duplicate event: already failed"


def test_attempts_that_never_finished_count_too(processor, images):
    """A run killed by a timeout or out of memory reaches no except clause: the count at the start says so."""
    record, event = uploaded(processor, seed=9)
    for _ in range(MAX_ATTEMPTS):
        images.begin_attempt(images.get(TEAM, record.id), str(event.generation))

    outcome = processor.handle(event)

    failed = images.get(TEAM, record.id)
    assert failed.status is ImageStatus.FAILED
    assert (
        failed.error == f"gave up after {MAX_ATTEMPTS} attempts: an attempt did not finish (timeout or out of memory?)"
    )
    assert outcome == f"failed: {failed.error}"


def test_a_new_generation_counts_its_attempts_afresh(processor, images, objects, vision):
    vision.errors = [gexc.ServiceUnavailable("down")] * (MAX_ATTEMPTS - 1)
    data = png(seed=10)
    record, event = uploaded(processor, seed=10)
    for _ in range(MAX_ATTEMPTS - 1):
        with pytest.raises(TransientFailure):
            processor.handle(event)
    rewritten = objects.put(UPLOADS, record.object, data, "image/png")

    assert processor.handle(rewritten) == "processed"
    assert images.get(TEAM, record.id).attempts == 1


def test_a_transient_failure_of_a_write_is_counted_and_raised(processor, images, counters):
    record, event = uploaded(processor, seed=11)
    counters.add = raising(gexc.ServiceUnavailable("firestore unavailable"))

    with pytest.raises(TransientFailure):
        processor.handle(event)

    assert images.get(TEAM, record.id).error == "ServiceUnavailable: 503 firestore unavailable"


# -- giving up: the dead-letter topic ----------------------------------------------------------


def give_up(processor: Processor, vision, seed: int):
    """An image whose every attempt fails for a passing reason, delivered until the attempts are used up."""
    vision.errors = [gexc.ServiceUnavailable(f"down {n}") for n in range(1, 10)]
    record, event = uploaded(processor, seed=seed)
    for _ in range(MAX_ATTEMPTS - 1):
        with pytest.raises(TransientFailure):
            processor.handle(event)
    return record, event


def test_giving_up_publishes_one_dead_letter_and_the_record_names_it(processor, images, vision, dead_letters):
    record, event = give_up(processor, vision, seed=20)
    assert dead_letters.published == []  # not while attempts are left

    outcome = processor.handle(event)
    processor.handle(event)  # a redelivery of the acknowledged event

    failed = images.get(TEAM, record.id)
    assert outcome == f"failed: {failed.error}" and failed.status is ImageStatus.FAILED
    last = f"ServiceUnavailable: 503 down {MAX_ATTEMPTS}"
    assert dead_letters.letters() == [
        {
            "bucket": UPLOADS,
            "object": record.object,
            "generation": str(event.generation),
            "team": TEAM,
            "image_id": record.id,
            "attempts": MAX_ATTEMPTS,
            "error": last,
        }
    ]
    [(message_id, _, attributes)] = dead_letters.published
    assert attributes == {
        "bucket": UPLOADS,
        "object": record.object,
        "generation": str(event.generation),
        "team": TEAM,
        "image_id": record.id,
        "attempts": str(MAX_ATTEMPTS),
    }
    letter = failed.dead_letter
    assert (letter["topic"], letter["message_id"], letter["generation"]) == (
        dead_letters.name,
        message_id,
        str(event.generation),
    )
    assert failed.view()["dead_letter"] == letter  # visible in the record the API answers


def test_attempts_that_never_finished_are_dead_lettered_too(processor, images, dead_letters):
    record, event = uploaded(processor, seed=21)
    for _ in range(MAX_ATTEMPTS):
        images.begin_attempt(images.get(TEAM, record.id), str(event.generation))

    processor.handle(event)

    [letter] = dead_letters.letters()
    assert letter["error"] == "an attempt did not finish (timeout or out of memory?)"
    assert letter["attempts"] == MAX_ATTEMPTS + 1  # as the record counts them
    assert images.get(TEAM, record.id).dead_letter["message_id"] == dead_letters.published[0][0]


def test_a_failed_publish_is_transient_and_leaves_the_record_as_it_was(processor, images, vision, dead_letters):
    record, event = give_up(processor, vision, seed=22)
    publish = dead_letters.publish
    dead_letters.publish = raising(gexc.ServiceUnavailable("pubsub is down"))

    with pytest.raises(TransientFailure, match="dead letter not published: ServiceUnavailable"):
        processor.handle(event)

    pending = images.get(TEAM, record.id)
    assert (pending.status, pending.dead_letter) == (ImageStatus.PENDING, None)
    assert pending.error == f"ServiceUnavailable: 503 down {MAX_ATTEMPTS}"  # kept for the next delivery
    dead_letters.publish = publish

    processor.handle(event)  # the redelivery gives up again and publishes

    failed = images.get(TEAM, record.id)
    assert failed.status is ImageStatus.FAILED
    assert failed.error == f"gave up after {MAX_ATTEMPTS} attempts: ServiceUnavailable: 503 down {MAX_ATTEMPTS}"
    [letter] = dead_letters.letters()
    assert letter["error"] == f"ServiceUnavailable: 503 down {MAX_ATTEMPTS}"
    assert failed.dead_letter["message_id"] == dead_letters.published[0][0]


def test_a_delivery_after_the_record_names_a_dead_letter_publishes_none(processor, images, vision, dead_letters):
    """An earlier delivery published and named its dead letter, then stopped before the record was failed."""
    record, event = give_up(processor, vision, seed=23)
    named = {"topic": dead_letters.name, "message_id": "earlier", "generation": str(event.generation)}
    assert images.note_dead_letter(TEAM, record.id, named)

    processor.handle(event)

    failed = images.get(TEAM, record.id)
    assert dead_letters.published == []
    assert (failed.status, failed.dead_letter) == (ImageStatus.FAILED, named)


def test_a_record_keeps_the_first_dead_letter_of_a_generation(images, processor):
    record, event = uploaded(processor, seed=24)
    first = {"topic": "t", "message_id": "1", "generation": str(event.generation)}

    assert images.note_dead_letter(TEAM, record.id, first)
    assert not images.note_dead_letter(TEAM, record.id, {**first, "message_id": "2"})
    assert images.get(TEAM, record.id).dead_letter == first
    with pytest.raises(Gone):
        images.note_dead_letter(TEAM, "0" * 64, first)


@pytest.mark.parametrize("refusal", [gexc.NotFound("no such topic"), gexc.PermissionDenied("no publisher role")])
def test_a_dead_letter_refused_for_good_still_fails_the_record(processor, images, vision, dead_letters, refusal):
    record, event = give_up(processor, vision, seed=25)
    dead_letters.publish = raising(refusal)

    outcome = processor.handle(event)  # acknowledged: retrying would be refused the same way

    failed = images.get(TEAM, record.id)
    assert outcome == f"failed: {failed.error}" and failed.error.startswith(f"gave up after {MAX_ATTEMPTS} attempts")
    assert failed.dead_letter is None


def test_permanent_failures_are_not_dead_lettered(processor, objects, images, dead_letters):
    record, event = corrupt_upload(processor, objects, images, b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, seed=26)

    assert processor.handle(event).startswith("failed: ")
    assert dead_letters.published == [] and images.get(TEAM, record.id).dead_letter is None


# -- counter keys ---------------------------------------------------------------------------------


def test_the_camera_is_normalised_for_the_record_and_the_counters(processor, images, counters, monkeypatch):
    from aperture.domain.imaging import metadata

    real = metadata.exif
    monkeypatch.setattr(metadata, "exif", lambda *a, **k: {**real(*a, **k), "camera": "  Canon\x00  EOS\t5D \n"})
    record, event = uploaded(processor, seed=12)

    processor.handle(event)

    assert images.get(TEAM, record.id).camera == "Canon EOS 5D"
    assert counters.totals(TEAM).cameras == {"Canon EOS 5D": 1}
    assert counters.counted(TEAM, record.id).camera == "Canon EOS 5D"


def test_counters_count_case_variants_under_the_first_spelling(counters):
    counters.add(TEAM, "a" * 64, Contribution("2024-05-01", "JPEG", "Canon EOS"))
    counters.add(TEAM, "b" * 64, Contribution("2024-05-01", "JPEG", "CANON  eos"))

    assert counters.totals(TEAM).cameras == {"Canon EOS": 2}
    assert counters.counted(TEAM, "b" * 64).camera == "Canon EOS"


def test_a_teams_cameras_beyond_the_cap_fold_into_other(counters):
    from tests.unit.fakes import FakeTeamCounters

    counters = FakeTeamCounters(max_cameras=3)
    for n in range(6):
        counters.add(TEAM, f"{n:064x}", Contribution("2024-05-01", "JPEG", f"cam {n}"))
    counters.add(TEAM, "f" * 64, Contribution("2024-05-01", "JPEG", "CAM 0"))

    assert counters.totals(TEAM).cameras == {"cam 0": 2, "cam 1": 1, "cam 2": 1, "other": 3}
    # un-counting takes back what was added, from "other" too
    counters.remove(TEAM, f"{5:064x}", counters.counted(TEAM, f"{5:064x}"))
    assert counters.totals(TEAM).cameras["other"] == 2
    # another team has its own cap
    counters.add("team-b", "e" * 64, Contribution("2024-05-01", "JPEG", "cam 9"))
    assert counters.totals("team-b").cameras == {"cam 9": 1}
