"""The records the service keeps, and the rules for their ids.

`ImageRecord` is the image as Firestore holds it (`aperture.storage.images`
converts both ways); `Principal` is who is calling. Every rule about a team
id, an image id, a role or an object name lives here, once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aperture.domain.errors import ApiError

# -- ids ---------------------------------------------------------------------------

TEAM_ID = re.compile(r"[a-z][a-z0-9-]{1,38}[a-z0-9]")
TEAM_ID_RULE = "3-40 characters: lower-case letters, digits and '-', starting with a letter"
IMAGE_ID = re.compile(r"[0-9a-f]{64}")  # SHA-256 of the bytes, hex
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}")


def object_name(team: str, image_id: str, extension: str) -> str:
    """Where a team image lives in the uploads bucket; generated, never taken from a client."""
    return f"teams/{team}/{image_id}.{extension}"


def rendition_prefix(team: str, image_id: str) -> str:
    """Where an image's cached renditions live in the derived bucket (all deleted with the image)."""
    return f"renditions/{team}/{image_id}/"


def rendition_name(team: str, image_id: str, pipeline: str, extension: str) -> str:
    """The cached rendition of (image, canonical pipeline, format): equal requests share one object."""
    digest = hashlib.sha256(f"{pipeline}\0{extension}".encode()).hexdigest()[:40]
    return f"{rendition_prefix(team, image_id)}{digest}.{extension}"


# -- roles -------------------------------------------------------------------------

ROLES = ("member", "admin", "owner")
_RANK = {role: rank for rank, role in enumerate(ROLES, start=1)}


def role_at_least(role: str, *roles: str) -> bool:
    """Does `role` reach one of `roles` (member < admin < owner)?"""
    return _RANK.get(role, 0) >= min(_RANK[r] for r in roles)


@dataclass(frozen=True)
class Principal:
    """The caller of a /v1 route, as its API key says."""

    key_id: str
    user_id: str
    team: str
    role: str

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    def require_role(self, *roles: str) -> None:
        """403 unless the caller has one of `roles` or a higher one."""
        if not role_at_least(self.role, *roles):
            raise ApiError(403, f"this route needs the {' or '.join(roles)} role; your key has {self.role}")

    def require_team(self, team: str | None, what: str, *, owner_allowed: bool = False) -> None:
        """404, identical to a missing resource, when `team` is not the caller's."""
        if team == self.team or (owner_allowed and self.is_owner):
            return
        raise ApiError(404, f"{what} not found")


# -- images ------------------------------------------------------------------------


class ImageStatus(str, enum.Enum):
    PENDING = "pending"  # filed; `process` has not finished with it
    PROCESSED = "processed"
    FAILED = "failed"  # not decodable after all; `error` says why


@dataclass(frozen=True)
class LabelScore:
    name: str
    score: float


@dataclass(frozen=True)
class Analysis:
    """What `process` adds to a record (S7)."""

    format: str
    mode: str
    width: int
    height: int
    frames: int
    size: int
    exif: dict[str, Any]
    labels: list[LabelScore]
    embedding: list[float]
    provider: str
    embedding_model: str  # which model made `embedding` (VisionProvider.model)
    generation: str
    histograms: dict[str, str]  # where the stored histograms are: bucket, name, generation
    processed_at: dt.datetime
    processing_ms: dict[str, float]

    @property
    def camera(self) -> str | None:
        return self.exif.get("camera")

    @property
    def captured_at(self) -> dt.datetime | None:
        return self.exif.get("captured_at")


