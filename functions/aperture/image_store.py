"""Firestore repository for image records (`images` collection).

Document id `{team}_{sha256}`: the image id is scoped to its team, and the
create-only write is what makes 20 concurrent uploads of the same bytes end
as one record (everyone else sees AlreadyExists and answers "duplicate").
"""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

COLLECTION = "images"


def record_id(team: str, image_id: str) -> str:
    return f"{team}_{image_id}"


class ImageStore:
    def __init__(self, db: firestore.Client):
        self._db = db
        self._collection = db.collection(COLLECTION)

    def create(self, record: dict[str, Any]) -> bool:
        try:
            self._collection.document(record_id(record["team"], record["id"])).create(record)
        except gexc.AlreadyExists:
            return False
        return True

    def create_all(self, records: list[dict[str, Any]]) -> list[bool]:
        """Create several records in one commit; per record, False when it already existed.

        A commit is all-or-nothing, so when any record exists the batch fails
        and each is then created on its own to find out which.
        """
        if len(records) == 1 or len({record_id(r["team"], r["id"]) for r in records}) != len(records):
            return [self.create(r) for r in records]
        batch = self._db.batch()
        for record in records:
            batch.create(self._collection.document(record_id(record["team"], record["id"])), record)
        try:
            batch.commit()
        except (gexc.AlreadyExists, gexc.Conflict):
            return [self.create(r) for r in records]
        return [True] * len(records)

    def get(self, team: str, image_id: str) -> dict[str, Any] | None:
        snap = self._collection.document(record_id(team, image_id)).get()
        return snap.to_dict() if snap.exists else None

    def delete(self, team: str, image_id: str) -> None:
        self._collection.document(record_id(team, image_id)).delete()

    def update(self, team: str, image_id: str, fields: dict[str, Any]) -> None:
        self._collection.document(record_id(team, image_id)).update(fields)

    def list(self, team: str, *, filters: dict[str, Any], after=None, before=None, limit: int = 50,
             start_after: str | None = None) -> list[dict[str, Any]] | None:
        """A team's records, newest first, optionally filtered (format, camera, label, time range)."""
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
            snapshot = self._collection.document(record_id(team, start_after)).get()
            if not snapshot.exists:
                return None  # the cursor's image was deleted meanwhile
            query = query.start_after(snapshot)
        return [snap.to_dict() for snap in query.limit(limit).stream()]
