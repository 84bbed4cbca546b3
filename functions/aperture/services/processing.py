"""What `process` does with one finalized object (spec S7).

* `incoming/…` in the uploads bucket: a direct upload, filed by `incoming`.
* `teams/{team}/…` in the uploads bucket: a team image. Its record (made by
  the upload) goes pending -> processed | failed with format facts, EXIF,
  histograms, labels and an embedding, and the team's counters count it once.
  An object a plain client wrote there without going through the API is
  validated and filed first, exactly like an API upload.
* the source bucket: histograms are computed ahead of the first stats request.
* anything else is recorded once and otherwise left alone.

Delivery is at least once: every step is idempotent (create-only writes,
status checks, counter markers). Failures are classified (`classify`):

* permanent — the bytes do not decode or are over a limit, the pixel work
  fails on them, a Google service refuses them (400), the record or the
  generation is gone: the record is marked `failed` with the reason at once
  and the event acknowledged (a retry would fail the same way, for up to a
  day of Eventarc's retries);
* transient — anything else (storage or Firestore unavailable, deadlines,
  429/5xx, and whatever is not known to be permanent): the reason is kept in
  the record's `error` and `TransientFailure` is raised, so the event is
  retried with backoff.

Every attempt on a team image is counted first (`attempts`, an Increment on
the record), so a run that never reaches an except clause (timeout, out of
memory) counts too. The attempt that reaches `max_attempts` and fails, or
any attempt beyond it, gives up: it publishes the image (bucket, object,
generation, team, id, attempts, last error) to the processing dead-letter
topic (`dead_letters`; Eventarc owns the storage trigger's subscription, so no
dead-letter policy can do it), names the message in the record's
`dead_letter`, marks the record `failed` with "gave up after N attempts:
<last error>" and is acknowledged. A publish that fails for a passing reason
raises `TransientFailure` before the record changes, so the event comes again
and its attempt (beyond `max_attempts`) gives up again; a redelivery after
the record names a dead letter for that generation publishes none. A publish
refused for good (no such topic, no permission) is logged and the record
failed all the same: it stays the dead letter.

A delete running alongside (docs/decisions.md, "Deduplication and deletion
races"): after counting, the run looks for a tombstone naming its record and,
finding one, takes its count and stored histograms back (the delete may have
looked for the count before it was made); an object the upload API wrote whose
image was deleted is purged, never filed again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aperture.domain import stats as statistics
from aperture.domain.errors import Gone
from aperture.domain.imaging import metadata, pixels
from aperture.domain.records import (
    TEAM_ID,
    Analysis,
    Contribution,
    DeadLetter,
    ImageRecord,
    LabelScore,
    ObjectInfo,
    StoredHistograms,
    counter_key,
)
from aperture.runtime import logs
from aperture.runtime.timing import Timings
from aperture.services import incoming
from aperture.services.uploads import API_WRITE, CREATED, DUPLICATE, UploadService, no_checkpoint

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from aperture.storage.counters import TeamCounters
    from aperture.storage.histograms import HistogramStore
    from aperture.storage.identity import IdentityStore
    from aperture.storage.images import ImageStore
    from aperture.storage.objects import ObjectStore
    from aperture.storage.queue import DeadLetterTopic
    from aperture.storage.upload_links import UploadLinkStore

_TEAM_OBJECT = re.compile(rf"teams/({TEAM_ID.pattern})/([^/]+)")
_CANONICAL = re.compile(r"([0-9a-f]{64})\.(jpg|png|gif|webp|tiff|bmp)")
# How long an object the upload API wrote may wait for its record before it is
# filed like a plain upload (its request must have died between the two writes).
PENDING_RECORD_SECONDS = 60.0


class RecordPending(Exception):
    """The upload API wrote this object and has not committed its record yet: try again later."""


class TransientFailure(Exception):
    """An attempt failed for a passing reason (counted in the record): deliver the event again."""

    def __init__(self, reason: str, attempt: int, max_attempts: int):
        super().__init__(f"attempt {attempt} of {max_attempts}: {reason}")
        self.reason, self.attempt, self.max_attempts = reason, attempt, max_attempts


class PermanentFailure(Exception):
    """What would fail the same way on every delivery (the message is the record's reason)."""


PERMANENT = "permanent"
TRANSIENT = "transient"
# HTTP statuses of Google API errors (their `code`) that refuse the request itself.
_REFUSED = frozenset({400})
# ... and those that refuse a dead letter for as long as the deployment stays as it is
# (no such topic, no permission): retrying the event would not help.
_PUBLISH_REFUSED = frozenset({400, 403, 404})


def classify(exc: BaseException) -> str:
    """PERMANENT or TRANSIENT (whatever is not known to be permanent is retried, a bounded number of times).

    Google's client exceptions are recognised by their HTTP `code` (services do
    not import the client libraries)."""
    if isinstance(exc, (pixels.ImageError, PermanentFailure, Gone)):
        return PERMANENT
    if getattr(exc, "code", None) in _REFUSED:
        return PERMANENT
    return TRANSIENT


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, (pixels.ImageError, PermanentFailure)) else f"{type(exc).__name__}: {text}"


