"""RepairSweep: each kind of drift mended, and a second run changes nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from aperture.domain.records import ImageStatus
from aperture.services.deletion import ImageDeleter
from aperture.services.repair import RepairSettings, RepairSweep
from tests.unit.services.helpers import BY, TEAM, UPLOADS, build_processor, png, upload_service

NOW = dt.datetime.now(dt.timezone.utc)
LATER = NOW + dt.timedelta(hours=1)  # past `stale_after` (30 min) for everything made now


@pytest.fixture
def parts(objects, images, histograms, counters, identity, links):
    identity.create_team(TEAM, "Team A")
    uploads = upload_service(objects, images)
    processor = build_processor(objects, images, histograms, counters, identity, links, uploads)
    deleter = ImageDeleter(objects, images, counters, histograms)
    sweep = RepairSweep(images, objects, counters, identity, processor, deleter, UPLOADS, RepairSettings(page_size=2))
    return uploads, processor, deleter, sweep


def quiet(sweep: RepairSweep) -> None:
    """Runs until a whole pass finds nothing (pages of 2), then once more: nothing changes."""
    for _ in range(10):
        report = sweep.run(LATER)
        assert report.errors == []
        if report.changes == 0:
            break
    assert sweep.run(LATER).changes == 0


def upload(uploads, seed: int) -> str:
    [result] = uploads.add_many(TEAM, [(f"{seed}.png", png(seed))], BY)
    return result.id


def test_stale_pending_record_with_its_object_is_processed_again(parts, images, counters):
    uploads, _, _, sweep = parts
    image_id = upload(uploads, 1)  # its finalize event never came
    assert sweep.run(NOW).changes == 0  # not stale yet
    report = sweep.run(LATER)
    assert report.pending_reprocessed == 1
    assert images.get(TEAM, image_id).status is ImageStatus.PROCESSED
    assert counters.totals(TEAM).formats == {"PNG": 1}
    quiet(sweep)


def test_stale_pending_record_that_fails_is_marked_failed_with_its_reason(parts, objects, images):
    uploads, _, _, sweep = parts
    image_id = upload(uploads, 2)
    record = images.get(TEAM, image_id)
    objects.put(UPLOADS, record.object, b"not an image any more", "image/png")
    report = sweep.run(LATER)
    assert report.pending_failed == 1
    failed = images.get(TEAM, image_id)
    assert failed.status is ImageStatus.FAILED and failed.error
    quiet(sweep)


def test_stale_pending_record_whose_object_is_gone_is_deleted(parts, objects, images):
    uploads, _, _, sweep = parts
    image_id = upload(uploads, 3)
    objects.delete_generations(UPLOADS, images.get(TEAM, image_id).object)
    assert sweep.run(LATER).pending_deleted == 1
    assert images.get(TEAM, image_id) is None
    quiet(sweep)


def test_orphan_objects_under_teams_are_deleted_and_young_ones_kept(parts, objects, images):
    _, _, _, sweep = parts
    for n in range(5):  # more than a page: the cursor carries the rest to the next runs
        objects.put(UPLOADS, f"teams/{TEAM}/{n:064x}.png", png(n), "image/png")
    objects.put(UPLOADS, f"teams/{TEAM}/holiday.png", png(9), "image/png")  # a plain client's, never filed
    objects.put(UPLOADS, "incoming/elsewhere.png", png(9), "image/png")
    assert sweep.run(NOW).orphans_deleted == 0  # young: an upload may still be on its way
    deleted = sum(sweep.run(LATER).orphans_deleted for _ in range(4))
    assert deleted == 6
    assert objects.names(UPLOADS) == {"incoming/elsewhere.png"}
    quiet(sweep)


def test_orphan_restored_when_a_record_comes_while_it_is_deleted(parts, objects, images):
    """The sweep deletes an orphan's generation; a record naming it comes right then: it is copied back."""
    uploads, _, _, _ = parts
    data = png(4)
    image_id = __import__("hashlib").sha256(data).hexdigest()
    name = f"teams/{TEAM}/{image_id}.png"
    objects.put(UPLOADS, name, data, "image/png")
    sweep_parts = parts
    processor, deleter = sweep_parts[1], sweep_parts[2]
    fired: list[str] = []

    def hook(point: str) -> None:
        if point == "repair.after_orphan_delete" and not fired:
            fired.append(point)
            [result] = uploads.add_many(TEAM, [("late.png", data)], BY)  # its write finds... nothing now
            assert result.status == "created"

    sweep = RepairSweep(
        images, objects, parts[3]._counters, parts[3]._identity, processor, deleter, UPLOADS, checkpoint=hook
    )
    sweep.run(LATER)
    assert fired and objects.info(UPLOADS, name) is not None and images.get(TEAM, image_id) is not None


