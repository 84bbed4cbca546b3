"""Batch jobs (spec S9): submit, follow, cancel, download; and the worker that runs one item.

Submitting checks the whole request (operations, inputs, outputs, sizes)
before anything is stored or queued, so a bad job leaves nothing. Each item is
one Pub/Sub message; the worker (the `transform` function) claims the item
with a precondition, renders it, writes its outputs create-only into the
derived bucket and finishes the item with another precondition, so a
redelivered or duplicated message neither counts twice nor rewrites an output.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import secrets
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aperture.domain import jobs, transforms
from aperture.domain.errors import ApiError, Gone
from aperture.domain.imaging import pixels
from aperture.domain.jobs import Counts, JobItem, JobLimits, JobRecord
from aperture.domain.records import IMAGE_ID, ImageRecord, ImageStatus, ObjectInfo, Principal
from aperture.runtime import logs
from aperture.services.images import RESPONSE_LINK_SECONDS, Body

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from collections.abc import Callable

    from aperture.storage.images import ImageStore
    from aperture.storage.jobs import JobStore
    from aperture.storage.objects import ObjectStore
    from aperture.storage.queue import JobQueue
    from aperture.storage.url_signing import UrlSigner

MAX_PAGE = 100


@dataclass(frozen=True)
class JobView:
    job: JobRecord
    counts: Counts
    items: list[JobItem] | None = None


class JobService:
    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        images: ImageStore,
        objects: ObjectStore,
        *,
        derived_bucket: str,
        limits: JobLimits,
        clock: Callable[[], dt.datetime],
        signer: UrlSigner | None = None,
        max_response_bytes: int = 0,
        render_limits: transforms.Limits = transforms.DEFAULT_LIMITS,
    ):
        self._store = store
        self._queue = queue
        self._images = images
        self._objects = objects
        self._derived = derived_bucket
        self._limits = limits
        self._clock = clock
        self._signer = signer
        self._max_response_bytes = max_response_bytes
        self._render_limits = render_limits  # the workers' output pixels and memory budget

    def submit(self, principal: Principal, body: Any) -> JobRecord:
        principal.require_role("member")
        request = jobs.parse_request(body, self._limits)
        sources = self._resolve(principal.team, [item.input for item in request.items])
        job_id = "job_" + secrets.token_hex(10)
        items: list[JobItem] = []
        written: dict[str, int] = {}
        rendered_as = for_render(request.pipeline, self._render_limits)  # as the worker will plan each item
        for index, (spec, record) in enumerate(zip(request.items, sources)):
            where = f"images[{index}]"
            size = upright_size(record)
            output = transforms.output_format(jobs.output_extension(spec.output) or record.extension)
            try:
                request.pipeline.plan(size)
                # What the worker's render would refuse from the header is refused before queueing.
                transforms.check_render(rendered_as, size, record.mode, output, record.format, record.frames)
            except transforms.InvalidOperation as exc:
                raise ApiError(400, f"{where} ({size[0]}x{size[1]}): {exc}") from None
            extension = output.extension
            item = JobItem(job_id, index, spec.input, record.id, record.bucket, record.object, spec.output, extension)
            for name in jobs.outputs_of(item, request.pipeline):  # names with the input's extension filled in
                if name in written:
                    raise ApiError(400, f"{where}: output {name!r} is also written by images[{written[name]}]")
                written[name] = index
            items.append(item)
        job = JobRecord(
            job_id,
            principal.team,
            request.operations,
            str(request.pipeline),
            len(items),
            self._clock(),
            {"key_id": principal.key_id, "user_id": principal.user_id},
        )
        self._store.create(job, items)
        try:
            self._queue.publish(principal.team, job_id, range(len(items)))
        except Exception:
            logs.exception("publishing a job failed; cancelling it", job_id=job_id)
            self._store.cancel(job_id)
            raise ApiError(
                503,
                "the job queue is unavailable; the job was cancelled before it ran, try again",
                {"Retry-After": "10"},
            ) from None
        return job

    def _resolve(self, team: str, inputs: list[str]) -> list[ImageRecord]:
        """Each input's record: an image id, an object name `teams/{team}/{id}.{ext}`, or a filename."""
        ids = {source: _image_id(team, source) for source in inputs}
        found = self._images.get_many(team, [i for i in ids.values() if i])
        records = []
        for index, source in enumerate(inputs):
            where = f"images[{index}]"
            record = found.get(ids[source] or "")
            if record is None and ids[source] is None:
                named = self._images.find_by_filename(team, source)
                if len(named) > 1:
                    raise ApiError(400, f"{where}: several of your images are named {source!r}; give the image id")
                record = named[0] if named else None
            if record is None:
                raise ApiError(404, f"{where}: input {source!r} not found among your team's images")
            if record.status is ImageStatus.FAILED:
                raise ApiError(400, f"{where}: input {source!r} is not a readable image ({record.error})")
            records.append(record)
        return records

    def get(self, principal: Principal, job_id: str, *, with_items: bool = True) -> JobView:
        found = self._store.get(job_id) if jobs.JOB_ID.fullmatch(job_id) else None
        if found is None or found[0].team != principal.team:
            raise ApiError(404, "job not found")
        job, counts = found
        return JobView(job, counts, self._store.items(job_id) if with_items else None)

    def list(self, principal: Principal, *, limit: int, start_after: str | None) -> tuple[list[JobView], str | None]:
        """A page of the team's jobs, newest first, and the cursor of the next page (None at the end)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ApiError(400, f"limit must be an integer from 1 to {MAX_PAGE}")
        found = self._store.list(principal.team, limit=limit + 1, start_after=start_after)
        if found is None:
            raise ApiError(400, "cursor is not one of your jobs; start again without a cursor")
        page = [JobView(job, counts) for job, counts in found[:limit]]
        return page, page[-1].job.job_id if len(found) > limit else None

    def cancel(self, principal: Principal, job_id: str) -> JobView:
        principal.require_role("member")
        self.get(principal, job_id, with_items=False)
        self._store.cancel(job_id)
        return self.get(principal, job_id)

    def output(self, principal: Principal, job_id: str, name: str) -> tuple[ObjectInfo, Body]:
        """One output of a finished item of the caller's job: its bytes, or, over the response
        limit (API Gateway refuses responses over 32 MiB), a signed URL of the object itself."""
        view = self.get(principal, job_id)
        if not any(name in item.outputs for item in view.items or ()):
            raise ApiError(404, "output not found")
        info = self._objects.info(self._derived, jobs.prefix(principal.team, job_id) + name)
        if info is None:
            raise ApiError(404, "output not found")
        if self._signer is not None and 0 < self._max_response_bytes < info.size:
            expires = self._clock() + dt.timedelta(seconds=RESPONSE_LINK_SECONDS)
            leaf = name.rsplit("/", 1)[-1]
            return info, Body(
                url=self._signer.get_url(info.bucket, info.name, expires, disposition=f'attachment; filename="{leaf}"')
            )
        return info, Body(self._objects.read(info))


@dataclass(frozen=True)
class Faults:
    """Failures injected by configuration (APERTURE_JOB_FAULTS), to test redelivery and dead letters:
    ``once:NAME`` fails an item's first run, ``always:NAME`` every run, for items whose output contains NAME."""

    once: tuple[str, ...] = ()
    always: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Faults:
        once: list[str] = []
        always: list[str] = []
        for entry in filter(None, (part.strip() for part in text.split(","))):
            kind, _, name = entry.partition(":")
            {"once": once, "always": always}.get(kind, []).append(name)
        return cls(tuple(once), tuple(always))

    def check(self, item: JobItem) -> None:
        if any(name in item.output for name in self.always) or (
            item.attempts == 1 and any(name in item.output for name in self.once)
        ):
            raise InjectedFault(f"injected fault on {item.output!r} (attempt {item.attempts})")


