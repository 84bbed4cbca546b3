"""Deduplication and deletion races (#19 item 1), each forced deterministically.

The services call `checkpoint(name)` where another actor may interleave; these
tests run the other actor synchronously inside that hook, exactly there, then
check the end state (and that the repair sweep finds nothing left to mend, or
mends what a crash left). docs/decisions.md, "Deduplication and deletion races".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading

import pytest

from aperture.domain.records import ImageStatus
from aperture.services.deletion import ImageDeleter
from aperture.services.repair import RepairSweep
from aperture.services.uploads import CREATED, DUPLICATE, REJECTED, UploadService
from tests.unit.services.helpers import BY, LIMITS, TEAM, UPLOADS, build_processor, png

LATER = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)


class Hooks:
    """A checkpoint that runs `at[name]` once, the first time `name` is reached."""

    def __init__(self) -> None:
        self.at: dict[str, object] = {}
        self.seen: list[str] = []

    def __call__(self, name: str) -> None:
        self.seen.append(name)
        action = self.at.pop(name, None)
        if action is not None:
            action()


class WriteDone:
    """Wraps FakeObjectStore.create so a test can wait for an upload's background object write."""

    def __init__(self, objects) -> None:
        self.done = threading.Event()
        inner = objects.create

        def create(*args, **kwargs):
            try:
                return inner(*args, **kwargs)
            finally:
                self.done.set()

        objects.create = create


@pytest.fixture
def world(objects, images, histograms, counters, identity, links):
    identity.create_team(TEAM, "Team A")
    hooks = {"a": Hooks(), "b": Hooks(), "delete": Hooks(), "process": Hooks()}
    up_a = UploadService(objects, images, UPLOADS, LIMITS, checkpoint=hooks["a"])
    up_b = UploadService(objects, images, UPLOADS, LIMITS, checkpoint=hooks["b"])
    deleter = ImageDeleter(objects, images, counters, histograms, checkpoint=hooks["delete"])
    processor = build_processor(
        objects, images, histograms, counters, identity, links, up_a, checkpoint=hooks["process"]
    )
    sweep = RepairSweep(images, objects, counters, identity, processor, deleter, UPLOADS)
    return dataclasses.make_dataclass("World", ["a", "b", "deleter", "processor", "sweep", "hooks"])(
        up_a, up_b, deleter, processor, sweep, hooks
    )


def consistent(objects, images, counters) -> None:
    """Every record has its object, every object under teams/ a record, counters = processed records."""
    records = {r.object: r for r in images.all()}
    assert set(records) == objects.names(UPLOADS), "records and objects out of step"
    processed = [r for r in records.values() if r.status is ImageStatus.PROCESSED]
    assert sum(counters.totals(TEAM).formats.values()) == len(processed)
    assert set(counters.markers(TEAM, 100)) == {r.id for r in processed}


def process_all(world, objects) -> None:
    for name in sorted(objects.names(UPLOADS)):
        world.processor.handle(objects.event(UPLOADS, name))


def assert_sweep_finds_nothing(world, objects, images, counters) -> None:
    report = world.sweep.run(LATER)
    assert report.errors == [] and report.changes - report.tombstones_dropped == 0, report.view()
    consistent(objects, images, counters)


# -- race 1: a refused request's undo against an upload of the same bytes --------------------------


def test_undo_after_its_check_does_not_take_the_object_of_a_record_made_meanwhile(world, objects, images, counters):
    """A's request is refused: A looks for a record (none) and, before it deletes its object, B files
    the same bytes (B's create-only write finds A's object). A deletes by its generation, looks again,
    finds B's record and writes the bytes back: B's record is never left without its object."""
    data = png(1)
    started = [world.a.start(TEAM, "a.png", data)]
    results: list = []
    world.hooks["a"].at["upload.undo.before_delete"] = lambda: results.extend(
        world.b.add_many(TEAM, [("b.png", data)], BY)
    )
    world.a.abandon(TEAM, started)
    [result] = results
    assert result.status == CREATED
    record = images.get(TEAM, result.id)
    assert record is not None and objects.info(UPLOADS, record.object) is not None
    process_all(world, objects)
    consistent(objects, images, counters)
    assert images.get(TEAM, result.id).status is ImageStatus.PROCESSED
    assert_sweep_finds_nothing(world, objects, images, counters)


def test_upload_relying_on_an_object_an_undo_deletes_writes_it_again(world, objects, images, counters):
    """The other order: B's write finds A's object; before B commits its record, A's undo runs whole
    (no record yet: A deletes). B's check after its record finds the object gone and writes it again."""
    data = png(2)
    started = [world.a.start(TEAM, "a.png", data)]
    started[0].result().writing.result()  # A's object is there
    written = WriteDone(objects)
    world.hooks["b"].at["upload.before_record"] = lambda: (written.done.wait(5), world.a.abandon(TEAM, started))
    [result] = world.b.add_many(TEAM, [("b.png", data)], BY)
    assert result.status == CREATED
    assert objects.info(UPLOADS, images.get(TEAM, result.id).object) is not None
    process_all(world, objects)
    consistent(objects, images, counters)
    assert_sweep_finds_nothing(world, objects, images, counters)


# -- race 2: an upload of an image being deleted --------------------------------------------------


