"""A team's images (spec S8): find, list, delete, read, render, and the team's upload statistics.

Every lookup is scoped to the caller's team: a record of another team is
answered exactly like a missing one (404 "image not found").
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aperture.domain import transforms
from aperture.domain.errors import ApiError, Gone
from aperture.domain.imaging import pixels
from aperture.domain.records import IMAGE_ID, ImageRecord, ObjectInfo, Totals, rendition_name
from aperture.runtime.timing import Timings
from aperture.services.deletion import ImageDeleter

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from aperture.storage.counters import TeamCounters
    from aperture.storage.images import ImageStore
    from aperture.storage.objects import ObjectStore
    from aperture.storage.url_signing import UrlSigner

STATS_DAYS = 30
# Bodies over the response limit are copied to the derived bucket under
# responses/DAY/ (the bucket's lifecycle deletes them two days on) and handed
# out as a V4 signed GET URL valid this long.
RESPONSES_PREFIX = "responses/"
RESPONSE_LINK_SECONDS = 3600


@dataclass(frozen=True)
class Body:
    """What a download answers: the bytes, or, when they are over the response
    limit (API Gateway refuses responses over 32 MiB), a signed URL of a copy."""

    data: bytes = b""
    url: str | None = None


@dataclass(frozen=True)
class Rendition:
    """A converted image: rendered now, or read back from the rendition cache."""

    data: bytes
    mime_type: str
    extension: str
    cached: bool
    name: str | None = None  # its object in the derived bucket, when stored there


class ImageService:
    def __init__(
        self,
        images: ImageStore,
        objects: ObjectStore,
        counters: TeamCounters,
        deleter: ImageDeleter,
        *,
        max_pixels: int,
        max_response_bytes: int = 0,
        derived_bucket: str = "",
        signer: UrlSigner | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
        render_limits: transforms.Limits = transforms.DEFAULT_LIMITS,
    ):
        self._images = images
        self._objects = objects
        self._counters = counters
        self._deleter = deleter
        self._max_pixels = max_pixels
        # 0 (or no signer): every body is answered directly, whatever its size.
        self._max_response_bytes = max_response_bytes if signer is not None and derived_bucket else 0
        self._derived = derived_bucket
        self._signer = signer
        self._clock = clock
        self._render_limits = render_limits  # output pixels and memory budget of every render

    def find(self, team: str, image_id: str) -> ImageRecord:
        """The team's record, or 404, identical for malformed, missing and other teams' ids."""
        record = self._images.get(team, image_id) if IMAGE_ID.fullmatch(image_id) else None
        if record is None:
            raise ApiError(404, "image not found")
        return record

    def list(
        self,
        team: str,
        *,
        filters: dict[str, Any],
        after: dt.datetime | None,
        before: dt.datetime | None,
        limit: int,
        start_after: str | None,
    ) -> list[ImageRecord]:
        records = self._images.list(
            team, filters=filters, after=after, before=before, limit=limit, start_after=start_after
        )
        if records is None:
            raise ApiError(400, "cursor points at an image that was deleted; start again without a cursor")
        return records

    def delete(self, record: ImageRecord) -> None:
        self._deleter.delete(record)

    def stored(self, record: ImageRecord) -> ObjectInfo:
        """The record's object as stored now, or 404 when its bytes are gone."""
        info = self._objects.info(record.bucket, record.object)
        if info is None:
            raise ApiError(404, "image not found")
        return info

    def read(self, info: ObjectInfo) -> bytes:
        return self._objects.read(info)

    def original(self, record: ImageRecord, info: ObjectInfo) -> Body:
        """The stored bytes of `record` (as `info` found them), or a signed URL of a copy when too large."""
        data = self._objects.read(info)
        return self.deliver(record.id, data, record.mime_type, record.extension, f"{record.id}.{record.extension}")

    def deliver(self, key: str, data: bytes, content_type: str, extension: str, filename: str) -> Body:
        """`data` as a response body; over the response limit, a signed URL instead.

        The copy is written create-only to the derived bucket under a name made
        of the day and `key` (what determines the bytes: the image id, or its id,
        pipeline and format), so repeated downloads of a day share one object;
        a name already taken holds the same bytes. The URL is signed for
        RESPONSE_LINK_SECONDS and the copy lives two days (infra/storage.tf)."""
        if not self._max_response_bytes or len(data) <= self._max_response_bytes:
            return Body(data)
        assert self._signer is not None
        now = self._clock()
        digest = hashlib.sha256(f"{key}\0{extension}".encode()).hexdigest()
        name = f"{RESPONSES_PREFIX}{now:%Y-%m-%d}/{digest}.{extension}"
        self._objects.create(self._derived, name, data, content_type)
        url = self._signer.get_url(
            self._derived,
            name,
            now + dt.timedelta(seconds=RESPONSE_LINK_SECONDS),
            disposition=f'inline; filename="{filename}"',
        )
        return Body(url=url)

    def rendition(
        self, record: ImageRecord, pipeline: transforms.Pipeline, extension: str, timings: Timings
    ) -> Rendition:
        """The image with `pipeline` applied as `extension`, from the rendition cache when it is there.

        Renditions are kept in the derived bucket under (team, id, canonical
        pipeline, format), written create-only after the first render, so a
        gallery's thumbnails are rendered once whoever asks; the image's
        deletion removes them (ImageDeleter). The source is content-addressed,
        so a kept rendition never goes stale."""
        name = rendition_name(record.team, record.id, str(pipeline), extension) if self._derived else None
        if name is not None:
            with timings.span("cache"):
                cached = self._read_rendition(name)
            if cached is not None:
                return cached
        out = self.render(record, pipeline, extension, timings)
        if name is not None:
            with timings.span("store"):
                self._objects.create(self._derived, name, out.data, out.mime_type)
        return Rendition(out.data, out.mime_type, out.extension, cached=False, name=name)

    def _read_rendition(self, name: str) -> Rendition | None:
        info = self._objects.info(self._derived, name)
        if info is None:
            return None
        try:
            data = self._objects.read(info)
        except Gone:  # deleted with its image meanwhile: render it again
            return None
        fmt = transforms.output_format(name.rsplit(".", 1)[-1])
        return Rendition(data, info.content_type or fmt.mime_type, fmt.extension, cached=True, name=name)

    def deliver_rendition(self, rendition: Rendition, filename: str) -> Body:
        """A rendition as a response body; over the response limit, a signed URL of its cached object."""
        if not self._max_response_bytes or len(rendition.data) <= self._max_response_bytes or rendition.name is None:
            return self.deliver(filename, rendition.data, rendition.mime_type, rendition.extension, filename)
        assert self._signer is not None
        expires = self._clock() + dt.timedelta(seconds=RESPONSE_LINK_SECONDS)
        disposition = f'inline; filename="{filename}"'
        return Body(url=self._signer.get_url(self._derived, rendition.name, expires, disposition=disposition))

    def render(
        self, record: ImageRecord, pipeline: transforms.Pipeline, extension: str, timings: Timings
    ) -> transforms.Rendered:
        """The image with `pipeline` applied, encoded as `extension`: 400 for bad operations, 422 for bad images."""
        info = self.stored(record)
        with timings.span("download"):
            data = self._objects.read(info)
        try:
            with timings.span("render"):
                [out] = transforms.render(
                    data, pipeline, extension, max_pixels=self._max_pixels, limits=self._render_limits
                )
        except transforms.InvalidOperation as exc:
            raise ApiError(400, str(exc)) from None
        except pixels.ImageError as exc:
            raise exc.refusal() from None
        return out

    def upload_stats(self, team: str, day: dt.date) -> dict[str, Any]:
        return stats_view(self._counters.totals(team), day)


def stats_view(totals: Totals, day: dt.date, days: int = STATS_DAYS) -> dict[str, Any]:
    """S8's dashboard numbers from the counters: no scan of the images."""
    series = []
    for offset in range(days - 1, -1, -1):
        key = (day - dt.timedelta(days=offset)).isoformat()
        series.append({"date": key, "uploads": max(0, totals.days.get(key, 0))})
    formats = {k: v for k, v in totals.formats.items() if v > 0}
    cameras = sorted(((k, v) for k, v in totals.cameras.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))
    popular = max(formats.items(), key=lambda kv: (kv[1], kv[0]))[0] if formats else None
    return {
        "uploads_per_day": series,
        "total_images": sum(formats.values()),
        "most_popular_format": popular,
        "formats": formats,
        "top_cameras": [{"camera": k, "images": v} for k, v in cameras[:10]],
    }
