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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from aperture import logs
from aperture.image_store import ImageStore
from aperture.image_validation import Limits, Rejected, ValidImage, validate
from aperture.object_store import ObjectStore
from aperture.timing import Timings

CREATED, DUPLICATE, REJECTED = "created", "duplicate", "rejected"
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
    image: dict[str, Any] | None = field(default=None, repr=False)

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


def object_name(team: str, image_id: str, extension: str) -> str:
    return f"teams/{team}/{image_id}.{extension}"


class UploadService:
    def __init__(self, objects: ObjectStore, images: ImageStore, bucket: str, limits: Limits,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)):
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
        claim: Callable[[], str | None] | None = None,
        release: Callable[[str], None] | None = None,
        timings: Timings | None = None,
    ) -> FileResult:
        """File one upload. `claim` reserves a slot (upload links) and returns a
        token, or None when none is left; `release` gives it back on failure."""
        timings = timings or Timings()
        with timings.span("validate"):
            checked = self._check((filename, data))
        if isinstance(checked, FileResult):
            return checked
        shown, image_id, *_ = checked
        slot = None
        if claim is not None:
            # Links count files: find duplicates before taking one of the link's slots.
            if self._images.get(team, image_id) is not None:
                return FileResult(shown, DUPLICATE, image_id, status_code=200)
            slot = claim()
            if slot is None:
                return FileResult(shown, REJECTED, error="this upload link has no files left", status_code=410)
        written = self._write_valid(team, checked)
        with timings.span("write"):
            try:
                [result] = self._commit(team, [written], uploaded_by, reraise=True)
            except Exception:
                if release and slot:
                    release(slot)
                raise
        if result.status != CREATED and release and slot:
            release(slot)
        return result

    def start(self, team: str, filename: str | None, data: bytes) -> Future:
        """Validate one file and, if it passes, start writing its object, while the
        rest of its request is still arriving. Pass the futures to `add_many`, or
        to `abandon` when the request is refused after all."""
        return self._validators.submit(lambda: self._write_valid(team, self._check((filename, data))))

    def abandon(self, team: str, started: list[Future]) -> None:
        """The request of these `start`s is refused: remove the objects they wrote that no record needs."""
        for future in started:
            try:
                checked = future.result()
            except Exception:
                logs.exception("upload check failed", team=team)
                continue
            if not isinstance(checked, FileResult):
                _, image_id, _, image, writing = checked
                self._undo_object(writing, {"team": team, "id": image_id,
                                            "object": object_name(team, image_id, image.extension)})

    def add_many(
        self, team: str, files: list[tuple[str | None, bytes]], uploaded_by: dict[str, Any],
        timings: Timings | None = None, started: list[Future] | None = None,
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
            checked = [future.result() for future in started]
        results: list[FileResult | None] = [c if isinstance(c, FileResult) else None for c in checked]
        accepted = [(i, c) for i, c in enumerate(checked) if not isinstance(c, FileResult)]
        if not accepted:
            return results  # type: ignore[return-value]
        with timings.span("write"):
            committed = self._commit(team, [c for _, c in accepted], uploaded_by)
        for (index, _), result in zip(accepted, committed):
            results[index] = result
        return results  # type: ignore[return-value]

    def _commit(self, team: str, accepted: list[tuple], uploaded_by: dict[str, Any], *,
                reraise: bool = False) -> list[FileResult]:
        """Create the records of validated files whose object writes are under way.

        The record is the arbiter: created means this upload made the image,
        AlreadyExists means the same bytes were filed before (the object is
        content-addressed, so whoever wrote it wrote the same bytes: kept).
        A failed record commit removes the objects no record needs; a failed
        object write removes the record again, so nothing half-made remains.
        """
        records = [self._record(team, image_id, shown, data, image, uploaded_by)
                   for shown, image_id, data, image, _ in accepted]
        try:
            created = self._images.create_all(records)
        except Exception:
            for (*_, writing), record in zip(accepted, records):
                self._undo_object(writing, record)
            raise
        results = []
        for (shown, image_id, _, _, writing), record, made in zip(accepted, records, created):
            try:
                writing.result()
            except Exception:
                if made:
                    self._images.delete(team, image_id)
                logs.exception("upload write failed; record rolled back", team=team, image_id=image_id)
                if reraise:
                    raise
                results.append(FileResult(shown, REJECTED, error="storage write failed; try again", status_code=503))
                continue
            results.append(FileResult(shown, CREATED, image_id, status_code=201, image=record) if made
                           else FileResult(shown, DUPLICATE, image_id, status_code=200))
        return results

    def _write_valid(self, team: str, checked):
        """Start the object write of a file that passed `_check`; a rejection passes through."""
        if isinstance(checked, FileResult):
            return checked
        shown, image_id, data, image = checked
        name = object_name(team, image_id, image.extension)
        return shown, image_id, data, image, self._writers.submit(
            self._objects.create, self._bucket, name, data, image.mime_type, API_WRITE)

    def _check(self, item: tuple[str | None, bytes]) -> FileResult | tuple[str, str, bytes, ValidImage]:
        filename, data = item
        shown = (filename or "")[:MAX_FILENAME]
        try:
            shown = clean_filename(filename)
            image = validate(data, self._limits)
        except Rejected as exc:
            return FileResult(shown, REJECTED, error=exc.reason, status_code=exc.status)
        return shown, hashlib.sha256(data).hexdigest(), data, image

    def _undo_object(self, writing, record: dict[str, Any]) -> None:
        """The record could not be written: remove the object unless another upload's record needs it."""
        try:
            if writing.result() and self._images.get(record["team"], record["id"]) is None:
                self._objects.delete(self._bucket, record["object"])
        except Exception:
            logs.exception("could not undo object write", object=record["object"])

    def _record(self, team: str, image_id: str, filename: str, data: bytes, image: ValidImage,
                uploaded_by: dict[str, Any]) -> dict[str, Any]:
        return {
            "team": team,
            "id": image_id,
            "filename": filename,
            "format": image.format,
            "mime_type": image.mime_type,
            "extension": image.extension,
            "size": len(data),
            "width": image.width,
            "height": image.height,
            "frames": image.frames,
            "mode": image.mode,
            "bucket": self._bucket,
            "object": object_name(team, image_id, image.extension),
            "status": "pending",
            "created_at": self._clock(),
            "uploaded_by": uploaded_by,
        }


def overall_status(results: list[FileResult]) -> int:
    """201 if any file was created, 200 if the rest were duplicates, else the rejections' status."""
    statuses = {r.status for r in results}
    if CREATED in statuses:
        return 201
    if DUPLICATE in statuses:
        return 200
    codes = {r.status_code for r in results}
    return codes.pop() if len(codes) == 1 else 422