@pytest.mark.parametrize("point", ["delete.after_tombstone", "delete.before_record"])
def test_upload_of_an_image_being_deleted_is_not_a_duplicate(world, objects, images, counters, point):
    """The record still exists while the delete runs: the upload must not answer "duplicate" for an
    image that is about to be gone, nor leave the object it wrote behind."""
    data = png(3)
    [first] = world.a.add_many(TEAM, [("x.png", data)], BY)
    process_all(world, objects)
    results: list = []
    world.hooks["delete"].at[point] = lambda: results.extend(world.b.add_many(TEAM, [("again.png", data)], BY))
    world.deleter.delete(images.get(TEAM, first.id))
    [result] = results
    assert result.status == REJECTED and result.status_code == 409
    assert images.all() == [] and objects.stored_names(UPLOADS) == set()
    consistent(objects, images, counters)
    # Once the delete has finished the same bytes are a new image, not a duplicate.
    [again] = world.b.add_many(TEAM, [("again.png", data)], BY)
    assert again.status == CREATED
    process_all(world, objects)
    consistent(objects, images, counters)
    assert_sweep_finds_nothing(world, objects, images, counters)


def test_upload_link_duplicate_check_does_not_answer_duplicate_for_an_image_being_deleted(
    world, objects, images, counters
):
    data = png(4)
    [first] = world.a.add_many(TEAM, [("x.png", data)], BY)
    results: list = []
    slots = __import__("aperture.services.uploads", fromlist=["LinkSlots"]).LinkSlots(
        claim=lambda: "slot-1", release=lambda slot: None
    )
    world.hooks["delete"].at["delete.before_record"] = lambda: results.append(
        world.b.add(TEAM, "x.png", data, BY, slots=slots)
    )
    world.deleter.delete(images.get(TEAM, first.id))
    assert results[0].status != DUPLICATE
    consistent(objects, images, counters)


# -- race 3: an upload created across a delete --------------------------------------------------


def test_record_created_after_a_delete_purged_the_object_it_relied_on_gets_it_back(world, objects, images, counters):
    """B's write finds the old image's object; the whole delete (object purged, record deleted) runs
    before B commits its record, so B's record is new (created) and B writes its object again."""
    data = png(5)
    [first] = world.a.add_many(TEAM, [("x.png", data)], BY)
    process_all(world, objects)
    written = WriteDone(objects)
    world.hooks["b"].at["upload.before_record"] = lambda: (
        written.done.wait(5),
        world.deleter.delete(images.get(TEAM, first.id)),
    )
    [result] = world.b.add_many(TEAM, [("again.png", data)], BY)
    assert result.status == CREATED
    record = images.get(TEAM, result.id)
    assert record.status is ImageStatus.PENDING and objects.info(UPLOADS, record.object) is not None
    process_all(world, objects)  # the new record is not the tombstoned one: it is processed and counted
    consistent(objects, images, counters)
    assert images.get(TEAM, result.id).status is ImageStatus.PROCESSED
    assert_sweep_finds_nothing(world, objects, images, counters)


# -- race 4: processing alongside a delete (counters one too high) ---------------------------------


@pytest.mark.parametrize("point", ["process.before_count", "process.after_count"])
def test_processing_alongside_a_delete_leaves_no_count(world, objects, images, counters, histograms, point):
    data = png(6)
    [first] = world.a.add_many(TEAM, [("x.png", data)], BY)
    event = objects.event(UPLOADS, images.get(TEAM, first.id).object)
    world.hooks["process"].at[point] = lambda: world.deleter.delete(images.get(TEAM, first.id))
    outcome = world.processor.handle(event)
    assert outcome.startswith("gone")
    assert counters.totals(TEAM).formats.get("PNG", 0) == 0 and counters.counted(TEAM, first.id) is None
    assert histograms.keys() == set()
    consistent(objects, images, counters)
    assert_sweep_finds_nothing(world, objects, images, counters)


# -- race 5: a late event of an object an upload wrote for a deleted image -----------------------


def test_object_left_by_an_upload_that_lost_to_a_delete_is_not_filed_again(world, objects, images, counters):
    """The upload's undo died (crash) after a 409: its object stays. Its finalize event, once the
    record wait is over, purges it instead of filing it again as a plain upload."""
    data = png(7)
    [first] = world.a.add_many(TEAM, [("x.png", data)], BY)
    record = images.get(TEAM, first.id)
    world.deleter.delete(record)
    info = objects.put(UPLOADS, record.object, data, "image/png", {"aperture-upload": "api"})
    info = dataclasses.replace(info, created="2020-01-01T00:00:00Z")  # past the record wait
    assert world.processor.handle(info).startswith("deleted")
    assert images.all() == [] and objects.names(UPLOADS) == set()
    consistent(objects, images, counters)


# -- the sweep against a crash in the middle of the races ---------------------------------------


def test_sweep_mends_what_a_crashed_undo_leaves(world, objects, images, counters):
    """Without its re-check (a crash between delete and re-check) the undo leaves B's record with no
    object, stuck pending: the sweep deletes that record; the end state is consistent."""
    data = png(8)
    started = [world.a.start(TEAM, "a.png", data)]
    results: list = []

    def crash() -> None:
        raise SystemExit("crash")

    world.hooks["a"].at["upload.undo.before_delete"] = lambda: results.extend(
        world.b.add_many(TEAM, [("b.png", data)], BY)
    )
    world.hooks["a"].at["upload.undo.after_delete"] = crash
    with pytest.raises(SystemExit):
        world.a.abandon(TEAM, started)
    assert images.get(TEAM, results[0].id).status is ImageStatus.PENDING
    assert objects.names(UPLOADS) == set()
    report = world.sweep.run(LATER)
    assert report.pending_deleted == 1
    consistent(objects, images, counters)
    again = world.sweep.run(LATER)
    assert again.errors == [] and again.changes == 0, again.view()
