"""In-memory stand-ins for Aperture's own repositories (aperture.storage), for service unit tests.

Each fake has the method names, signatures and observable semantics of the
repository it replaces, for the methods the services call:

* create-only writes return False (or raise what the real one raises) when
  the thing is already there, and change nothing;
* what the real repositories report as `domain.errors.Gone` (a record or
  an object generation deleted meanwhile) the fakes report so too; where
  the real one lets a Google exception through (a key update, a streamed
  read), the fake raises that same exception type;
* image records go in and come out as copies, never the caller's own object.

They fake our repositories, never the Google client libraries. Test-only
helpers that the real repositories do not have are marked "test helper".
To make a call fail, a test replaces the method on the instance, e.g.
``images.create_all = raising(ServiceUnavailable("down"))``.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import math
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from google.api_core import exceptions as gexc

from aperture.domain import keys
from aperture.domain.errors import AlreadyExists, Gone
from aperture.domain.jobs import Counts, ItemState, JobItem, JobRecord
from aperture.domain.records import (
    MAX_CAMERA_KEYS,
    OTHER_KEY,
    AccessAttempt,
    Analysis,
    ApiKey,
    Contribution,
    DeadLetter,
    ImageRecord,
    ImageStatus,
    ObjectInfo,
    StoredHistograms,
    Team,
    Totals,
    UploadLink,
    User,
    counter_fold,
    counter_key,
    resolve_counter_key,
)
from aperture.storage.images import Tombstone
from aperture.storage.jobs import Versioned
from aperture.storage.key_issuers import IssuedKey
from aperture.storage.objects import StreamingReader
from aperture.storage.queue import dead_letter_message, message
from aperture.storage.upload_links import new_token, token_hash


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def raising(exc: BaseException) -> Callable[..., Any]:
    """A stand-in for a repository method that fails with `exc` (install it on the instance)."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return fail


# -- aperture.storage.images.ImageStore -------------------------------------------------

# What `mark_processed` writes; the upload's own fields stay as stored (as in ImageStore).
_UPLOAD_FIELDS = {"team", "id", "filename", "mime_type", "extension", "bucket", "object", "created_at", "uploaded_by"}
_ANALYSIS_FIELDS = {f.name for f in dataclasses.fields(ImageRecord)} - _UPLOAD_FIELDS
# Counted by begin_attempt, never written back from a record read earlier; the dead
# letter is written by note_dead_letter only (as in ImageStore).
_ANALYSIS_FIELDS -= {"attempts", "attempt_generation", "dead_letter"}