@dataclass
class Processor:
    objects: ObjectStore
    images: ImageStore
    histograms: HistogramStore
    counters: TeamCounters
    identity: IdentityStore
    uploads: UploadService
    links: UploadLinkStore
    provider: Callable[[], Any]  # the vision provider, built on first use
    uploads_bucket: str
    source_bucket: str
    max_pixels: int
    prewarm_source: bool = True
    histogram_max_bytes: int = 900_000
    # 32-bit integer and float images over this many pixels get no histograms
    # (APERTURE_MAX_WIDE_STATS_PIXELS: counting costs memory per distinct value).
    max_wide_pixels: int | None = None
    max_attempts: int = 5  # APERTURE_MAX_PROCESS_ATTEMPTS
    # The processing dead-letter topic, built on first use (a give-up), so a cold start
    # builds no Pub/Sub client; None: the record alone is the dead letter.
    dead_letters: Callable[[], DeadLetterTopic] | None = None
    checkpoint: Callable[[str], None] = no_checkpoint  # a test seam: where a delete may interleave

    def handle(self, info: ObjectInfo) -> str:
        try:
            return self._route(info)
        except Gone:
            # The object or its record went away meanwhile (deleted, or a newer
            # generation replaced it): nothing left to do for this event.
            return "gone: object or record deleted meanwhile"

    def _route(self, info: ObjectInfo) -> str:
        if info.bucket == self.uploads_bucket and incoming.is_incoming(info.name):
            return incoming.file_incoming(info, self.objects, self.links, self.uploads)
        if info.bucket == self.uploads_bucket:
            match = _TEAM_OBJECT.fullmatch(info.name)
            if match:
                return self._team_object(info, *match.groups())
        if info.bucket == self.source_bucket and self.prewarm_source:
            return self._prewarm(info)
        return "ignored"

    # -- team images ------------------------------------------------------------

    def _team_object(self, info: ObjectInfo, team: str, leaf: str) -> str:
        canonical = _CANONICAL.fullmatch(leaf)
        record = self.images.get(team, canonical.group(1)) if canonical else None
        if record is None and canonical and record_on_its_way(info):
            current = self.objects.info(info.bucket, info.name)
            if current is None or current.generation != info.generation:
                # The upload gave up and removed its object (or it was replaced): no record
                # will come for this generation, and waiting for one would only retry the event.
                raise Gone(f"{info.name}#{info.generation} is gone")
            raise RecordPending(f"{info.name} was written by the upload API; its record is not committed yet")
        if record is None and canonical and _api_write(info) and self.images.tombstone(team, canonical.group(1)):
            # Written by an upload that lost a race with the image's delete: not filed again.
            self.objects.purge(info.bucket, info.name, info.generation)
            return "deleted: the image was deleted; object removed"
        if record is None or record.object != info.name:
            return self._file_plain_upload(info, team, leaf)
        if record.finished and record.generation == str(info.generation):
            return f"duplicate event: already {record.status.value}"
        return self._process(info, record)

    def _file_plain_upload(self, info: ObjectInfo, team: str, leaf: str) -> str:
        """An object written straight into teams/{team}/ by a plain client: file it like an API upload."""
        # Rejected bytes are purged, this generation for good (a plain delete in the
        # versioned bucket would keep them as a noncurrent version for weeks).
        if self.identity.get_team(team) is None:
            self.objects.purge(info.bucket, info.name, info.generation)
            return f"rejected: no team {team!r}; object removed"
        data = self.objects.read(info)
        result = self.uploads.add(team, leaf, data, {"plain_client": True, "object": info.name})
        if result.status not in (CREATED, DUPLICATE) or result.id is None:
            self.objects.purge(info.bucket, info.name, info.generation)
            return f"rejected: {result.error}; object removed"
        record = self.images.get(team, result.id)
        if record is None:
            raise Gone(f"record of {result.id} deleted meanwhile")
        if record.object != info.name:
            # Filed under its content id (a new object, whose own event processes it).
            self.objects.delete(info.bucket, info.name, info.generation)
            return f"filed as {record.object}"
        return self._process(info, record)

    def _process(self, info: ObjectInfo, record: ImageRecord) -> str:
        team, image_id, generation = record.team, record.id, str(info.generation)
        attempt = self.images.begin_attempt(record, generation)
        record = dataclasses.replace(record, attempts=attempt, attempt_generation=generation)
        if attempt > self.max_attempts:  # the previous attempt never reached its except clause (or gave up)
            last = record.error or "an attempt did not finish (timeout or out of memory?)"
            return self._give_up(info, record, generation, self.max_attempts, last)
        try:
            return self._analyse(info, record)
        except Gone:
            raise
        except Exception as exc:
            reason = describe(exc)
            if classify(exc) == PERMANENT:
                return self._fail(record, generation, reason)
            if attempt >= self.max_attempts:
                return self._give_up(info, record, generation, attempt, reason)
            self.images.note_error(team, image_id, reason)
            raise TransientFailure(reason, attempt, self.max_attempts) from exc

    def _give_up(self, info: ObjectInfo, record: ImageRecord, generation: str, attempts: int, last: str) -> str:
        """The attempts are used up: dead-letter the image (once per generation), then fail its record."""
        if self.dead_letters is not None and (record.dead_letter or {}).get("generation") != generation:
            letter = DeadLetter(info.bucket, info.name, generation, record.team, record.id, record.attempts, last)
            self._dead_letter(letter)
        return self._fail(record, generation, f"gave up after {attempts} attempts: {last}")

    def _dead_letter(self, letter: DeadLetter) -> None:
        assert self.dead_letters is not None
        try:
            topic = self.dead_letters()
            message_id = topic.publish(letter)
        except Exception as exc:
            if getattr(exc, "code", None) in _PUBLISH_REFUSED:
                logs.warning(
                    "dead letter refused; the failed record is the dead letter",
                    team=letter.team,
                    image_id=letter.image_id,
                    error=describe(exc),
                )
                return
            # Keep the last error for the next delivery, whose attempt gives up again.
            self.images.note_error(letter.team, letter.image_id, letter.error)
            raise TransientFailure(
                f"dead letter not published: {describe(exc)}", letter.attempts, self.max_attempts
            ) from exc
        noted = self.images.note_dead_letter(
            letter.team,
            letter.image_id,
            {
                "topic": topic.name,
                "message_id": message_id,
                "generation": letter.generation,
                "at": dt.datetime.now(dt.timezone.utc),
            },
        )
        logs.info(
            "image dead-lettered" if noted else "image dead-lettered again (the record names an earlier message)",
            team=letter.team,
            image_id=letter.image_id,
            topic=topic.name,
            message_id=message_id,
            attempts=letter.attempts,
        )

    def _fail(self, record: ImageRecord, generation: str, reason: str) -> str:
        self.images.mark_failed(record.team, record.id, reason, generation)
        logs.info("image failed", team=record.team, image_id=record.id, reason=reason, attempts=record.attempts)
        return f"failed: {reason}"

    def _analyse(self, info: ObjectInfo, record: ImageRecord) -> str:
        team, image_id = record.team, record.id
        timings = Timings()
        with timings.span("download"):
            data = self.objects.read(info)
        team_doc = self.identity.get_team(team)
        # The pixel work runs on bytes in memory: what fails in it fails on every
        # delivery (permanent), except running out of memory.
        try:
            with timings.span("decode"):
                image = pixels.open_image(data, max_pixels=self.max_pixels)
                facts = metadata.describe(image, len(data))
            with timings.span("exif"):
                exif = metadata.exif(image, include_gps=bool(team_doc and team_doc.gps_enabled))
            with timings.span("histograms"):
                normalized = pixels.normalize(image)
                bands = statistics.image_histograms(normalized) if self._counts(normalized) else None
        except (pixels.ImageError, MemoryError):
            raise
        except Exception as exc:
            raise PermanentFailure(f"cannot be analysed: {type(exc).__name__}: {exc}") from exc
        camera = counter_key(exif.get("camera"))
        if camera:
            exif["camera"] = camera
        else:
            exif.pop("camera", None)
        with timings.span("firestore"):
            if bands is not None:
                self._store_histograms(info, bands, facts, normalized.mode)
        with timings.span("labels"):
            provider = self.provider()
            labels, embedding = provider.analyze(normalized)
        contribution = Contribution(
            day=record.created_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d"),
            format=facts["format"],
            camera=exif.get("camera"),
        )
        self.checkpoint("process.before_count")
        with timings.span("firestore"):
            self.counters.add(team, image_id, contribution)
        self.checkpoint("process.after_count")
        if self._being_deleted(record):
            # The delete may have looked for the count before it was made: take it back (once, by its marker).
            self.counters.remove(team, image_id, self.counters.counted(team, image_id) or contribution)
            self.histograms.delete(info.bucket, info.name, info.generation)
            raise Gone(f"image {team}/{image_id} is being deleted")
        analysis = Analysis(
            **facts,
            exif=exif,
            labels=[LabelScore(label.name, label.score) for label in labels],
            embedding=list(embedding),
            provider=provider.name,
            embedding_model=provider.model,
            generation=str(info.generation),
            histograms={"bucket": info.bucket, "name": info.name, "generation": str(info.generation)},
            processed_at=dt.datetime.now(dt.timezone.utc),
            processing_ms={k: round(v, 2) for k, v in timings.spans.items()},
        )
        # The record's own write is the last step, so its time is logged, not stored.
        with timings.span("record"):
            self.images.mark_processed(record, analysis)
        logs.info("image processed", team=team, image_id=image_id, timings=timings.spans)
        return "processed"

    def _being_deleted(self, record: ImageRecord) -> bool:
        tombstone = self.images.tombstone(record.team, record.id)
        return tombstone is not None and tombstone.record_created_at == record.created_at

    def _counts(self, image) -> bool:
        """Are the histograms of `image` computed (a wide image over the bound is not counted)?"""
        limit = self.max_wide_pixels
        return limit is None or image.mode not in pixels.WIDE_MODES or image.width * image.height <= limit

    def _store_histograms(self, info: ObjectInfo, bands, facts: dict[str, Any], mode: str) -> None:
        try:
            payload = statistics.serialize(bands, max_bytes=self.histogram_max_bytes)
        except statistics.HistogramTooLarge:
            return  # float images with millions of distinct values: the stats path recomputes
        self.histograms.put(
            info.bucket,
            info.name,
            info.generation,
            StoredHistograms(payload, facts["width"], facts["height"], mode, facts["format"], facts["frames"]),
        )

    # -- source bucket ----------------------------------------------------------

    def _prewarm(self, info: ObjectInfo) -> str:
        if self.histograms.get(info.bucket, info.name, info.generation) is not None:
            return "histograms already stored"
        try:
            image = pixels.open_image(self.objects.read(info), max_pixels=self.max_pixels)
        except pixels.ImageError as exc:
            return f"not an image: {exc}"
        facts = metadata.describe(image, info.size)
        normalized = pixels.normalize(image)
        if not self._counts(normalized):
            return "no histograms: too many pixels for exact statistics of a 32-bit or float image"
        self._store_histograms(info, statistics.image_histograms(normalized), facts, normalized.mode)
        return "histograms stored"


def _api_write(info: ObjectInfo) -> bool:
    return set(API_WRITE.items()) <= set(info.metadata)


def record_on_its_way(info: ObjectInfo, now: dt.datetime | None = None) -> bool:
    """Did the upload API write this object recently enough that its record may still come?"""
    if not _api_write(info) or not info.created:
        return False
    try:
        created = dt.datetime.fromisoformat(info.created.replace("Z", "+00:00"))
    except ValueError:
        return False
    now = now or dt.datetime.now(dt.timezone.utc)
    return (now - created).total_seconds() < PENDING_RECORD_SECONDS
