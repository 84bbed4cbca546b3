"""The repair sweep against the emulators: drift made directly in Firestore and the
uploads bucket (a stale record without its object, an object without a record,
counters off by one) is mended by one sweep, and a second sweep changes nothing."""

from __future__ import annotations

import datetime as dt

from aperture.domain.records import Contribution, object_name
from tests.support.api import settled, upload
from tests.support.images import encode, random_image
from tests.support.records import pending_record

LATER = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)  # past the sweep's 30 minutes


def quiet(sweep) -> list:
    reports = []
    for _ in range(10):
        report = sweep.run(LATER)
        assert report.errors == []
        reports.append(report)
        if report.changes == 0:
            return reports
    raise AssertionError(f"the sweep never settled: {[r.view() for r in reports]}")


def test_one_sweep_mends_records_objects_and_counters(container, gateway, make_caller, storage_client, stack):
    alice = make_caller("team-r", "member")
    kept = upload(gateway, alice, ("kept.png", encode(random_image("RGB", seed=21))))[0]
    settled(container.images, "team-r", kept)
    lost = pending_record("team-r", encode(random_image("RGB", seed=22)))
    assert container.images.create(lost)  # a record whose object never arrived
    orphan = storage_client.bucket(stack.uploads_bucket).blob(object_name("team-r", "f" * 64, "png"))
    orphan.upload_from_string(b"bytes nobody filed", content_type="image/png")  # an object with no record
    # a counter for an image that does not exist: the totals one too high
    container.counters.add("team-r", "e" * 64, Contribution(format="PNG", camera=None, day="2026-12-03"))
    assert container.counters.totals("team-r").formats["PNG"] == 2

    listed = [info.name for info in container.objects.list_page(stack.uploads_bucket, "teams/", limit=200)]
    assert orphan.name in listed  # the sweep's page (the stack's `process` may purge it first: either mends it)
    reports = quiet(container.repair)

    assert sum(r.pending_deleted for r in reports) == 1
    assert sum(r.markers_removed for r in reports) == 1
    assert container.images.get("team-r", lost.id) is None
    assert not orphan.exists()
    assert container.images.get("team-r", kept) is not None  # what was in step is untouched
    assert container.objects.info(stack.uploads_bucket, container.images.get("team-r", kept).object) is not None
    assert container.counters.totals("team-r").formats == {"PNG": 1}
    assert container.repair.run(LATER).changes == 0
