"""Firestore repository for batch jobs (`jobs/{job_id}`, items in `jobs/{job_id}/items/{index}`).

Every state change of an item is one commit that updates the item with a
precondition on the version the caller read (`last_update_time`) and moves
the job's counts with Increment transforms. A redelivered or duplicated
message therefore finds the precondition failed or the item finished, and
neither counts twice nor changes a finished item; no read-modify-write
transaction ever holds the hot job document.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from aperture.domain.jobs import Counts, ItemState, JobItem, JobRecord

COLLECTION = "jobs"
ITEMS = "items"
_BATCH = 400  # writes per commit, below Firestore's 500
_ITEM_FIELDS = {f.name for f in dataclasses.fields(JobItem)}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _item_id(index: int) -> str:
    return f"{index:05d}"


@dataclasses.dataclass(frozen=True)
class Versioned:
    """An item and the version (update time) it was read at: the precondition of its next change."""

    item: JobItem
    version: Any


class JobStore:
    def __init__(self, db: firestore.Client):
        self._db = db
        self._jobs = db.collection(COLLECTION)

    # -- jobs ------------------------------------------------------------------

    def create(self, job: JobRecord, items: list[JobItem]) -> None:
        """The job and its queued items, create-only, the job document first."""
        doc = {
            **dataclasses.asdict(job),
            "operations": list(job.operations),
            "counts": {"queued": len(items)},
            "updated_at": job.created_at,
        }
        writes: list[tuple[Any, dict[str, Any]]] = [(self._jobs.document(job.job_id), doc)]
        items_ref = self._jobs.document(job.job_id).collection(ITEMS)
        writes += [(items_ref.document(_item_id(item.index)), _item_document(item)) for item in items]
        for start in range(0, len(writes), _BATCH):
            batch = self._db.batch()
            for ref, data in writes[start : start + _BATCH]:
                batch.create(ref, data)
            batch.commit()

    def get(self, job_id: str) -> tuple[JobRecord, Counts] | None:
        snap = self._jobs.document(job_id).get()
        return _job(snap.to_dict()) if snap.exists else None

    def list(self, team: str, *, limit: int, start_after: str | None = None) -> list[tuple[JobRecord, Counts]] | None:
        """The team's jobs, newest first; None when `start_after` names a job that no longer exists."""
        query = self._jobs.where(filter=firestore.FieldFilter("team", "==", team)).order_by(
            "created_at", direction=firestore.Query.DESCENDING
        )
        if start_after is not None:
            cursor = self._jobs.document(start_after).get()
            if not cursor.exists or cursor.get("team") != team:
                return None
            query = query.start_after(cursor)
        return [_job(snap.to_dict()) for snap in query.limit(limit).stream()]

    def cancel(self, job_id: str) -> int:
        """Mark the job cancelled and cancel its items that have not started; how many were cancelled."""
        self._jobs.document(job_id).update({"cancelled": True, "updated_at": _now()})
        cancelled = 0
        query = self._items(job_id).where(filter=firestore.FieldFilter("state", "==", ItemState.QUEUED.value))
        for snap in query.stream():
            current = Versioned(_item(snap.to_dict()), snap.update_time)
            if self._move(current, ItemState.CANCELLED, {"finished_at": _now()}):
                cancelled += 1
        return cancelled

    # -- items -----------------------------------------------------------------

    def items(self, job_id: str) -> list[JobItem]:
        return [_item(snap.to_dict()) for snap in self._items(job_id).order_by("index").stream()]

    def item(self, job_id: str, index: int) -> Versioned | None:
        snap = self._items(job_id).document(_item_id(index)).get()
        return Versioned(_item(snap.to_dict()), snap.update_time) if snap.exists else None

    def start(self, current: Versioned, worker: str) -> Versioned | None:
        """Claim the item for a run (from queued, or from running after a lost attempt); None when
        someone else changed it since `current` was read."""
        fields = {"attempts": firestore.Increment(1), "worker": worker}
        if current.item.started_at is None:
            fields["started_at"] = _now()
        return self._move(current, ItemState.RUNNING, fields)

    def finish(self, current: Versioned, outputs: list[str]) -> bool:
        return (
            self._move(current, ItemState.DONE, {"outputs": outputs, "error": None, "finished_at": _now()}) is not None
        )

    def fail(self, current: Versioned, reason: str) -> bool:
        return self._move(current, ItemState.FAILED, {"error": reason, "finished_at": _now()}) is not None

    def note_error(self, current: Versioned, reason: str) -> None:
        """Keep the reason a run failed for a retry (shown, and used if the item is given up)."""
        try:
            self._items(current.item.job_id).document(_item_id(current.item.index)).update({"error": reason})
        except gexc.NotFound:
            pass

    # -- items by input image ----------------------------------------------------

    def items_for_image(self, team: str, image_id: str) -> builtins.list[Versioned]:
        """Every job item of `team` whose input is the image `image_id` (one collection-group
        query on items.image_id, whose COLLECTION_GROUP single-field index firestore.tf declares;
        the same bytes in another team have the same id, so items are kept by their source object's team)."""
        query = self._db.collection_group(ITEMS).where(filter=firestore.FieldFilter("image_id", "==", image_id))
        found = []
        for snap in query.stream():
            item = _item(snap.to_dict())
            if item.source_object.startswith(f"teams/{team}/"):
                found.append(Versioned(item, snap.update_time))
        return sorted(found, key=lambda v: (v.item.job_id, v.item.index))

    def forget_outputs(self, current: Versioned, names: list[str], reason: str) -> None:
        """The item's outputs were deleted: its `outputs` emptied (downloads of them are 404) and
        `outputs_deleted` saying when, why and which (`names`). No precondition: it holds whatever the
        item's state; a deleted job is left alone."""
        item = current.item
        note = {"at": _now(), "reason": reason, "names": list(names)}
        try:
            self._items(item.job_id).document(_item_id(item.index)).update({"outputs": [], "outputs_deleted": note})
        except gexc.NotFound:
            pass

    def _move(self, current: Versioned, state: ItemState, fields: dict[str, Any]) -> Versioned | None:
        item = current.item
        ref = self._items(item.job_id).document(_item_id(item.index))
        batch = self._db.batch()
        batch.update(
            ref, {**fields, "state": state.value}, option=self._db.write_option(last_update_time=current.version)
        )
        if item.state != state:
            batch.update(
                self._jobs.document(item.job_id),
                {
                    f"counts.{item.state.value}": firestore.Increment(-1),
                    f"counts.{state.value}": firestore.Increment(1),
                    "updated_at": _now(),
                },
            )
        try:
            results = batch.commit()
        except (gexc.FailedPrecondition, gexc.NotFound, gexc.Aborted):
            return None
        moved = {k: v for k, v in fields.items() if k in _ITEM_FIELDS and not isinstance(v, firestore.Increment)}
        if "attempts" in fields:
            moved["attempts"] = item.attempts + 1
        if "outputs" in moved:
            moved["outputs"] = tuple(moved["outputs"])
        return Versioned(dataclasses.replace(item, state=state, **moved), results[0].update_time)

    def _items(self, job_id: str):
        return self._jobs.document(job_id).collection(ITEMS)


def _item_document(item: JobItem) -> dict[str, Any]:
    doc = dataclasses.asdict(item)
    doc["state"] = item.state.value
    doc["outputs"] = list(item.outputs)
    return doc


def _item(doc: dict[str, Any]) -> JobItem:
    values = {k: v for k, v in doc.items() if k in _ITEM_FIELDS}
    values["state"] = ItemState(values["state"])
    values["outputs"] = tuple(values.get("outputs") or ())
    return JobItem(**values)


def _job(doc: dict[str, Any]) -> tuple[JobRecord, Counts]:
    names = {f.name for f in dataclasses.fields(JobRecord)}
    values = {k: v for k, v in doc.items() if k in names}
    values["operations"] = tuple(values.get("operations") or ())
    counts = doc.get("counts") or {}
    return JobRecord(**values), Counts(**{state.value: max(0, int(counts.get(state.value, 0))) for state in ItemState})
