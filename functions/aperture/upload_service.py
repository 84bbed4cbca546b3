"""Filing uploaded images: validate, address by content, store once.

The image id is the SHA-256 of the bytes; the object name is generated
(`teams/{team}/{id}.{ext}`), never taken from the client. The Firestore
record is created first and create-only: it is the arbiter when the same
bytes arrive concurrently. The object write is create-only too, and a failed
write removes the record again, so a rejected or failed file leaves nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable

from aperture import logs
from aperture.image_store import ImageStore
from aperture.image_validation import Limits, Rejected, ValidImage, validate
from aperture.object_store import ObjectStore

CREATED, DUPLICATE, REJECTED = "created", "duplicate", "rejected"
MAX_FILENAME = 255


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
    def __init__(self, objects: ObjectStore, images: ImageStore, bucket: str, limits: Limits):
        self._objects = objects
        self._images = images
        self._bucket = bucket
        self._limits = limits

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
    ) -> FileResult:
        """File one upload. `claim` reserves a slot (upload links) and returns a
        token, or None when none is left; `release` gives it back on failure."""
        shown = (filename or "")[:MAX_FILENAME]
        try:
            shown = clean_filename(filename)
            image = validate(data, self._limits)
        except Rejected as exc:
            return FileResult(shown, REJECTED, error=exc.reason, status_code=exc.status)
        image_id = hashlib.sha256(data).hexdigest()
        if self._images.get(team, image_id) is not None:
            return FileResult(shown, DUPLICATE, image_id, status_code=200)
        slot = None
        if claim is not None:
            slot = claim()
            if slot is None:
                return FileResult(shown, REJECTED, error="this upload link has no files left", status_code=410)
        record = self._record(team, image_id, shown, data, image, uploaded_by)
        if not self._images.create(record):
            if release and slot:
                release(slot)
            return FileResult(shown, DUPLICATE, image_id, status_code=200)
        try:
            written = self._objects.create(self._bucket, record["object"], data, image.mime_type)
        except Exception:
            self._images.delete(team, image_id)
            if release and slot:
                release(slot)
            logs.exception("upload write failed; record rolled back", team=team, image_id=image_id)
            raise
        if not written:
            # Same bytes already stored under this name (e.g. a plain-client copy): the record is now its record.
            logs.info("object already present; record created for it", team=team, image_id=image_id)
        return FileResult(shown, CREATED, image_id, status_code=201, image=record)

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
            "created_at": dt.datetime.now(dt.timezone.utc),
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