@dataclass(frozen=True)
class ImageRecord:
    """A team image. Created `pending` by an upload, completed by `process`."""

    team: str
    id: str
    filename: str
    format: str
    mime_type: str
    extension: str
    size: int
    width: int
    height: int
    frames: int
    mode: str
    bucket: str
    object: str
    created_at: dt.datetime
    uploaded_by: dict[str, Any]
    status: ImageStatus = ImageStatus.PENDING
    error: str | None = None
    generation: str | None = None
    # The EXIF orientation still to apply to width x height to show the image upright (1..8; 5-8
    # swap the sides), read at upload so it is known before `process` has run; 1 for a TIFF, which
    # Pillow turns upright itself. None on records made before it was stored.
    orientation: int | None = None
    # Set once processed:
    exif: dict[str, Any] | None = None
    camera: str | None = None
    captured_at: dt.datetime | None = None
    labels: list[str] = field(default_factory=list)
    label_scores: list[dict[str, Any]] = field(default_factory=list)
    embedding: list[float] | None = field(default=None, repr=False)
    provider: str | None = None
    embedding_model: str | None = None
    histograms: dict[str, str] | None = None
    processed_at: dt.datetime | None = None
    processing_ms: dict[str, float] | None = None
    # Processing attempts of generation `attempt_generation` (an Increment at the
    # start of each); after APERTURE_MAX_PROCESS_ATTEMPTS the record is failed.
    attempts: int = 0
    attempt_generation: str | None = None
    # Set when processing gave up on it (attempts used up) and published it to the
    # dead-letter topic: {"topic", "message_id", "generation", "at"} (DeadLetter).
    dead_letter: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status in (ImageStatus.PROCESSED, ImageStatus.FAILED)

    def with_analysis(self, analysis: Analysis) -> ImageRecord:
        return dataclasses.replace(
            self,
            format=analysis.format,
            mode=analysis.mode,
            width=analysis.width,
            height=analysis.height,
            frames=analysis.frames,
            size=analysis.size,
            exif=analysis.exif,
            camera=analysis.camera,
            captured_at=analysis.captured_at,
            labels=[label.name for label in analysis.labels],
            label_scores=[{"name": label.name, "score": round(label.score, 6)} for label in analysis.labels],
            embedding=list(analysis.embedding),
            provider=analysis.provider,
            embedding_model=analysis.embedding_model,
            generation=analysis.generation,
            histograms=analysis.histograms,
            status=ImageStatus.PROCESSED,
            error=None,
            processed_at=analysis.processed_at,
            processing_ms=analysis.processing_ms,
        )

    def view(self) -> dict[str, Any]:
        """What clients see: every field that is set, never the vector or where the bytes are."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _HIDDEN or value is None:
                continue
            out[f.name] = value.value if isinstance(value, enum.Enum) else value
        if self.embedding is not None:
            out["embedding_dimensions"] = len(self.embedding)
        if self.status is ImageStatus.PENDING:
            out.pop("labels", None), out.pop("label_scores", None)
        return out


_HIDDEN = {"embedding", "histograms", "bucket", "attempt_generation"}


@dataclass(frozen=True)
class DeadLetter:
    """A team image processing gave up on (its attempts used up): what the dead-letter topic carries."""

    bucket: str
    object: str
    generation: str
    team: str
    image_id: str
    attempts: int
    error: str


# -- other records ---------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    name: str
    generation: int
    size: int
    content_type: str | None
    md5_hash: str | None
    # From a finalize event (not filled by `info`): custom metadata, as sorted
    # pairs, and when the object was created (RFC 3339).
    metadata: tuple[tuple[str, str], ...] = ()
    created: str | None = None


@dataclass(frozen=True)
class Team:
    team_id: str
    name: str
    gps_enabled: bool
    created_at: dt.datetime


@dataclass(frozen=True)
class User:
    user_id: str
    team: str
    email: str
    role: str
    created_at: dt.datetime


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    key_hash: str
    prefix: str
    user_id: str
    team: str
    role: str
    issuer: str
    external_name: str | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    # Who made the key: {"key_id", "user_id"} of the admin key that created it through the API,
    # {"via": "bootstrap"} for a platform's first keys; None on records older than the field.
    created_by: dict[str, Any] | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class UploadLink:
    link_id: str  # public id (first 16 hex of the token hash), used for incoming/ object names
    team: str
    max_files: int
    expires_at: dt.datetime
    created_at: dt.datetime
    created_by: dict[str, Any]  # {"key_id", "user_id"} of the key that made it: the link lives no longer than it
    revoked_at: dt.datetime | None = None

    def expired(self, now: dt.datetime | None = None) -> bool:
        return (now or dt.datetime.now(dt.timezone.utc)) >= self.expires_at

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def creator_key_id(self) -> str | None:
        return self.created_by.get("key_id")


@dataclass(frozen=True)
class AccessAttempt:
    method: str
    path: str
    status: int
    outcome: str  # allowed | denied
    reason: str | None
    key_id: str | None
    team: str | None
    user_id: str | None
    client_ip: str | None
    request_id: str | None
    # An upload through a link: the link (its team is `team`), and per file its name, status and id.
    link_id: str | None = None
    files: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Contribution:
    """What one image adds to its team's counters."""

    day: str  # YYYY-MM-DD (UTC) of the upload
    format: str
    camera: str | None


# -- counter keys ------------------------------------------------------------------

COUNTER_KEY_LENGTH = 100  # characters a counter key keeps
OTHER_KEY = "other"  # where a team's cameras beyond its first MAX_CAMERA_KEYS are counted
MAX_CAMERA_KEYS = 100  # distinct camera keys a team's counters hold


def counter_key(text: str | None, max_length: int = COUNTER_KEY_LENGTH) -> str | None:
    """The spelling a counter (and the record's `camera`) uses for `text`: NFC, every run of
    whitespace one space, control and other non-printing characters (Unicode category C)
    removed, trimmed, at most `max_length` characters; None when nothing is left.
    Idempotent, and it never changes letter case (grouping by case is
    `resolve_counter_key`'s)."""
    if not text:
        return None
    text = unicodedata.normalize("NFC", text)
    spaced = "".join(" " if ch.isspace() else ch for ch in text)
    kept = "".join(ch for ch in spaced if not unicodedata.category(ch).startswith("C"))
    key = " ".join(kept.split())[:max_length].rstrip()
    key = unicodedata.normalize("NFC", key)
    return key or None


def counter_fold(key: str) -> str:
    """What makes two keys the same counter: equal up to letter case."""
    return unicodedata.normalize("NFC", key.casefold())


def resolve_counter_key(key: str, known: Mapping[str, str], cap: int = MAX_CAMERA_KEYS) -> tuple[str, bool]:
    """The key a contribution is counted under, given the team's `known` keys (folded -> spelling),
    and whether it is a new key to remember. A key known in any letter case counts under its
    first spelling; a new one is remembered while the team has fewer than `cap` keys; the rest
    count under OTHER_KEY."""
    folded = counter_fold(key)
    if folded in known:
        return known[folded], False
    if folded == counter_fold(OTHER_KEY):
        return OTHER_KEY, False
    if len(known) < cap:
        return key, True
    return OTHER_KEY, False


@dataclass
class Totals:
    days: dict[str, int] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)
    cameras: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredHistograms:
    """Serialized histograms plus what the stats answer reports about the image."""

    payload: bytes
    width: int
    height: int
    mode: str
    format: str | None
    frames: int
