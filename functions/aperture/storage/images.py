"""Firestore repository for image records (`images` collection).

Document id `{team}_{sha256}`: the image id is scoped to its team, and the
create-only write is what makes 20 concurrent uploads of the same bytes end
as one record (everyone else sees AlreadyExists and answers "duplicate").
Records go in and come out as `ImageRecord`; this is the only code that knows
their Firestore shape.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.base_vector_query import DistanceMeasure
from google.cloud.firestore_v1.vector import Vector

from aperture.domain.errors import Gone
from aperture.domain.records import Analysis, ImageRecord, ImageStatus

COLLECTION = "images"
# A deleted image's id, kept a while (`tombstones/{team}_{sha256}`) so that an upload
# or a processing run of it still in flight neither answers "duplicate" for it nor
# counts or files it again (docs/decisions.md, "Deduplication and deletion races").
TOMBSTONES = "tombstones"
_FIELDS = {f.name for f in dataclasses.fields(ImageRecord)}
# What processing writes; the upload's fields (team, id, filename, created_at, ...) stay as they are.
_ANALYSIS_FIELDS = _FIELDS - {
    "team",
    "id",
    "filename",
    "mime_type",
    "extension",
    "bucket",
    "object",
    "created_at",
    "uploaded_by",
    "orientation",
    # counted by begin_attempt, never written back from a record read earlier
    "attempts",
    "attempt_generation",
    # written by note_dead_letter only
    "dead_letter",
}


@dataclasses.dataclass(frozen=True)
class Tombstone:
    """An image id being (or lately) deleted: `record_created_at` names the record deleted (a
    record made again afterwards has another), `drop_after` is when the repair sweep drops it."""

    team: str
    id: str
    record_created_at: dt.datetime
    deleted_at: dt.datetime
    drop_after: dt.datetime


def record_id(team: str, image_id: str) -> str:
    return f"{team}_{image_id}"


def to_document(record: ImageRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(record, name)
        if value is None and name not in ("error",):
            continue
        doc[name] = value
    doc["status"] = record.status.value
    if record.embedding is not None:
        doc["embedding"] = Vector(record.embedding)
    if record.status is ImageStatus.PENDING:
        for name in ("labels", "label_scores", "error"):
            doc.pop(name, None)
    return doc


def from_document(doc: dict[str, Any]) -> ImageRecord:
    values = {k: v for k, v in doc.items() if k in _FIELDS}
    values["status"] = ImageStatus(values.get("status", ImageStatus.PENDING.value))
    if values.get("embedding") is not None:
        values["embedding"] = list(values["embedding"])
    values.setdefault("labels", [])
    values.setdefault("label_scores", [])
    return ImageRecord(**values)


class ImageStore:
    def __init__(self, db: firestore.Client):
        self._db = db
        self._collection = db.collection(COLLECTION)

    def _doc(self, team: str, image_id: str):
        return self._collection.document(record_id(team, image_id))

    def create(self, record: ImageRecord) -> bool:
        try:
            self._doc(record.team, record.id).create(to_document(record))
        except gexc.AlreadyExists:
            return False
        return True

    def create_all(self, records: list[ImageRecord]) -> list[bool]:
        """Create several records in one commit; per record, False when it already existed.

        A commit is all-or-nothing, so when any record exists the batch fails
        and each is then created on its own to find out which.
        """
        if len(records) == 1 or len({record_id(r.team, r.id) for r in records}) != len(records):
            return [self.create(r) for r in records]
        batch = self._db.batch()
        for record in records:
            batch.create(self._doc(record.team, record.id), to_document(record))
        try:
            batch.commit()
        except (gexc.AlreadyExists, gexc.Conflict):
            return [self.create(r) for r in records]
        return [True] * len(records)

    def get(self, team: str, image_id: str) -> ImageRecord | None:
        snap = self._doc(team, image_id).get()
        return from_document(snap.to_dict()) if snap.exists else None

    def get_many(self, team: str, image_ids: list[str]) -> dict[str, ImageRecord]:
        """The team's records among `image_ids`, in one round trip (missing ones are left out)."""
        refs = [self._doc(team, image_id) for image_id in dict.fromkeys(image_ids)]
        return {snap.get("id"): from_document(snap.to_dict()) for snap in self._db.get_all(refs) if snap.exists}

    def find_by_filename(self, team: str, filename: str, limit: int = 2) -> list[ImageRecord]:
        """The team's records uploaded under `filename` (at most `limit`)."""
        query = self._collection.where(filter=FieldFilter("team", "==", team)).where(
            filter=FieldFilter("filename", "==", filename)
        )
        return [from_document(snap.to_dict()) for snap in query.limit(limit).stream()]

    def delete(self, team: str, image_id: str) -> None:
        self._doc(team, image_id).delete()

    # -- tombstones ---------------------------------------------------------------------

    def put_tombstone(
        self, team: str, image_id: str, record_created_at: dt.datetime, deleted_at: dt.datetime, drop_after: dt.datetime
    ) -> None:
        """Written (over any older one of the id) before a delete touches anything else."""
        tombstone = Tombstone(team, image_id, record_created_at, deleted_at, drop_after)
        self._db.collection(TOMBSTONES).document(record_id(team, image_id)).set(dataclasses.asdict(tombstone))

    def tombstone(self, team: str, image_id: str) -> Tombstone | None:
        snap = self._db.collection(TOMBSTONES).document(record_id(team, image_id)).get()
        return Tombstone(**snap.to_dict()) if snap.exists else None

    def expired_tombstones(self, now: dt.datetime, limit: int) -> list[Tombstone]:
        query = self._db.collection(TOMBSTONES).where(filter=FieldFilter("drop_after", "<", now))
        return [Tombstone(**snap.to_dict()) for snap in query.limit(limit).stream()]

    def drop_tombstone(self, tombstone: Tombstone) -> bool:
        """Drop it unless it was written again since (a newer delete of the id); False then."""
        ref = self._db.collection(TOMBSTONES).document(record_id(tombstone.team, tombstone.id))
        snap = ref.get()
        if not snap.exists or Tombstone(**snap.to_dict()) != tombstone:
            return False
        try:
            ref.delete(option=self._db.write_option(last_update_time=snap.update_time))
        except (gexc.FailedPrecondition, gexc.NotFound):
            return False
        return True

    # -- what the repair sweep looks for ----------------------------------------------------

    def stale_pending(self, before: dt.datetime, limit: int) -> list[ImageRecord]:
        """Records still `pending` that were created before `before`, oldest first."""
        query = (
            self._collection.where(filter=FieldFilter("status", "==", ImageStatus.PENDING.value))
            .where(filter=FieldFilter("created_at", "<", before))
            .order_by("created_at")
        )
        return [from_document(snap.to_dict()) for snap in query.limit(limit).stream()]

    def processed(self, team: str, limit: int) -> list[ImageRecord]:
        """Up to `limit` of the team's processed records (what its counters should count)."""
        query = self._collection.where(filter=FieldFilter("team", "==", team)).where(
            filter=FieldFilter("status", "==", ImageStatus.PROCESSED.value)
        )
        return [from_document(snap.to_dict()) for snap in query.limit(limit).stream()]

    def mark_failed(self, team: str, image_id: str, reason: str, generation: str) -> None:
        """Gone when the record was deleted meanwhile."""
        self._update(team, image_id, {"status": ImageStatus.FAILED.value, "error": reason, "generation": generation})

    def begin_attempt(self, record: ImageRecord, generation: str) -> int:
        """Count one processing attempt of `generation` (Increment) and return how many there
        have been; the count starts again at 1 for a generation other than the one counted.
        Gone when the record was deleted."""
        ref = self._doc(record.team, record.id)
        if record.attempt_generation == generation:
            fields: dict[str, Any] = {"attempts": firestore.Increment(1)}
        else:
            fields = {"attempts": 1, "attempt_generation": generation}
        fields["attempted_at"] = dt.datetime.now(dt.timezone.utc)  # not a transform: one transform result
        try:
            result = ref.update(fields)
        except gexc.NotFound as exc:
            raise Gone(f"image record {record.team}/{record.id} was deleted") from exc
        if "attempt_generation" in fields:
            return 1
        transforms = list(getattr(result, "transform_results", None) or ())
        if transforms and transforms[0].integer_value:
            return int(transforms[0].integer_value)
        snap = ref.get(field_paths=["attempts"])
        return int((snap.to_dict() or {}).get("attempts") or 1)

    def note_error(self, team: str, image_id: str, reason: str) -> None:
        """Keep why an attempt failed (shown while the record is pending; the reason it is failed
        with when attempts run out). Gone when the record was deleted."""
        self._update(team, image_id, {"error": reason[:1000]})

    def note_dead_letter(self, team: str, image_id: str, dead_letter: dict[str, Any]) -> bool:
        """Name the dead letter published for the record's generation `dead_letter["generation"]`,
        unless one is named for it already (a concurrent or earlier delivery's): False then, and
        the record keeps the first. Gone when the record was deleted."""
        ref = self._doc(team, image_id)

        @firestore.transactional
        def note(transaction) -> bool:
            snap = ref.get(field_paths=["dead_letter"], transaction=transaction)
            if not snap.exists:
                raise Gone(f"image record {team}/{image_id} was deleted")
            current = (snap.to_dict() or {}).get("dead_letter") or {}
            if current.get("generation") == dead_letter["generation"]:
                return False
            transaction.update(ref, {"dead_letter": dead_letter})
            return True

        return note(self._db.transaction())

    def mark_processed(self, record: ImageRecord, analysis: Analysis) -> ImageRecord:
        """The record with `analysis` applied, written over the stored one (Gone when it was deleted)."""
        done = record.with_analysis(analysis)
        document = to_document(done)
        self._update(record.team, record.id, {name: document.get(name) for name in _ANALYSIS_FIELDS})
        return done

    def _update(self, team: str, image_id: str, fields: dict[str, Any]) -> None:
        try:
            self._doc(team, image_id).update(fields)
        except gexc.NotFound as exc:
            raise Gone(f"image record {team}/{image_id} was deleted") from exc

    def nearest(
        self, team: str, model: str, vector: list[float], *, limit: int, max_distance: float | None = None
    ) -> list[tuple[ImageRecord, float]]:
        """The team's images embedded by `model`, nearest to `vector` first, with their cosine distance.

        The team and the model are filters inside the vector query (Firestore
        pre-filters), so no other team's image is ever a candidate and vectors
        of different models are never compared.
        """
        query = self._collection.where(filter=FieldFilter("team", "==", team)).where(
            filter=FieldFilter("embedding_model", "==", model)
        )
        nearest = query.find_nearest(
            vector_field="embedding",
            query_vector=Vector(vector),
            distance_measure=DistanceMeasure.COSINE,
            limit=limit,
            distance_result_field="distance",
            distance_threshold=max_distance,
        )
        found = []
        for snap in nearest.stream():
            doc = snap.to_dict()
            distance = float(doc.pop("distance"))
            found.append((from_document(doc), distance))
        return found

    def set_embedding(self, record: ImageRecord, embedding: list[float], model: str) -> None:
        """A new embedding for the record (a provider or model change); Gone when it was deleted."""
        self._update(record.team, record.id, {"embedding": Vector(list(embedding)), "embedding_model": model})

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
        """A team's records, newest first, optionally filtered (format, camera, label, time range).
        None when `start_after` names a record that no longer exists."""
        query = self._collection.where(filter=FieldFilter("team", "==", team))
        if filters.get("format"):
            query = query.where(filter=FieldFilter("format", "==", filters["format"]))
        if filters.get("camera"):
            query = query.where(filter=FieldFilter("camera", "==", filters["camera"]))
        if filters.get("label"):
            query = query.where(filter=FieldFilter("labels", "array_contains", filters["label"]))
        if after is not None:
            query = query.where(filter=FieldFilter("created_at", ">=", after))
        if before is not None:
            query = query.where(filter=FieldFilter("created_at", "<", before))
        # Ties on created_at are broken by the document id, which Firestore adds
        # to every index on its own: the declared composite indexes suffice.
        query = query.order_by("created_at", direction=firestore.Query.DESCENDING)
        if start_after is not None:
            snapshot = self._doc(team, start_after).get()
            if not snapshot.exists:
                return None  # the cursor's image was deleted meanwhile
            query = query.start_after(snapshot)
        return [from_document(snap.to_dict()) for snap in query.limit(limit).stream()]
