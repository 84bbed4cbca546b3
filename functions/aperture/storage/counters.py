"""Team upload counters for `GET /v1/stats` (spec S8), exactly once per image.

Counts live in sharded documents (`counters/{team}_{shard}`) updated with
Increment transforms, so concurrent uploads never contend on one document.
Exactly-once comes from a marker document (`counted/{team}_{image}`) written
in the SAME commit as the increments: create-only when counting, delete with
an exists precondition when un-counting, so a redelivered event or a second
delete fails the whole commit and changes nothing.

Keys are bounded: a format or camera is counted under its `counter_key`
spelling (whitespace collapsed, control characters removed, length-capped),
a camera known in another letter case under its first spelling, and a team's
cameras beyond its first `max_cameras` distinct ones under "other". The
team's camera spellings live in `counter_keys/{team}` (folded key ->
spelling), added to in a transaction so concurrent new cameras cannot pass the
cap. The marker keeps the keys an image was counted under, so un-counting
takes back exactly what counting added.
"""

from __future__ import annotations

import dataclasses
import random

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from aperture.domain.records import (
    MAX_CAMERA_KEYS,
    OTHER_KEY,
    Contribution,
    Totals,
    counter_fold,
    counter_key,
    resolve_counter_key,
)

COLLECTION = "counters"
MARKERS = "counted"
KEYS = "counter_keys"
SHARDS = 10


class TeamCounters:
    def __init__(self, db: firestore.Client, shards: int = SHARDS, max_cameras: int = MAX_CAMERA_KEYS):
        self._db = db
        self._shards = shards
        self._max_cameras = max_cameras

    def add(self, team: str, image_id: str, contribution: Contribution) -> bool:
        """Count an image once (under its normalised, bounded keys); False when it was already counted."""
        camera = counter_key(contribution.camera)
        contribution = dataclasses.replace(
            contribution,
            format=counter_key(contribution.format) or OTHER_KEY,
            camera=self._camera_key(team, camera) if camera else None,
        )
        return self._commit(team, image_id, contribution, +1)

    def _camera_key(self, team: str, camera: str) -> str:
        ref = self._db.collection(KEYS).document(team)
        key, new = resolve_counter_key(camera, _known(ref.get()), self._max_cameras)
        if not new:
            return key

        @firestore.transactional
        def register(transaction) -> str:
            key, new = resolve_counter_key(camera, _known(ref.get(transaction=transaction)), self._max_cameras)
            if new:
                transaction.set(ref, {"team": team, "cameras": {counter_fold(key): key}}, merge=True)
            return key

        return register(self._db.transaction())

    def remove(self, team: str, image_id: str, contribution: Contribution) -> bool:
        """Take an image's share back once; False when it was not counted."""
        return self._commit(team, image_id, contribution, -1)

    def _commit(self, team: str, image_id: str, contribution: Contribution, sign: int) -> bool:
        marker = self._db.collection(MARKERS).document(f"{team}_{image_id}")
        batch = self._db.batch()
        if sign > 0:
            batch.create(
                marker,
                {"team": team, "day": contribution.day, "format": contribution.format, "camera": contribution.camera},
            )
        else:
            batch.delete(marker, option=self._db.write_option(exists=True))
        values: dict = {
            "days": {contribution.day: firestore.Increment(sign)},
            "formats": {contribution.format: firestore.Increment(sign)},
        }
        if contribution.camera:
            values["cameras"] = {contribution.camera: firestore.Increment(sign)}
        shard = self._db.collection(COLLECTION).document(f"{team}_{random.randrange(self._shards)}")
        batch.set(shard, {"team": team, **values}, merge=True)
        try:
            batch.commit()
        except (gexc.AlreadyExists, gexc.NotFound, gexc.FailedPrecondition):
            return False
        return True

    def counted(self, team: str, image_id: str) -> Contribution | None:
        snap = self._db.collection(MARKERS).document(f"{team}_{image_id}").get()
        if not snap.exists:
            return None
        data = snap.to_dict()
        return Contribution(data["day"], data["format"], data.get("camera"))

    def markers(self, team: str, limit: int) -> dict[str, Contribution]:
        """Up to `limit` of the team's markers: image id -> the keys it is counted under."""
        query = self._db.collection(MARKERS).where(filter=FieldFilter("team", "==", team))
        found = {}
        for snap in query.limit(limit).stream():
            data = snap.to_dict()
            found[snap.id.removeprefix(f"{team}_")] = Contribution(data["day"], data["format"], data.get("camera"))
        return found

    def rebuild(self, team: str, limit: int = 100_000) -> bool:
        """Make the team's totals the sum of its markers, in one transaction (the markers and shards
        it reads are locked, so a concurrent count or un-count lands on top of the new totals);
        False when they already were."""
        shards = [self._db.collection(COLLECTION).document(f"{team}_{n}") for n in range(self._shards)]
        query = self._db.collection(MARKERS).where(filter=FieldFilter("team", "==", team))
        markers = [snap.reference for snap in query.limit(limit).stream()]

        @firestore.transactional
        def run(transaction) -> bool:
            wanted = Totals()
            # (no read for a team without markers: a batch read of no documents is refused)
            for snap in self._db.get_all(markers, transaction=transaction) if markers else ():
                if snap.exists:
                    data = snap.to_dict()
                    _count(wanted, Contribution(data["day"], data["format"], data.get("camera")), +1)
            have = _sum(self._db.get_all(shards, transaction=transaction))
            if _clean(have) == _clean(wanted):
                return False
            for n, ref in enumerate(shards):
                fields = dataclasses.asdict(wanted) if n == 0 else {"days": {}, "formats": {}, "cameras": {}}
                transaction.set(ref, {"team": team, **fields})
            return True

        return run(self._db.transaction())

    def totals(self, team: str) -> Totals:
        """Sum of the shards: a fixed number of reads however many images the team has."""
        refs = [self._db.collection(COLLECTION).document(f"{team}_{n}") for n in range(self._shards)]
        return _sum(self._db.get_all(refs))


def _sum(snaps) -> Totals:
    totals = Totals()
    for snap in snaps:
        if not snap.exists:
            continue
        data = snap.to_dict()
        for name in ("days", "formats", "cameras"):
            target = getattr(totals, name)
            for key, value in (data.get(name) or {}).items():
                target[key] = target.get(key, 0) + int(value)
    return totals


def _count(totals: Totals, contribution: Contribution, sign: int) -> None:
    totals.days[contribution.day] = totals.days.get(contribution.day, 0) + sign
    totals.formats[contribution.format] = totals.formats.get(contribution.format, 0) + sign
    if contribution.camera:
        totals.cameras[contribution.camera] = totals.cameras.get(contribution.camera, 0) + sign


def _clean(totals: Totals) -> tuple[dict[str, int], ...]:
    """The totals without zero counts (a key counted and un-counted stays in the shard at 0)."""
    return tuple({k: v for k, v in getattr(totals, name).items() if v} for name in ("days", "formats", "cameras"))


def _known(snap) -> dict[str, str]:
    """The team's camera keys, folded -> spelling."""
    if not snap.exists:
        return {}
    return dict((snap.to_dict() or {}).get("cameras") or {})
