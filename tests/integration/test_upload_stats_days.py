"""Upload statistics across several days (S8), with an injected clock: uploads,
duplicates and deletes move the counters exactly once, and the answer reads a
fixed number of documents."""

from __future__ import annotations

import datetime as dt
import time

from aperture.domain.imaging.validation import Limits
from aperture.services.images import stats_view
from aperture.services.uploads import UploadService
from tests.support import hostile
from tests.support.images import encode, random_image

DAY1 = dt.datetime(2026, 11, 1, 10, 0, tzinfo=dt.timezone.utc)
DAY2 = dt.datetime(2026, 11, 3, 23, 59, tzinfo=dt.timezone.utc)


def clocked_uploads(container, day: dt.datetime) -> UploadService:
    return UploadService(
        container.objects,
        container.images,
        container.config.uploads_bucket,
        Limits(10**8, 10**8, 100, 10**9, 10**6),
        clock=lambda: day,
    )


def wait_processed(images, team, ids, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(getattr(images.get(team, i), "status", None) == "processed" for i in ids):
            return
        time.sleep(0.1)
    raise AssertionError("not processed")


def test_counts_per_day_with_duplicates_and_deletes(make_caller, firestore_client, container):
    make_caller("team-a", "member")
    by = {"test": True}
    day1 = [
        clocked_uploads(container, DAY1).add("team-a", f"{i}.jpg", hostile.jpeg(seed=100 + i), by).id for i in range(3)
    ]
    day2 = [clocked_uploads(container, DAY2).add("team-a", "p.png", encode(random_image("RGB", seed=200)), by).id]
    duplicate = clocked_uploads(container, DAY2).add("team-a", "again.jpg", hostile.jpeg(seed=100), by)
    wait_processed(container.images, "team-a", day1 + day2)

    record = container.images.get("team-a", day1[0])
    container.deleter.delete(record)
    container.deleter.delete(record)  # twice: a no-op
    view = stats_view(container.counters.totals("team-a"), dt.date(2026, 11, 4))

    assert duplicate.status == "duplicate"
    series = {d["date"]: d["uploads"] for d in view["uploads_per_day"]}
    assert len(series) == 30 and min(series) == "2026-10-06" and max(series) == "2026-11-04"
    assert series["2026-11-01"] == 2 and series["2026-11-03"] == 1
    assert sum(series.values()) == 3
    assert view["formats"] == {"JPEG": 2, "PNG": 1} and view["most_popular_format"] == "JPEG"


def test_stats_read_a_fixed_number_of_documents(make_caller, firestore_client, monkeypatch, container):
    make_caller("team-a", "member")
    ids = [
        clocked_uploads(container, DAY1).add("team-a", f"{i}.jpg", hostile.jpeg(seed=300 + i), {"test": True}).id
        for i in range(12)
    ]
    wait_processed(container.images, "team-a", ids)
    counters = container.counters
    reads = []
    real_get_all = counters._db.get_all
    monkeypatch.setattr(
        counters._db, "get_all", lambda refs, *a, **k: (reads.extend(refs), real_get_all(refs, *a, **k))[1]
    )

    totals = counters.totals("team-a")

    assert sum(totals.formats.values()) == 12
    assert len(reads) == 10  # the shards, not the 12 images