class FakeImageStore:
    """Image records keyed by (team, image id); create-only, newest-first listing."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], ImageRecord] = {}
        self._tombstones: dict[tuple[str, str], Tombstone] = {}
        self._lock = threading.Lock()

    def put_tombstone(
        self, team: str, image_id: str, record_created_at: dt.datetime, deleted_at: dt.datetime, drop_after: dt.datetime
    ) -> None:
        with self._lock:
            self._tombstones[(team, image_id)] = Tombstone(team, image_id, record_created_at, deleted_at, drop_after)

    def tombstone(self, team: str, image_id: str) -> Tombstone | None:
        with self._lock:
            return self._tombstones.get((team, image_id))

    def expired_tombstones(self, now: dt.datetime, limit: int) -> list[Tombstone]:
        with self._lock:
            return [t for t in self._tombstones.values() if t.drop_after < now][:limit]

    def drop_tombstone(self, tombstone: Tombstone) -> bool:
        with self._lock:
            if self._tombstones.get((tombstone.team, tombstone.id)) != tombstone:
                return False
            del self._tombstones[(tombstone.team, tombstone.id)]
            return True

    def stale_pending(self, before: dt.datetime, limit: int) -> list[ImageRecord]:
        with self._lock:
            found = [r for r in self._records.values() if r.status is ImageStatus.PENDING and r.created_at < before]
            return copy.deepcopy(sorted(found, key=lambda r: r.created_at)[:limit])

    def processed(self, team: str, limit: int) -> list[ImageRecord]:
        with self._lock:
            found = [r for r in self._records.values() if r.team == team and r.status is ImageStatus.PROCESSED]
            return copy.deepcopy(found[:limit])

    def create(self, record: ImageRecord) -> bool:
        with self._lock:
            key = (record.team, record.id)
            if key in self._records:
                return False
            self._records[key] = copy.deepcopy(record)
            return True

    def create_all(self, records: list[ImageRecord]) -> list[bool]:
        """Per record, False when it already existed (a record twice in the list: True, then False)."""
        return [self.create(record) for record in records]

    def get(self, team: str, image_id: str) -> ImageRecord | None:
        with self._lock:
            record = self._records.get((team, image_id))
            return copy.deepcopy(record)

    def get_many(self, team: str, image_ids: list[str]) -> dict[str, ImageRecord]:
        """The team's records among `image_ids` (missing ones are left out)."""
        with self._lock:
            found = {i: self._records.get((team, i)) for i in dict.fromkeys(image_ids)}
            return {i: copy.deepcopy(record) for i, record in found.items() if record is not None}

    def find_by_filename(self, team: str, filename: str, limit: int = 2) -> list[ImageRecord]:
        with self._lock:
            named = [r for r in self._records.values() if r.team == team and r.filename == filename]
            return copy.deepcopy(named[:limit])

    def delete(self, team: str, image_id: str) -> None:
        with self._lock:
            self._records.pop((team, image_id), None)

    def mark_failed(self, team: str, image_id: str, reason: str, generation: str) -> None:
        with self._lock:
            record = self._existing(team, image_id)
            self._records[(team, image_id)] = dataclasses.replace(
                record, status=ImageStatus.FAILED, error=reason, generation=generation
            )

    def begin_attempt(self, record: ImageRecord, generation: str) -> int:
        """As ImageStore.begin_attempt: +1 on the stored count for the generation counted, 1 for another; Gone when deleted."""
        with self._lock:
            stored = self._existing(record.team, record.id)
            attempts = stored.attempts + 1 if record.attempt_generation == generation else 1
            self._records[(record.team, record.id)] = dataclasses.replace(
                stored, attempts=attempts, attempt_generation=generation
            )
            return attempts

    def note_error(self, team: str, image_id: str, reason: str) -> None:
        with self._lock:
            record = self._existing(team, image_id)
            self._records[(team, image_id)] = dataclasses.replace(record, error=reason[:1000])

    def note_dead_letter(self, team: str, image_id: str, dead_letter: dict[str, Any]) -> bool:
        """As ImageStore.note_dead_letter: False when one is named for that generation already."""
        with self._lock:
            record = self._existing(team, image_id)
            if (record.dead_letter or {}).get("generation") == dead_letter["generation"]:
                return False
            self._records[(team, image_id)] = dataclasses.replace(record, dead_letter=copy.deepcopy(dead_letter))
            return True

    def mark_processed(self, record: ImageRecord, analysis: Analysis) -> ImageRecord:
        done = record.with_analysis(analysis)
        with self._lock:
            stored = self._existing(record.team, record.id)
            self._records[(record.team, record.id)] = copy.deepcopy(
                dataclasses.replace(stored, **{name: getattr(done, name) for name in _ANALYSIS_FIELDS})
            )
        return done

    def list(
        self,
        team: str,
        *,
        filters: dict[str, Any],
        after: dt.datetime | None = None,
        before: dt.datetime | None = None,
        limit: int = 50,
        start_after: str | None = None,
    ) -> list[ImageRecord] | None:
        with self._lock:

            def order(r: ImageRecord) -> tuple:  # created_at descending, ties by document id descending
                return r.created_at, f"{r.team}_{r.id}"

            chosen = [r for r in self._records.values() if r.team == team]
            if filters.get("format"):
                chosen = [r for r in chosen if r.format == filters["format"]]
            if filters.get("camera"):
                chosen = [r for r in chosen if r.camera == filters["camera"]]
            if filters.get("label"):
                chosen = [r for r in chosen if filters["label"] in r.labels]
            if after is not None:
                chosen = [r for r in chosen if r.created_at >= after]
            if before is not None:
                chosen = [r for r in chosen if r.created_at < before]
            chosen.sort(key=order, reverse=True)
            if start_after is not None:
                cursor = self._records.get((team, start_after))
                if cursor is None:
                    return None
                chosen = [r for r in chosen if order(r) < order(cursor)]
            return copy.deepcopy(chosen[:limit])

    def nearest(
        self, team: str, model: str, vector: list[float], *, limit: int, max_distance: float | None = None
    ) -> list[tuple[ImageRecord, float]]:
        """The team's records embedded by `model`, nearest first, with their cosine distance.

        As Firestore's find_nearest with DistanceMeasure.COSINE under the
        team == and embedding_model == pre-filters: distance = 1 - cosine
        similarity, ascending; `max_distance` (distance_threshold) keeps
        distances <= it; records without a vector, with a vector of another
        length or of zero length are never candidates. Ties: document id order.
        """
        query_norm = math.sqrt(math.fsum(v * v for v in vector))
        if not vector or query_norm == 0.0:
            raise ValueError("find_nearest needs a non-zero query vector")
        with self._lock:
            found = []
            for record in self._records.values():
                embedding = record.embedding
                if record.team != team or record.embedding_model != model:
                    continue
                if embedding is None or len(embedding) != len(vector):
                    continue
                norm = math.sqrt(math.fsum(v * v for v in embedding))
                if norm == 0.0:
                    continue
                distance = 1.0 - math.fsum(a * b for a, b in zip(vector, embedding)) / (query_norm * norm)
                if max_distance is None or distance <= max_distance:
                    found.append((distance, f"{record.team}_{record.id}", record))
            found.sort(key=lambda hit: hit[:2])
            return [(copy.deepcopy(record), distance) for distance, _, record in found[:limit]]

    def set_embedding(self, record: ImageRecord, embedding: list[float], model: str) -> None:
        """A new embedding for the record; Gone when it was deleted."""
        with self._lock:
            stored = self._existing(record.team, record.id)
            self._records[(record.team, record.id)] = dataclasses.replace(
                stored, embedding=[float(v) for v in embedding], embedding_model=model
            )

    def _existing(self, team: str, image_id: str) -> ImageRecord:
        record = self._records.get((team, image_id))
        if record is None:
            raise Gone(f"image record {team}/{image_id} was deleted")
        return record

    # test helper
    def all(self) -> list[ImageRecord]:
        with self._lock:
            return copy.deepcopy(list(self._records.values()))