class InjectedFault(RuntimeError):
    pass


class JobWorker:
    def __init__(
        self,
        store: JobStore,
        objects: ObjectStore,
        *,
        derived_bucket: str,
        max_pixels: int,
        limits: JobLimits = JobLimits(),
        render_limits: transforms.Limits = transforms.DEFAULT_LIMITS,
        faults: Faults = Faults(),
    ):
        self._store = store
        self._objects = objects
        self._derived = derived_bucket
        self._max_pixels = max_pixels
        self._limits = limits
        self._render_limits = render_limits  # output pixels and memory budget of every item
        self._faults = faults
        self._name = f"{socket.gethostname()}:{os.getpid()}"

    def run(self, job_id: str, index: int) -> str:
        """Run one item; what happened. Raises on a transient failure, so the message is delivered again."""
        current = self._store.item(job_id, index)
        if current is None:
            return "gone: no such item"
        if current.item.state.finished:
            return f"duplicate: already {current.item.state.value}"
        found = self._store.get(job_id)
        if found is None:
            return "gone: no such job"
        job, _ = found
        claimed = self._store.start(current, self._name)
        if claimed is None:
            return "duplicate: another delivery changed the item"
        item = claimed.item
        try:
            self._faults.check(item)
            outputs = self._render(job, item)
        except (transforms.InvalidOperation, pixels.ImageError, Gone) as exc:
            self._store.fail(claimed, str(exc))  # permanent: the same bytes fail the same way
            return f"failed: {exc}"
        except Exception as exc:
            self._store.note_error(claimed, f"{type(exc).__name__}: {exc}")
            raise
        if not self._store.finish(claimed, outputs):
            return "duplicate: finished by another delivery"
        return "done"

    def give_up(self, job_id: str, index: int, deliveries: int) -> str:
        """The dead-letter path: the item's message was delivered `deliveries` times without success."""
        current = self._store.item(job_id, index)
        if current is None or current.item.state.finished:
            return "nothing to do"
        reason = f"gave up after {deliveries} deliveries: {current.item.error or 'no error recorded'}"
        return "failed" if self._store.fail(current, reason) else "changed meanwhile"

    def _render(self, job: JobRecord, item: JobItem) -> list[str]:
        source = self._objects.info(item.source_bucket, item.source_object)
        if source is None:
            raise Gone(f"the input image {item.image_id} was deleted")
        pipeline = jobs.stored_pipeline(job.pipeline, self._limits)
        rendered = transforms.render(
            self._objects.read(source),
            pipeline,
            item.extension,
            max_pixels=self._max_pixels,
            limits=for_render(pipeline, self._render_limits).limits,
        )
        names = jobs.outputs_of(item, pipeline)
        base = jobs.prefix(job.team, job.job_id)
        for name, out in zip(names, rendered):
            # Create-only: a redelivery finds the first attempt's output and leaves it.
            self._objects.create(self._derived, base + name, out.data, out.mime_type, {"aperture-job": job.job_id})
        return names


