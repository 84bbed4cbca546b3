"""Deleting a team image everywhere it lives (spec S8): the counters' share,
every stored generation of its bytes (the uploads bucket is versioned: a plain
delete would only make the bytes noncurrent), its cached renditions (every
generation), the outputs of the batch-job items made from it (every
generation; the items' `outputs` are emptied and say so), the stored
histograms and the record (which holds the search embedding). Each step is
idempotent and the record goes last, so a retried delete finishes the job.

A tombstone naming the record goes first (kept `tombstone_seconds`, dropped by
the repair sweep): an upload of the same bytes in flight then answers 409, not
"duplicate", and a processing run in flight takes back the count it adds
(docs/decisions.md, "Deduplication and deletion races").

Job items still queued or running when their input is deleted find the input
gone and fail (`JobWorker._render`); a render already past that check may
write its outputs after this delete (their noncurrent generations then follow
the derived bucket's lifecycle)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from aperture.domain import jobs
from aperture.domain.jobs import ItemState, JobLimits
from aperture.domain.records import ImageRecord, rendition_prefix
from aperture.domain.transforms import InvalidOperation

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from aperture.storage.counters import TeamCounters
    from aperture.storage.histograms import HistogramStore
    from aperture.storage.images import ImageStore
    from aperture.storage.jobs import JobStore, Versioned
    from aperture.storage.objects import ObjectStore

OUTPUTS_DELETED = "the input image was deleted"
# Only the names a pipeline gives matter here, not whether it fits today's limits.
_ANY_PIPELINE = JobLimits(max_operations=10_000, max_output_pixels=10**15)


class ImageDeleter:
    def __init__(
        self,
        objects: ObjectStore,
        images: ImageStore,
        counters: TeamCounters,
        histograms: HistogramStore,
        derived_bucket: str = "",
        jobs: JobStore | None = None,
        tombstone_seconds: float = 86_400.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
        checkpoint: Callable[[str], None] = lambda name: None,
    ):
        self._tombstone_for = dt.timedelta(seconds=tombstone_seconds)
        self._clock = clock
        self._checkpoint = checkpoint
        self._objects = objects
        self._derived = derived_bucket
        self._images = images
        self._counters = counters
        self._histograms = histograms
        self._jobs = jobs

    def delete(self, record: ImageRecord) -> None:
        team, image_id = record.team, record.id
        now = self._clock()
        self._images.put_tombstone(team, image_id, record.created_at, now, now + self._tombstone_for)
        self._checkpoint("delete.after_tombstone")
        contribution = self._counters.counted(team, image_id)
        if contribution is not None:
            self._counters.remove(team, image_id, contribution)
        self._objects.delete_generations(record.bucket, record.object)
        if self._derived:
            self._objects.purge_prefix(self._derived, rendition_prefix(team, image_id))
            if self._jobs is not None:
                self._delete_job_outputs(team, image_id)
        stored = record.histograms
        if stored:
            self._histograms.delete(stored["bucket"], stored["name"], int(stored["generation"]))
        self._checkpoint("delete.before_record")
        self._images.delete(team, image_id)

    def _delete_job_outputs(self, team: str, image_id: str) -> None:
        assert self._jobs is not None
        for current in self._jobs.items_for_image(team, image_id):
            item = current.item
            names = list(item.outputs) or self._planned_outputs(current)
            if not names:
                continue
            base = jobs.prefix(team, item.job_id)
            for name in names:
                self._objects.delete_generations(self._derived, base + name)
            self._jobs.forget_outputs(current, names, OUTPUTS_DELETED)

    def _planned_outputs(self, current: Versioned) -> list[str]:
        """The names an item that has not finished (or failed) may have written: from its job's pipeline."""
        item = current.item
        if item.state is ItemState.DONE or self._jobs is None:
            return []
        found = self._jobs.get(item.job_id)
        if found is None:
            return []
        try:
            pipeline = jobs.stored_pipeline(found[0].pipeline, _ANY_PIPELINE)
        except InvalidOperation:
            return []
        return jobs.outputs_of(item, pipeline)