def test_counters_out_of_step_are_recomputed(parts, objects, images, counters):
    uploads, processor, _, sweep = parts
    ids = [upload(uploads, n) for n in (5, 6)]
    for image_id in ids:
        processor.handle(objects.event(UPLOADS, images.get(TEAM, image_id).object))
    day = images.get(TEAM, ids[0]).created_at.strftime("%Y-%m-%d")
    counters.skew(TEAM, day, "PNG", +3)  # lost/doubled increments
    counters.add(TEAM, "f" * 64, dataclasses.replace(counters.counted(TEAM, ids[0])))  # a deleted image's count
    counters.remove(TEAM, ids[1], counters.counted(TEAM, ids[1]))  # a processed image not counted
    report = sweep.run(LATER)
    assert (report.markers_removed, report.markers_added, report.counters_rebuilt) == (1, 1, 1)
    assert counters.totals(TEAM).formats == {"PNG": 2}
    assert set(counters.markers(TEAM, 10)) == set(ids)
    quiet(sweep)


def test_expired_tombstones_are_dropped(parts, objects, images):
    uploads, _, deleter, sweep = parts
    image_id = upload(uploads, 7)
    deleter.delete(images.get(TEAM, image_id))
    assert images.tombstone(TEAM, image_id) is not None
    assert sweep.run(LATER).tombstones_dropped == 0  # kept a day
    assert sweep.run(NOW + dt.timedelta(days=2)).tombstones_dropped == 1
    assert images.tombstone(TEAM, image_id) is None
    assert sweep.run(NOW + dt.timedelta(days=2)).changes == 0


class Clock:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_run_out_of_time_takes_up_nothing_new_and_the_next_run_goes_on(
    objects, images, histograms, counters, identity, links
):
    identity.create_team(TEAM, "Team A")
    uploads = upload_service(objects, images)
    processor = build_processor(objects, images, histograms, counters, identity, links, uploads)
    clock = Clock()
    handle = processor.handle

    def slow_handle(info):  # each reprocessing takes 100 s of the budget
        clock.now += 100
        return handle(info)

    processor.handle = slow_handle
    deleter = ImageDeleter(objects, images, counters, histograms)
    settings = RepairSettings(page_size=10, budget=dt.timedelta(seconds=250))
    sweep = RepairSweep(images, objects, counters, identity, processor, deleter, UPLOADS, settings, clock=clock)
    ids = [upload(uploads, 20 + seed) for seed in range(5)]  # five stale pending records

    first = sweep.run(LATER)

    assert first.out_of_time and first.pending_reprocessed == 3  # started at 0, 100, 200 s; not at 300
    assert first.teams_checked == 0 and first.errors == []  # later steps left to the next run
    second = sweep.run(LATER)
    assert second.pending_reprocessed == 2 and not second.out_of_time
    assert all(images.get(TEAM, image_id).status is ImageStatus.PROCESSED for image_id in ids)
    assert counters.totals(TEAM).formats == {"PNG": 5}
