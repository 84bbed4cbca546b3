"""Filing uploaded images: validate, address by content, store once.

The image id is the SHA-256 of the bytes; the object name is generated
(`teams/{team}/{id}.{ext}`), never taken from the client. The object write
starts as soon as a file is valid and is create-only; the Firestore record,
create-only too, is the arbiter when the same bytes arrive concurrently. A
failed record commit removes the objects no record needs and a failed write
removes the record again, so a rejected or failed file leaves nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import unicodedata
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aperture.domain.imaging.validation import Limits, Rejected, ValidImage, validate
from aperture.domain.records import ImageRecord, object_name
from aperture.runtime import logs
from aperture.runtime.timing import Timings

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from aperture.storage.images import ImageStore
    from aperture.storage.objects import ObjectStore

CREATED, DUPLICATE, REJECTED = "created", "duplicate", "rejected"
BEING_DELETED = "this image is being deleted; upload it again once the delete has finished"


def no_checkpoint(name: str) -> None:
    """The default test seam: does nothing."""


MAX_FILENAME = 255
# Custom metadata on objects this service writes: their record is on its way,
# so `process` waits for it rather than filing the object as a plain upload.
API_WRITE = {"aperture-upload": "api"}


@dataclass
class FileResult:
    filename: str
    status: str
    id: str | None = None
    error: str | None = None
    status_code: int = 201
    image: ImageRecord | None = field(default=None, repr=False)

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"filename": self.filename, "id": self.id, "status": self.status}
        if self.error:
            out["error"] = self.error
            out["status_code"] = self.status_code
        return out


def clean_filename(raw: str | None) -> str:
    """The name shown back to people: last path component, NFC. Raises Rejected if unusable."""
    name = unicodedata.normalize("NFC", raw or "")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise Rejected(400, "filename contains control characters (NUL, newline, …)")
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if len(name) > MAX_FILENAME:
        raise Rejected(400, f"filename is longer than {MAX_FILENAME} characters")
    return name or "unnamed"


@dataclass(frozen=True)
class CheckedFile:
    """A file that passed validation: what it is and where it will live."""

    shown: str  # the filename shown back to people
    image_id: str
    data: bytes = field(repr=False)
    image: ValidImage

    def object_name(self, team: str) -> str:
        return object_name(team, self.image_id, self.image.extension)


@dataclass(frozen=True)
class PendingWrite:
    """A checked file whose create-only object write is under way."""

    file: CheckedFile
    writing: Future  # resolves to the generation this write created, or None when the name was taken


@dataclass(frozen=True)
class LinkSlots:
    """How an upload link counts files: `claim` reserves a slot and returns its token, or
    None when none is left; `release` gives a slot back when its file is not filed."""

    claim: Callable[[], str | None]
    release: Callable[[str], None]


class UploadService:
    def __init__(
        self,
        objects: ObjectStore,
        images: ImageStore,
        bucket: str,
        limits: Limits,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
        checkpoint: Callable[[str], None] = no_checkpoint,
    ):
        self._checkpoint = checkpoint
        self._objects = objects
        self._images = images
        self._bucket = bucket
        self._limits = limits
        self._clock = clock
        self._writers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="upload-write")
        # Decoding releases the GIL: one validator per core is enough.
        self._validators = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="validate")

    @property
    def max_file_bytes(self) -> int:
        return self._limits.max_file_bytes

    def add(
        self,
        team: str,
        filename: str | None,
        data: bytes,
        uploaded_by: dict[str, Any],
        slots: LinkSlots | None = None,
        timings: Timings | None = None,
    ) -> FileResult:
        """File one upload; with `slots` (upload links) it takes one of the link's slots.

        Through a link, the slot is taken before the file is validated and a file
        refused by validation keeps it: a link admits at most `max_files` files
        however many are refused, so it cannot be used to spend CPU without bound.
        A duplicate (the same bytes were filed, so validated, before: found by
        content id) takes no slot; a failed write gives its slot back.
        """
        timings = timings or Timings()
        slot = None
        if slots is not None:
            try:
                shown = clean_filename(filename)
            except Rejected as exc:
                return FileResult((filename or "")[:MAX_FILENAME], REJECTED, error=exc.reason, status_code=exc.status)
            image_id = hashlib.sha256(data).hexdigest()
            if self._needs_object(team, image_id):  # filed and not being deleted
                return FileResult(shown, DUPLICATE, image_id, status_code=200)
            slot = slots.claim()
            if slot is None:
                return FileResult(shown, REJECTED, error="this upload link has no files left", status_code=410)
        with timings.span("validate"):
            checked = self._check(filename, data)
        if isinstance(checked, FileResult):
            return checked  # through a link, the refused file keeps its slot
        written = PendingWrite(checked, self._start_write(team, checked))
        with timings.span("write"):
            try:
                [result] = self._commit(team, [written], uploaded_by, reraise=True)
            except Exception:
                if slots and slot:
                    slots.release(slot)
                raise
        if result.status != CREATED and slots and slot:
            slots.release(slot)
        return result

    def start(self, team: str, filename: str | None, data: bytes) -> Future:
        """Validate one file and, if it passes, start writing its object, while the
        rest of its request is still arriving. Pass the futures to `add_many`, or
        to `abandon` when the request is refused after all."""
        return self._validators.submit(lambda: self._write_valid(team, self._check(filename, data)))

    def abandon(self, team: str, started: list[Future]) -> None:
        """The request of these `start`s is refused: remove the objects they wrote that no record needs."""
        for future in started:
            try:
                checked = future.result()
            except Exception:
                logs.exception("upload check failed", team=team)
                continue
            if isinstance(checked, PendingWrite):
                self._undo_object(team, checked)

    def add_many(
        self,
        team: str,
        files: list[tuple[str | None, bytes]],
        uploaded_by: dict[str, Any],
        timings: Timings | None = None,
        started: list[Future] | None = None,
    ) -> list[FileResult]:
        """File several uploads at once, with the same outcome per file as `add`.

        `started` are the files' `start`s when the caller began them early.
        Each file's object write starts as soon as that file is validated, so
        storage I/O overlaps the validation of the others (and, from `start`,
        the arrival of later files); the records then go in one commit.
        Objects are content-addressed and marked `API_WRITE`, so writing one
        before its record is safe: a duplicate rewrites nothing, `process`
        waits for the record instead of filing the object itself, and a failed
        commit removes the objects nobody else's record needs.
        """
        timings = timings or Timings()
        if started is None:
            started = [self.start(team, name, data) for name, data in files]
        with timings.span("validate"):
            checked: list[FileResult | PendingWrite] = [future.result() for future in started]
        accepted = [(i, c) for i, c in enumerate(checked) if isinstance(c, PendingWrite)]
        if accepted:
            with timings.span("write"):
                committed = self._commit(team, [c for _, c in accepted], uploaded_by)
            for (index, _), result in zip(accepted, committed):
                checked[index] = result
        return [c for c in checked if isinstance(c, FileResult)]

    def _commit(
        self, team: str, accepted: list[PendingWrite], uploaded_by: dict[str, Any], *, reraise: bool = False
    ) -> list[FileResult]:
        """Create the records of validated files whose object writes are under way.

        The record is the arbiter: created means this upload made the image,
        AlreadyExists means the same bytes were filed before (the object is
        content-addressed, so whoever wrote it wrote the same bytes: kept).
        A failed record commit removes the objects no record needs; a failed
        object write removes the record again, so nothing half-made remains.
        """
        records = [self._record(team, pending.file, uploaded_by) for pending in accepted]
        self._checkpoint("upload.before_record")
        try:
            created = self._images.create_all(records)
        except Exception:
            for pending in accepted:
                self._undo_object(team, pending)
            raise
        results = []
        for pending, record, made in zip(accepted, records, created):
            shown, image_id = pending.file.shown, pending.file.image_id
            try:
                pending.writing.result()
            except Exception:
                if made:
                    self._images.delete(team, image_id)
                logs.exception("upload write failed; record rolled back", team=team, image_id=image_id)
                if reraise:
                    raise
                results.append(FileResult(shown, REJECTED, error="storage write failed; try again", status_code=503))
                continue
            if made:
                results.append(FileResult(shown, CREATED, image_id, status_code=201, image=record))
            elif self._needs_object(team, image_id):
                results.append(FileResult(shown, DUPLICATE, image_id, status_code=200))
            else:  # the record found is being deleted: not a duplicate of anything that will remain
                self._undo_object(team, pending)
                results.append(FileResult(shown, REJECTED, image_id, error=BEING_DELETED, status_code=409))
        made_here = [pending for pending, made in zip(accepted, created) if made]
        if made_here:
            self._checkpoint("upload.after_record")
            list(self._writers.map(lambda pending: self._ensure_object(team, pending.file), made_here))
        return results

    def _needs_object(self, team: str, image_id: str) -> bool:
        """Is there a record of this image that is not being deleted (no tombstone names it)?"""
        record = self._images.get(team, image_id)
        if record is None:
            return False
        tombstone = self._images.tombstone(team, image_id)
        return tombstone is None or tombstone.record_created_at != record.created_at

    def _ensure_object(self, team: str, file: CheckedFile) -> None:
        """After creating a record: its object is there, or is written again from the bytes at hand
        (an undo, a delete or the repair sweep may have removed the generation it relied on)."""
        name = file.object_name(team)
        try:
            if self._objects.info(self._bucket, name) is None:
                self._restore(team, file)
                logs.info("upload object restored after a concurrent delete", team=team, image_id=file.image_id)
        except Exception:  # the record stays pending; the repair sweep deletes it if the object never comes
            logs.exception("could not check the object of a new record", team=team, object=name)

    def _restore(self, team: str, file: CheckedFile) -> None:
        self._objects.create(self._bucket, file.object_name(team), file.data, file.image.mime_type, API_WRITE)

    def _write_valid(self, team: str, checked: FileResult | CheckedFile) -> FileResult | PendingWrite:
        """Start the object write of a file that passed `_check`; a rejection passes through."""
        if isinstance(checked, FileResult):
            return checked
        return PendingWrite(checked, self._start_write(team, checked))

    def _start_write(self, team: str, checked: CheckedFile) -> Future:
        return self._writers.submit(
            self._objects.create,
            self._bucket,
            checked.object_name(team),
            checked.data,
            checked.image.mime_type,
            API_WRITE,
        )

    def _check(self, filename: str | None, data: bytes) -> FileResult | CheckedFile:
        shown = (filename or "")[:MAX_FILENAME]
        try:
            shown = clean_filename(filename)
            image = validate(data, self._limits)
        except Rejected as exc:
            return FileResult(shown, REJECTED, error=exc.reason, status_code=exc.status)
        return CheckedFile(shown, hashlib.sha256(data).hexdigest(), data, image)

    def _undo_object(self, team: str, pending: PendingWrite) -> None:
        """The record could not be written: remove the object unless another upload's record needs it.

        Only the generation this upload wrote is deleted (purged), and a record that came
        while it was being deleted gets its bytes back (create-only): the other
        upload's own check after its record (`_ensure_object`) covers the other order.
        """
        name, image_id = pending.file.object_name(team), pending.file.image_id
        try:
            generation = pending.writing.result()
            if not generation or self._needs_object(team, image_id):
                return
            self._checkpoint("upload.undo.before_delete")
            # Exactly this generation, for good (a plain delete in the versioned bucket would keep it).
            self._objects.purge(self._bucket, name, generation)
            self._checkpoint("upload.undo.after_delete")
            if self._needs_object(team, image_id):
                self._restore(team, pending.file)
        except Exception:
            logs.exception("could not undo object write", object=name)

    def _record(self, team: str, file: CheckedFile, uploaded_by: dict[str, Any]) -> ImageRecord:
        image = file.image
        return ImageRecord(
            team=team,
            id=file.image_id,
            filename=file.shown,
            format=image.format,
            mime_type=image.mime_type,
            extension=image.extension,
            size=len(file.data),
            width=image.width,
            height=image.height,
            frames=image.frames,
            mode=image.mode,
            orientation=image.orientation,
            bucket=self._bucket,
            object=file.object_name(team),
            created_at=self._clock(),
            uploaded_by=uploaded_by,
        )


def overall_status(results: list[FileResult]) -> int:
    """201 if any file was created, 200 if the rest were duplicates, else the rejections' status."""
    statuses = {r.status for r in results}
    if CREATED in statuses:
        return 201
    if DUPLICATE in statuses:
        return 200
    codes = {r.status_code for r in results}
    return codes.pop() if len(codes) == 1 else 422
