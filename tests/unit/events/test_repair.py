"""The `repair` function's CloudEvent handler: one sweep per tick of the repair topic; a dead
letter of the topic is acknowledged, not run; a step's error does not fail the delivery."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cloudevents.http import CloudEvent

from aperture.events.pubsub import DEAD_LETTER_COUNT, PUBLISHED
from aperture.events.repair import build, handle
from aperture.services.deletion import ImageDeleter
from aperture.services.repair import RepairSweep, Report
from tests.unit import fakes
from tests.unit.services.helpers import BY, TEAM, UPLOADS, build_processor, png, upload_service


class CountingSweep:
    """A RepairSweep that counts its runs and answers a fixed report."""

    def __init__(self, report: Report | None = None) -> None:
        self.runs = 0
        self.report = report or Report()

    def run(self, now: dt.datetime | None = None) -> Report:
        self.runs += 1
        return self.report


def tick(attributes: dict[str, str] | None = None, event_type: str = PUBLISHED) -> CloudEvent:
    """A messagePublished event as the push subscription delivers Cloud Scheduler's tick."""
    body = {
        "message": {"data": base64.b64encode(b'{"tick":"repair"}').decode(), "attributes": attributes or {}},
        "subscription": "projects/p/subscriptions/aperture-repair-repair",
    }
    return CloudEvent({"type": event_type, "source": "//pubsub.googleapis.com/projects/p/topics/aperture-repair"}, body)


def test_a_tick_runs_one_sweep():
    sweep = CountingSweep(Report(pending_deleted=2))

    report = handle(tick(), sweep)

    assert sweep.runs == 1 and report.changes == 2


@pytest.mark.parametrize("data", [None, {}, {"message": None}, {"message": {"data": "not base64!"}}])
def test_what_a_message_holds_does_not_matter(data):
    sweep = CountingSweep()

    handle(CloudEvent({"type": PUBLISHED, "source": "//pubsub.googleapis.com/t"}, data), sweep)

    assert sweep.runs == 1


def test_a_dead_lettered_tick_is_acknowledged_without_a_sweep(capsys):
    sweep = CountingSweep()

    assert handle(tick({DEAD_LETTER_COUNT: "5"}), sweep) is None  # returns: the push is answered 2xx

    assert sweep.runs == 0
    assert "dead-lettered" in capsys.readouterr().out


def test_a_failed_step_is_logged_and_does_not_fail_the_delivery(capsys):
    sweep = CountingSweep(Report(errors=["_orphan_objects: ServiceUnavailable: 503 storage down"]))

    report = handle(tick(), sweep)

    assert report.errors and sweep.runs == 1
    assert "storage down" in capsys.readouterr().out


def test_an_exception_out_of_the_sweep_fails_the_delivery():
    class Broken(CountingSweep):
        def run(self, now=None):
            raise RuntimeError("not a guarded step")

    with pytest.raises(RuntimeError):
        handle(tick(), Broken())


def test_other_event_types_are_ignored():
    sweep = CountingSweep()

    handle(tick(event_type="google.cloud.storage.object.v1.finalized"), sweep)

    assert sweep.runs == 0


def test_a_tick_mends_a_stale_record_through_the_containers_sweep():
    """The built handler runs the real RepairSweep (over in-memory repositories): a record two
    hours old whose object never arrived is deleted."""
    objects, images, counters = fakes.FakeObjectStore(), fakes.FakeImageStore(), fakes.FakeTeamCounters()
    histograms, identity = fakes.FakeHistogramStore(), fakes.FakeIdentityStore()
    identity.create_team(TEAM, "Team A")
    two_hours_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    uploads = upload_service(objects, images, clock=lambda: two_hours_ago)
    [result] = uploads.add_many(TEAM, [("lost.png", png(1))], BY)
    objects.delete_generations(UPLOADS, images.get(TEAM, result.id).object)
    processor = build_processor(objects, images, histograms, counters, identity, fakes.FakeUploadLinkStore(), uploads)
    deleter = ImageDeleter(objects, images, counters, histograms)

    class Container:
        repair = RepairSweep(images, objects, counters, identity, processor, deleter, UPLOADS)

    build(Container())(tick())

    assert images.get(TEAM, result.id) is None
