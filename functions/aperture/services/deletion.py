"""Deleting a team image everywhere it lives (spec S8): the counters' share,
the object, its cached renditions, the stored histograms and the record
(which holds the search embedding). Each step is idempotent, so a retried
delete finishes the job."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aperture.domain.records import ImageRecord, rendition_prefix

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from aperture.storage.counters import TeamCounters
    from aperture.storage.histograms import HistogramStore
    from aperture.storage.images import ImageStore
    from aperture.storage.objects import ObjectStore


class ImageDeleter:
    def __init__(
        self,
        objects: ObjectStore,
        images: ImageStore,
        counters: TeamCounters,
        histograms: HistogramStore,
        derived_bucket: str = "",
    ):
        self._objects = objects
        self._derived = derived_bucket
        self._images = images
        self._counters = counters
        self._histograms = histograms

    def delete(self, record: ImageRecord) -> None:
        team, image_id = record.team, record.id
        contribution = self._counters.counted(team, image_id)
        if contribution is not None:
            self._counters.remove(team, image_id, contribution)
        self._objects.delete(record.bucket, record.object)
        if self._derived:
            self._objects.delete_prefix(self._derived, rendition_prefix(team, image_id))
        stored = record.histograms
        if stored:
            self._histograms.delete(stored["bucket"], stored["name"], int(stored["generation"]))
        self._images.delete(team, image_id)