def for_render(pipeline: transforms.Pipeline, render_limits: transforms.Limits) -> transforms.Pipeline:
    """`pipeline` planned against the service's output-pixel and memory limits, as items are rendered."""
    limits = dataclasses.replace(
        pipeline.limits,
        max_output_pixels=render_limits.max_output_pixels,
        max_render_bytes=render_limits.max_render_bytes,
    )
    return transforms.Pipeline(pipeline.ops, limits)


def upright_size(record: ImageRecord) -> tuple[int, int]:
    """The size `render` plans on: the stored size, turned when the orientation still to apply
    swaps the sides (read at upload; records made before it was stored use the processed EXIF's)."""
    orientation = record.orientation
    if orientation is None:  # a record made before it was stored: its processed EXIF's (TIFFs are upright)
        orientation = 1 if record.format == "TIFF" else (record.exif or {}).get("orientation")
    return (record.height, record.width) if orientation in (5, 6, 7, 8) else (record.width, record.height)


def _image_id(team: str, source: str) -> str | None:
    if IMAGE_ID.fullmatch(source):
        return source
    prefix = f"teams/{team}/"
    if source.startswith(prefix):
        stem = source[len(prefix) :].rsplit(".", 1)[0]
        return stem if IMAGE_ID.fullmatch(stem) else None
    return None
