"""The repair sweep: finds image records, objects and counters out of step and mends them.

Run every 15 minutes by Cloud Scheduler (the `repair` function) and by a
timer under `make run`. Every step is idempotent and bounded per run
(`RepairSettings`: pages, and a time budget after which nothing new is taken
up); what one run leaves (a full page, the rest of a budget) the next one
continues.

(a) records still `pending` `stale_after` after their upload: the object is
    there -> processing runs again (it counts the attempt and, once attempts
    run out, marks the record `failed` with the reason); the object is gone ->
    the image is deleted (the deleter: tombstone, counters, record);
(b) objects under `teams/` older than `stale_after` that no record names ->
    deleted by generation; a record that names the object after all (it came
    while the object was being deleted) gets it back from that generation;
(c) a team's counters: markers of images that no longer exist are taken back,
    processed records without a marker are counted, and the totals are made
    the sum of the markers when they are not (`TeamCounters.rebuild`);
(d) tombstones past `drop_after` are dropped.

See docs/decisions.md, "Deduplication and deletion races".
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from aperture.domain.records import TEAM_ID, Contribution, ImageRecord, ImageStatus, ObjectInfo
from aperture.runtime import logs
from aperture.services.uploads import no_checkpoint

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from aperture.services.deletion import ImageDeleter
    from aperture.services.processing import Processor
    from aperture.storage.counters import TeamCounters
    from aperture.storage.identity import IdentityStore
    from aperture.storage.images import ImageStore
    from aperture.storage.objects import ObjectStore

TEAMS_PREFIX = "teams/"
_TEAM_OBJECT = re.compile(rf"teams/({TEAM_ID.pattern})/([^/]+)")
_CANONICAL = re.compile(r"([0-9a-f]{64})\.[a-z]+")


@dataclass(frozen=True)
class RepairSettings:
    stale_after: dt.timedelta = dt.timedelta(minutes=30)  # APERTURE_REPAIR_STALE_MINUTES
    page_size: int = 200  # APERTURE_REPAIR_PAGE_SIZE: records, objects, tombstones per run, each
    teams_per_run: int = 5  # APERTURE_REPAIR_TEAMS_PER_RUN: teams whose counters are checked per run
    team_images: int = 10_000  # APERTURE_REPAIR_TEAM_IMAGES: a team's records/markers read per check
    # APERTURE_REPAIR_BUDGET_SECONDS: no new record, object, team or tombstone is taken up after
    # this long, so a run ends well inside the function's timeout (540 s); the next run goes on.
    budget: dt.timedelta = dt.timedelta(minutes=5)


@dataclass
class Report:
    pending_reprocessed: int = 0
    pending_failed: int = 0
    pending_retry: int = 0  # processing failed for a passing reason: tried again next run
    pending_deleted: int = 0  # their object was gone
    orphans_deleted: int = 0
    orphans_restored: int = 0  # deleted, then a record needing them was found: copied back
    markers_removed: int = 0
    markers_added: int = 0
    counters_rebuilt: int = 0
    teams_checked: int = 0
    teams_skipped: int = 0  # more images than `team_images`: not checked
    tombstones_dropped: int = 0
    out_of_time: bool = False  # the budget ran out: the rest is the next run's
    errors: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        counted = {"pending_retry", "teams_checked", "teams_skipped", "out_of_time", "errors"}
        return sum(getattr(self, f.name) for f in fields(self) if f.name not in counted)

    def view(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"changes": self.changes}


class RepairSweep:
    def __init__(
        self,
        images: ImageStore,
        objects: ObjectStore,
        counters: TeamCounters,
        identity: IdentityStore,
        processor: Processor,
        deleter: ImageDeleter,
        bucket: str,
        settings: RepairSettings = RepairSettings(),
        checkpoint: Callable[[str], None] = no_checkpoint,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._images = images
        self._objects = objects
        self._counters = counters
        self._identity = identity
        self._processor = processor
        self._deleter = deleter
        self._bucket = bucket
        self._settings = settings
        self._checkpoint = checkpoint
        self._clock = clock
        self._deadline = 0.0
        # Where the next run's object page and team check start (per instance: a new
        # instance starts from the beginning, which only repeats idempotent work).
        self._object_cursor: str | None = None
        self._team_cursor = 0

    def run(self, now: dt.datetime | None = None) -> Report:
        now = now or dt.datetime.now(dt.timezone.utc)
        report = Report()
        cutoff = now - self._settings.stale_after
        self._deadline = self._clock() + self._settings.budget.total_seconds()
        for step in (self._stale_pending, self._orphan_objects, self._counters_in_step, self._tombstones):
            if self._out_of_time(report):
                break
            try:
                step(now, cutoff, report)
            except Exception as exc:  # one step failing leaves the others to do their part
                logs.exception("repair step failed", step=step.__name__)
                report.errors.append(f"{step.__name__}: {type(exc).__name__}: {exc}")
        logs.info("repair sweep", **report.view())
        return report

    def _out_of_time(self, report: Report) -> bool:
        if self._clock() >= self._deadline:
            report.out_of_time = True
        return report.out_of_time

    # (a) ----------------------------------------------------------------------------------

    def _stale_pending(self, now: dt.datetime, cutoff: dt.datetime, report: Report) -> None:
        for record in self._images.stale_pending(cutoff, self._settings.page_size):
            if self._out_of_time(report):
                return
            info = self._objects.info(record.bucket, record.object)
            if info is None:
                self._deleter.delete(record)
                report.pending_deleted += 1
                continue
            try:
                outcome = self._processor.handle(info)
            except Exception as exc:  # TransientFailure: counted on the record, tried again next run
                report.pending_retry += 1
                logs.info("repair: processing failed again", team=record.team, image_id=record.id, error=str(exc))
                continue
            if outcome == "processed":
                report.pending_reprocessed += 1
            elif outcome.startswith("failed"):
                report.pending_failed += 1

    # (b) ----------------------------------------------------------------------------------

    def _orphan_objects(self, now: dt.datetime, cutoff: dt.datetime, report: Report) -> None:
        before = self._object_cursor
        page = self._objects.list_page(self._bucket, TEAMS_PREFIX, limit=self._settings.page_size, start_after=before)
        self._object_cursor = page[-1].name if len(page) == self._settings.page_size else None
        for index, info in enumerate(page):
            if self._out_of_time(report):
                self._object_cursor = page[index - 1].name if index else before  # the next run goes on from here
                return
            created = _created(info)
            if created is None or created >= cutoff or self._needed(info):
                continue
            self._checkpoint("repair.before_orphan_delete")
            self._objects.delete(info.bucket, info.name, info.generation)  # a newer generation is left alone
            report.orphans_deleted += 1
            self._checkpoint("repair.after_orphan_delete")
            if self._needed(info):  # a record came meanwhile: the deleted generation is noncurrent, copy it back
                try:
                    if self._objects.copy(info.bucket, info.name, info.generation, info.name):
                        report.orphans_restored += 1
                except Exception as exc:
                    report.errors.append(f"restore {info.name}: {type(exc).__name__}: {exc}")

    def _needed(self, info: ObjectInfo) -> bool:
        """Does a record (not being deleted) name this object?"""
        match = _TEAM_OBJECT.fullmatch(info.name)
        canonical = _CANONICAL.fullmatch(match.group(2)) if match else None
        if match is None or canonical is None:
            return False  # not a name the API gives: a plain client's object `process` never filed
        record = self._images.get(match.group(1), canonical.group(1))
        if record is None or record.object != info.name:
            return False
        tombstone = self._images.tombstone(record.team, record.id)
        return tombstone is None or tombstone.record_created_at != record.created_at

    # (c) ----------------------------------------------------------------------------------

    def _counters_in_step(self, now: dt.datetime, cutoff: dt.datetime, report: Report) -> None:
        teams = sorted(team.team_id for team in self._identity.list_teams())
        if not teams:
            return
        start = self._team_cursor % len(teams)
        chosen = (teams[start:] + teams[:start])[: self._settings.teams_per_run]
        self._team_cursor = start + len(chosen)
        for index, team in enumerate(chosen):
            if self._out_of_time(report):
                self._team_cursor = start + index
                return
            self._check_team(team, report)

    def _check_team(self, team: str, report: Report) -> None:
        limit = self._settings.team_images
        markers = self._counters.markers(team, limit + 1)
        processed = {r.id: r for r in self._images.processed(team, limit + 1)}
        if len(markers) > limit or len(processed) > limit:
            report.teams_skipped += 1
            return
        report.teams_checked += 1
        unknown = [image_id for image_id in markers if image_id not in processed]
        existing = self._images.get_many(team, unknown) if unknown else {}
        for image_id in unknown:
            if image_id not in existing and self._counters.remove(team, image_id, markers[image_id]):
                report.markers_removed += 1  # counted by a processing run its delete did not see
        for image_id, record in processed.items():
            if image_id not in markers and self._counters.add(team, image_id, contribution(record)):
                report.markers_added += 1
        if self._counters.rebuild(team):
            report.counters_rebuilt += 1

    # (d) ----------------------------------------------------------------------------------

    def _tombstones(self, now: dt.datetime, cutoff: dt.datetime, report: Report) -> None:
        for tombstone in self._images.expired_tombstones(now, self._settings.page_size):
            if self._out_of_time(report):
                return
            if self._images.drop_tombstone(tombstone):
                report.tombstones_dropped += 1


def contribution(record: ImageRecord) -> Contribution:
    """What a processed record adds to its team's counters (as `process` counts it)."""
    assert record.status is ImageStatus.PROCESSED
    return Contribution(
        day=record.created_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d"),
        format=record.format,
        camera=record.camera,
    )


def _created(info: ObjectInfo) -> dt.datetime | None:
    if not info.created:
        return None
    try:
        return dt.datetime.fromisoformat(info.created.replace("Z", "+00:00"))
    except ValueError:
        return None