# -- aperture.storage.objects.ObjectStore ------------------------------------------------


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@dataclasses.dataclass(frozen=True)
class _StoredObject:
    generation: int
    data: bytes
    content_type: str | None
    metadata: dict[str, str]
    created: str


class FakeObjectStore:
    """Objects keyed by (bucket, name), one live generation each, in versioned buckets (as
    infra/storage.tf declares them): an overwrite or a plain delete keeps the replaced live
    generation as a noncurrent one, which only `purge`, `delete_generations` and `purge_prefix`
    remove. Reads serve the live generation only (a noncurrent one reads as Gone)."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], _StoredObject] = {}
        self._noncurrent: dict[tuple[str, str], list[_StoredObject]] = {}
        self._generations = itertools.count(1_700_000_000_000_000)
        self._lock = threading.Lock()

    def info(self, bucket: str, name: str) -> ObjectInfo | None:
        with self._lock:
            stored = self._objects.get((bucket, name))
        if stored is None:
            return None
        return ObjectInfo(
            bucket=bucket,
            name=name,
            generation=stored.generation,
            size=len(stored.data),
            content_type=stored.content_type,
            md5_hash=_md5(stored.data),
        )

    def create(
        self, bucket: str, name: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None
    ) -> int | None:
        """The new generation, or None when the name is taken."""
        with self._lock:
            if (bucket, name) in self._objects:
                return None
            return self._put(bucket, name, data, content_type, metadata).generation

    def list_page(self, bucket: str, prefix: str, *, limit: int, start_after: str | None = None) -> list[ObjectInfo]:
        with self._lock:
            names = sorted(n for (b, n) in self._objects if b == bucket and n.startswith(prefix))
            names = [n for n in names if start_after is None or n > start_after][:limit]
            return [self._event(bucket, n, self._objects[(bucket, n)]) for n in names]

    def copy(self, bucket: str, name: str, generation: int, target: str) -> bool:
        """Copy one generation (live or noncurrent) to a new name, create-only; False when the target exists."""
        with self._lock:
            key = (bucket, name)
            stored = [
                s for s in [*self._noncurrent.get(key, []), self._objects.get(key)] if s and s.generation == generation
            ]
            if not stored:
                raise gexc.NotFound(f"{bucket}/{name}#{generation}: no such object")
            if (bucket, target) in self._objects:
                return False
            self._put(bucket, target, stored[0].data, stored[0].content_type, stored[0].metadata)
            return True

    def delete(self, bucket: str, name: str, generation: int | None = None) -> None:
        with self._lock:
            stored = self._objects.get((bucket, name))
            if stored is not None and (generation is None or stored.generation == generation):
                self._retire((bucket, name))

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        with self._lock:
            names = [key for key in self._objects if key[0] == bucket and key[1].startswith(prefix)]
            for key in names:
                self._retire(key)
        return len(names)

    def purge(self, bucket: str, name: str, generation: int) -> None:
        """This generation deleted for good, live or noncurrent."""
        with self._lock:
            key = (bucket, name)
            stored = self._objects.get(key)
            if stored is not None and stored.generation == generation:
                del self._objects[key]
            kept = [old for old in self._noncurrent.get(key, []) if old.generation != generation]
            if kept:
                self._noncurrent[key] = kept
            else:
                self._noncurrent.pop(key, None)

    def delete_generations(self, bucket: str, name: str) -> int:
        """Every generation of `name` deleted for good; how many."""
        generations = self.generations(bucket, name)
        for generation in generations:
            self.purge(bucket, name, generation)
        return len(generations)

    def purge_prefix(self, bucket: str, prefix: str) -> int:
        """Every generation of every object under `prefix` deleted for good; how many."""
        with self._lock:
            names = {key[1] for key in [*self._objects, *self._noncurrent] if key[0] == bucket}
        return sum(self.delete_generations(bucket, name) for name in sorted(names) if name.startswith(prefix))

    def _retire(self, key: tuple[str, str]) -> None:
        """The live generation becomes noncurrent (a versioned bucket's delete or overwrite)."""
        self._noncurrent.setdefault(key, []).append(self._objects.pop(key))

    def read(self, info: ObjectInfo) -> bytes:
        """The bytes of exactly `info.generation`; Gone when that generation was deleted or replaced."""
        stored = self._generation(info)
        if stored is None:
            raise Gone(f"{info.bucket}/{info.name}#{info.generation}: no such object")
        return stored.data

    def stream(self, info: ObjectInfo) -> StreamingReader:
        """A reader of exactly `info.generation`; as with the real one, a missing
        generation fails on read with the storage library's NotFound."""
        reader = StreamingReader()
        stored = self._generation(info)
        if stored is None:
            reader.fail(gexc.NotFound(f"{info.bucket}/{info.name}#{info.generation}: no such object"))
        else:
            reader.write(stored.data)
            reader.finish()
        return reader

    def stream_current(self, bucket: str, name: str) -> tuple[ObjectInfo, StreamingReader] | None:
        """The live generation's metadata and a reader of its bytes, in one step (one GET in the real one)."""
        info = FakeObjectStore.info(self, bucket, name)  # the class's own, not a test's stand-in
        return None if info is None else (info, FakeObjectStore.stream(self, info))

    def _generation(self, info: ObjectInfo) -> _StoredObject | None:
        with self._lock:
            stored = self._objects.get((info.bucket, info.name))
        return stored if stored is not None and stored.generation == info.generation else None

    def _put(
        self, bucket: str, name: str, data: bytes, content_type: str | None, metadata: dict[str, str] | None
    ) -> _StoredObject:
        stored = _StoredObject(
            next(self._generations),
            bytes(data),
            content_type,
            dict(metadata or {}),
            _now().isoformat().replace("+00:00", "Z"),
        )
        if (bucket, name) in self._objects:
            self._retire((bucket, name))
        self._objects[(bucket, name)] = stored
        return stored

    # test helpers
    def put(
        self,
        bucket: str,
        name: str,
        data: bytes,
        content_type: str | None = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Write (or overwrite, with a new generation) as a plain client would; the object as a
        finalize event describes it (with its custom metadata and creation time)."""
        with self._lock:
            stored = self._put(bucket, name, data, content_type, metadata)
        return self._event(bucket, name, stored)

    def event(self, bucket: str, name: str) -> ObjectInfo:
        """The finalize event's view of an object already stored."""
        with self._lock:
            stored = self._objects[(bucket, name)]
        return self._event(bucket, name, stored)

    @staticmethod
    def _event(bucket: str, name: str, stored: _StoredObject) -> ObjectInfo:
        return ObjectInfo(
            bucket,
            name,
            stored.generation,
            len(stored.data),
            stored.content_type,
            _md5(stored.data),
            metadata=tuple(sorted(stored.metadata.items())),
            created=stored.created,
        )

    def names(self, bucket: str) -> set[str]:
        with self._lock:
            return {name for (b, name) in self._objects if b == bucket}

    def generations(self, bucket: str, name: str) -> list[int]:
        """Every stored generation of `name`, noncurrent ones first, the live one last."""
        with self._lock:
            key = (bucket, name)
            old = [stored.generation for stored in self._noncurrent.get(key, [])]
            live = self._objects.get(key)
            return old + ([live.generation] if live is not None else [])

    def stored_names(self, bucket: str) -> set[str]:
        """Names with any generation stored, live or noncurrent."""
        with self._lock:
            return {name for (b, name) in [*self._objects, *self._noncurrent] if b == bucket}

    def metadata(self, bucket: str, name: str) -> dict[str, str]:
        with self._lock:
            return dict(self._objects[(bucket, name)].metadata)


# -- aperture.storage.histograms.HistogramStore ------------------------------------------


class FakeHistogramStore:
    """Stored histograms per (bucket, object, generation), create-only."""

    def __init__(self) -> None:
        self._stored: dict[tuple[str, str, int], StoredHistograms] = {}
        self._lock = threading.Lock()

    def get(self, bucket: str, name: str, generation: int) -> StoredHistograms | None:
        with self._lock:
            return self._stored.get((bucket, name, int(generation)))

    def put(self, bucket: str, name: str, generation: int, record: StoredHistograms) -> bool:
        with self._lock:
            key = (bucket, name, int(generation))
            if key in self._stored:
                return False
            self._stored[key] = record
            return True

    def delete(self, bucket: str, name: str, generation: int) -> None:
        with self._lock:
            self._stored.pop((bucket, name, int(generation)), None)

    # test helper
    def keys(self) -> set[tuple[str, str, int]]:
        with self._lock:
            return set(self._stored)


# -- aperture.storage.identity.IdentityStore ---------------------------------------------


class FakeIdentityStore:
    """Teams (create-only by id), users, and keys (create-only by hash)."""

    def __init__(self) -> None:
        self._teams: dict[str, Team] = {}
        self._users: dict[str, User] = {}
        self._keys: dict[str, ApiKey] = {}  # by key hash, as the real document id
        self._lock = threading.Lock()

    def create_team(self, team_id: str, name: str, gps_enabled: bool = False) -> Team:
        with self._lock:
            if team_id in self._teams:
                raise AlreadyExists(f"team {team_id!r} already exists")
            team = self._teams[team_id] = Team(team_id, name, gps_enabled, _now())
            return team

    def get_team(self, team_id: str) -> Team | None:
        with self._lock:
            return self._teams.get(team_id)

    def list_teams(self) -> list[Team]:
        with self._lock:
            return sorted(self._teams.values(), key=lambda t: t.team_id)

    def create_user(self, team: str, email: str, role: str) -> User:
        with self._lock:
            user = User("usr_" + uuid.uuid4().hex[:16], team, email, role, _now())
            self._users[user.user_id] = user
            return user

    def get_user(self, user_id: str) -> User | None:
        with self._lock:
            return self._users.get(user_id)

    def list_users(self, team: str) -> list[User]:
        with self._lock:
            return sorted((u for u in self._users.values() if u.team == team), key=lambda u: u.created_at)

    def add_key(self, key: ApiKey) -> None:
        with self._lock:
            if key.key_hash in self._keys:
                raise gexc.AlreadyExists(f"key {key.key_hash} exists")
            self._keys[key.key_hash] = key

    def key_by_hash(self, key_hash: str) -> ApiKey | None:
        with self._lock:
            return self._keys.get(key_hash)

    def key_by_id(self, key_id: str) -> ApiKey | None:
        with self._lock:
            return next((k for k in self._keys.values() if k.key_id == key_id), None)

    def list_keys(self, team: str | None = None) -> list[ApiKey]:
        with self._lock:
            return sorted(
                (k for k in self._keys.values() if team is None or k.team == team), key=lambda k: k.created_at
            )

    def revoke_key(self, key: ApiKey) -> ApiKey:
        if key.revoked:
            return key
        return self._update(key, revoked_at=_now())

    def touch_key(self, key: ApiKey) -> None:
        self._update(key, last_used_at=_now())

    def _update(self, key: ApiKey, **changes: Any) -> ApiKey:
        with self._lock:
            stored = self._keys.get(key.key_hash)
            if stored is None:
                raise gexc.NotFound(f"no key {key.key_id}")
            self._keys[key.key_hash] = dataclasses.replace(stored, **changes)
            return ApiKey(**{**asdict(key), **changes})


# -- aperture.storage.counters.TeamCounters ----------------------------------------------


class FakeTeamCounters:
    """Per-team totals with one marker per counted (team, image): add and remove are exactly once.
    As in TeamCounters, keys are counted under `counter_key` spellings, a camera known in another
    case under its first spelling, cameras past the team's first `max_cameras` under "other"."""

    def __init__(self, max_cameras: int = MAX_CAMERA_KEYS) -> None:
        self._markers: dict[tuple[str, str], Contribution] = {}
        self._totals: dict[str, Totals] = {}
        self._camera_keys: dict[str, dict[str, str]] = {}  # team -> folded -> spelling
        self._max_cameras = max_cameras
        self._lock = threading.Lock()

    def add(self, team: str, image_id: str, contribution: Contribution) -> bool:
        with self._lock:
            camera = counter_key(contribution.camera)
            if camera:
                known = self._camera_keys.setdefault(team, {})
                camera, new = resolve_counter_key(camera, known, self._max_cameras)
                if new:
                    known[counter_fold(camera)] = camera
            contribution = dataclasses.replace(
                contribution, format=counter_key(contribution.format) or OTHER_KEY, camera=camera
            )
            if (team, image_id) in self._markers:
                return False
            self._markers[(team, image_id)] = contribution
            self._apply(team, contribution, +1)
            return True

    def remove(self, team: str, image_id: str, contribution: Contribution) -> bool:
        with self._lock:
            if self._markers.pop((team, image_id), None) is None:
                return False
            self._apply(team, contribution, -1)
            return True

    def counted(self, team: str, image_id: str) -> Contribution | None:
        with self._lock:
            return self._markers.get((team, image_id))

    def totals(self, team: str) -> Totals:
        with self._lock:
            totals = self._totals.get(team, Totals())
            return Totals(dict(totals.days), dict(totals.formats), dict(totals.cameras))

    def markers(self, team: str, limit: int) -> dict[str, Contribution]:
        with self._lock:
            return dict(list({i: c for (t, i), c in self._markers.items() if t == team}.items())[:limit])

    def rebuild(self, team: str) -> bool:
        """The team's totals made the sum of its markers; False when they already were."""
        with self._lock:
            wanted = Totals()
            self._totals[team], have = wanted, self._totals.get(team, Totals())
            for (t, _), contribution in self._markers.items():
                if t == team:
                    self._apply(team, contribution, +1)

            def clean(totals: Totals) -> tuple:
                return tuple({k: v for k, v in d.items() if v} for d in (totals.days, totals.formats, totals.cameras))

            return clean(have) != clean(wanted)

    # test helper
    def skew(self, team: str, day: str, format: str, by: int) -> None:
        """Drift the totals without a marker (what a lost or doubled increment leaves)."""
        with self._lock:
            totals = self._totals.setdefault(team, Totals())
            totals.days[day] = totals.days.get(day, 0) + by
            totals.formats[format] = totals.formats.get(format, 0) + by

    def _apply(self, team: str, contribution: Contribution, sign: int) -> None:
        totals = self._totals.setdefault(team, Totals())
        totals.days[contribution.day] = totals.days.get(contribution.day, 0) + sign
        totals.formats[contribution.format] = totals.formats.get(contribution.format, 0) + sign
        if contribution.camera:
            totals.cameras[contribution.camera] = totals.cameras.get(contribution.camera, 0) + sign


# -- aperture.storage.upload_links.UploadLinkStore ---------------------------------------


@dataclasses.dataclass
class _StoredLink:
    link: UploadLink
    used: int = 0
    slots: set[str] = dataclasses.field(default_factory=set)


class FakeUploadLinkStore:
    """Links by token hash; numbered slots claimed create-only, as in UploadLinkStore."""

    def __init__(self) -> None:
        self._links: dict[str, _StoredLink] = {}
        self._lock = threading.Lock()

    def create(
        self, team: str, max_files: int, lifetime: dt.timedelta, created_by: dict[str, Any]
    ) -> tuple[UploadLink, str]:
        token = new_token()
        digest = token_hash(token)
        now = _now()
        link = UploadLink(digest[:16], team, max_files, now + lifetime, now, dict(created_by))
        with self._lock:
            self._links[digest] = _StoredLink(link)
        return link, token

    def find(self, token: str) -> tuple[UploadLink, str] | None:
        digest = token_hash(token)
        with self._lock:
            stored = self._links.get(digest)
        return (stored.link, digest) if stored else None

    def find_by_id(self, link_id: str) -> tuple[UploadLink, str] | None:
        with self._lock:
            for digest, stored in self._links.items():
                if stored.link.link_id == link_id:
                    return stored.link, digest
        return None

    def revoke(self, digest: str) -> UploadLink:
        """As UploadLinkStore.revoke: the first revocation time is kept; NotFound for no such link."""
        with self._lock:
            stored = self._stored(digest)
            if stored.link.revoked_at is None:
                stored.link = dataclasses.replace(stored.link, revoked_at=_now())
            return stored.link

    def claim(self, digest: str, max_files: int) -> str | None:
        # As in UploadLinkStore: the search starts at the `used` count, so a slot
        # released below a slot still held is not found again until that one is released.
        with self._lock:
            stored = self._stored(digest)
            for slot in range(min(stored.used, max_files), max_files):
                if str(slot) in stored.slots:
                    continue
                stored.slots.add(str(slot))
                stored.used += 1
                return str(slot)
            return None

    def release(self, digest: str, slot: str) -> None:
        with self._lock:
            stored = self._stored(digest)
            stored.slots.discard(slot)
            stored.used -= 1

    def _stored(self, digest: str) -> _StoredLink:
        stored = self._links.get(digest)
        if stored is None:
            raise gexc.NotFound(f"no upload link {digest}")
        return stored

    # test helper
    def taken(self, digest: str) -> set[str]:
        with self._lock:
            return set(self._stored(digest).slots)


# -- aperture.storage.audit.AuditLog ---------------------------------------------------


class FakeAuditLog:
    """Every recorded attempt, in order (the real one logs and writes them in the background, or
    before it returns when `durable`, raising when that write failed every try)."""

    def __init__(self) -> None:
        self.attempts: list[AccessAttempt] = []
        self.durable: list[bool] = []  # test helper: per attempt, whether it was recorded durably

    def record(self, attempt: AccessAttempt, *, durable: bool = False) -> None:
        self.attempts.append(attempt)
        self.durable.append(durable)


# -- aperture.storage.key_issuers.KeyIssuer ----------------------------------------------


class FakeKeyIssuer:
    """Issues local-shaped keys with an external name each (as the Google issuer has), and records revocations."""

    name = "fake"

    def __init__(self) -> None:
        self.issued: list[tuple[str, IssuedKey]] = []  # (display name, key)
        self.revoked: list[str | None] = []
        self._numbers = itertools.count(1)

    def issue(self, display_name: str) -> IssuedKey:
        issued = IssuedKey(keys.generate(), f"keys/{next(self._numbers)}")
        self.issued.append((display_name, issued))
        return issued

    def revoke(self, external_name: str | None) -> None:
        self.revoked.append(external_name)


# -- aperture.storage.url_signing.UrlSigner ----------------------------------------------


class FakeUrlSigner:
    """URLs that say what was signed: bucket, object, expiry and content type."""

    def __init__(self) -> None:
        self.signed: list[tuple[str, str, dt.datetime, str]] = []
        self.signed_headers: list[dict[str, str]] = []  # per entry of `signed`, the extra headers signed
        self.read_links: list[tuple[str, str, dt.datetime, str | None]] = []

    def put_url(
        self,
        bucket: str,
        name: str,
        expires_at: dt.datetime,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        self.signed.append((bucket, name, expires_at, content_type))
        self.signed_headers.append(dict(headers or {}))
        return f"https://storage.test/{bucket}/{name}?expires={int(expires_at.timestamp())}&type={content_type}"

    def get_url(self, bucket: str, name: str, expires_at: dt.datetime, *, disposition: str | None = None) -> str:
        """Recorded in `read_links` as (bucket, name, expires_at, disposition)."""
        self.read_links.append((bucket, name, expires_at, disposition))
        return f"https://storage.test/{bucket}/{name}?method=GET&expires={int(expires_at.timestamp())}"


# -- aperture.storage.jobs.JobStore ------------------------------------------------------


@dataclasses.dataclass
class _StoredJob:
    job: JobRecord
    counts: dict[str, int]


class FakeJobStore:
    """Jobs and their items, create-only. As in JobStore, every state change of an item has a
    precondition on the version it was read at (a counter here, Firestore's update time there)
    and moves the job's counts in the same step; a stale version changes nothing."""

    def __init__(self) -> None:
        self._jobs: dict[str, _StoredJob] = {}
        self._items: dict[tuple[str, int], Versioned] = {}
        self._deleted_outputs: dict[tuple[str, int], dict[str, Any]] = {}
        self._versions = itertools.count(1)
        self._lock = threading.Lock()

    # -- jobs

    def create(self, job: JobRecord, items: list[JobItem]) -> None:
        with self._lock:
            keys = [(item.job_id, item.index) for item in items]
            if job.job_id in self._jobs or any(key in self._items for key in keys):
                raise gexc.AlreadyExists(f"job {job.job_id} exists")
            self._jobs[job.job_id] = _StoredJob(copy.deepcopy(job), {ItemState.QUEUED.value: len(items)})
            for key, item in zip(keys, items):
                self._items[key] = Versioned(copy.deepcopy(item), next(self._versions))

    def get(self, job_id: str) -> tuple[JobRecord, Counts] | None:
        with self._lock:
            stored = self._jobs.get(job_id)
            return self._view(stored) if stored else None

    def list(self, team: str, *, limit: int, start_after: str | None = None) -> list[tuple[JobRecord, Counts]] | None:
        """Newest first (ties by job id, descending, as Firestore orders them); None for a cursor
        that is not one of the team's jobs."""
        with self._lock:

            def order(stored: _StoredJob) -> tuple[dt.datetime, str]:
                return stored.job.created_at, stored.job.job_id

            chosen = sorted((s for s in self._jobs.values() if s.job.team == team), key=order, reverse=True)
            if start_after is not None:
                cursor = self._jobs.get(start_after)
                if cursor is None or cursor.job.team != team:
                    return None
                chosen = [s for s in chosen if order(s) < order(cursor)]
            return [self._view(stored) for stored in chosen[:limit]]

    def cancel(self, job_id: str) -> int:
        with self._lock:
            stored = self._jobs.get(job_id)
            if stored is None:
                raise gexc.NotFound(f"no job {job_id}")
            stored.job = dataclasses.replace(stored.job, cancelled=True)
            queued = [
                v for (j, _), v in sorted(self._items.items()) if j == job_id and v.item.state is ItemState.QUEUED
            ]
            moved = [self._move(current, ItemState.CANCELLED, {"finished_at": _now()}) for current in queued]
            return sum(1 for m in moved if m is not None)

    # -- items

    def items(self, job_id: str) -> list[JobItem]:
        with self._lock:
            return [copy.deepcopy(v.item) for (j, _), v in sorted(self._items.items()) if j == job_id]

    def item(self, job_id: str, index: int) -> Versioned | None:
        with self._lock:
            return copy.deepcopy(self._items.get((job_id, index)))

    def start(self, current: Versioned, worker: str) -> Versioned | None:
        fields: dict[str, Any] = {"attempts": current.item.attempts + 1, "worker": worker}
        if current.item.started_at is None:
            fields["started_at"] = _now()
        with self._lock:
            return self._move(current, ItemState.RUNNING, fields)

    def finish(self, current: Versioned, outputs: list[str]) -> bool:
        with self._lock:
            fields = {"outputs": tuple(outputs), "error": None, "finished_at": _now()}
            return self._move(current, ItemState.DONE, fields) is not None

    def fail(self, current: Versioned, reason: str) -> bool:
        with self._lock:
            return self._move(current, ItemState.FAILED, {"error": reason, "finished_at": _now()}) is not None

    def note_error(self, current: Versioned, reason: str) -> None:
        """No precondition, as in JobStore; like any write it moves the version."""
        with self._lock:
            key = (current.item.job_id, current.item.index)
            stored = self._items.get(key)
            if stored is not None:
                self._items[key] = Versioned(dataclasses.replace(stored.item, error=reason), next(self._versions))

    def items_for_image(self, team: str, image_id: str) -> list[Versioned]:
        """As JobStore.items_for_image: the team's items (by their source object) whose input is `image_id`."""
        with self._lock:
            found = [
                v
                for _, v in sorted(self._items.items())
                if v.item.image_id == image_id and v.item.source_object.startswith(f"teams/{team}/")
            ]
            return copy.deepcopy(found)

    def forget_outputs(self, current: Versioned, names: list[str], reason: str) -> None:
        """No precondition, as in JobStore; the item's outputs emptied, the note kept (test helper `outputs_deleted`)."""
        with self._lock:
            key = (current.item.job_id, current.item.index)
            stored = self._items.get(key)
            if stored is None:
                return
            self._items[key] = Versioned(dataclasses.replace(stored.item, outputs=()), next(self._versions))
            self._deleted_outputs[key] = {"at": _now(), "reason": reason, "names": list(names)}

    def _move(self, current: Versioned, state: ItemState, fields: dict[str, Any]) -> Versioned | None:
        item = current.item
        key = (item.job_id, item.index)
        stored = self._items.get(key)
        if stored is None or stored.version != current.version:
            return None  # the precondition failed: someone wrote the item since it was read
        job = self._jobs.get(item.job_id)
        if item.state != state:
            if job is None:
                return None  # the job's count update fails, and the commit with it
            job.counts[item.state.value] = job.counts.get(item.state.value, 0) - 1
            job.counts[state.value] = job.counts.get(state.value, 0) + 1
        moved = Versioned(dataclasses.replace(item, state=state, **fields), next(self._versions))
        self._items[key] = moved
        return copy.deepcopy(moved)

    @staticmethod
    def _view(stored: _StoredJob) -> tuple[JobRecord, Counts]:
        counts = Counts(**{state.value: max(0, stored.counts.get(state.value, 0)) for state in ItemState})
        return copy.deepcopy(stored.job), counts

    # test helpers
    def touch(self, job_id: str, index: int) -> None:
        """Another writer changed the item: its version moves, nothing else."""
        with self._lock:
            stored = self._items[(job_id, index)]
            self._items[(job_id, index)] = Versioned(stored.item, next(self._versions))

    def outputs_deleted(self, job_id: str, index: int) -> dict[str, Any] | None:
        """The item's `outputs_deleted` note, if forget_outputs wrote one."""
        with self._lock:
            return copy.deepcopy(self._deleted_outputs.get((job_id, index)))

    def raw_counts(self, job_id: str) -> dict[str, int]:
        """The stored counters, unclamped (a negative one means a count moved twice)."""
        with self._lock:
            return dict(self._jobs[job_id].counts)


# -- aperture.storage.queue.JobQueue -----------------------------------------------------


class FakeJobQueue:
    """The messages published, in order: each item's body and attributes, as JobQueue sends them."""

    def __init__(self) -> None:
        self.published: list[tuple[bytes, dict[str, str]]] = []
        self._lock = threading.Lock()

    def publish(self, team: str, job_id: str, indices: Any, timeout: float = 60.0) -> None:
        sent = [(message(job_id, index), {"team": team, "job_id": job_id}) for index in indices]
        with self._lock:
            self.published.extend(sent)

    # test helper
    def items(self) -> list[tuple[str, int]]:
        """(job id, index) of each message published."""
        with self._lock:
            bodies = [json.loads(data) for data, _ in self.published]
        return [(body["job_id"], body["index"]) for body in bodies]


# -- aperture.storage.queue.DeadLetterTopic ----------------------------------------------


class FakeDeadLetterTopic:
    """The dead letters published, in order, each with the message id it got, as DeadLetterTopic sends them."""

    def __init__(self, name: str = "aperture-process-dead-letter") -> None:
        self.name = name
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def publish(self, letter: DeadLetter, timeout: float = 60.0) -> str:
        data, attributes = dead_letter_message(letter)
        with self._lock:
            message_id = str(next(self._ids))
            self.published.append((message_id, data, attributes))
        return message_id

    # test helper
    def letters(self) -> list[dict[str, Any]]:
        """The JSON body of each dead letter published."""
        with self._lock:
            return [json.loads(data) for _, data, _ in self.published]
