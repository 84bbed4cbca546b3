"""Team upload counters for `GET /v1/stats` (spec S8), exactly once per image.

Counts live in sharded documents (`counters/{team}_{shard}`) updated with
Increment transforms, so concurrent uploads never contend on one document.
Exactly-once comes from a marker document (`counted/{team}_{image}`) written
in the SAME commit as the increments: create-only when counting, delete with
an exists precondition when un-counting, so a redelivered event or a second
delete fails the whole commit and changes nothing.
"""

from __future__ import annotations

import random

from google.api_core import exceptions as gexc
from google.cloud import firestore

from aperture.domain.records import Contribution, Totals

COLLECTION = "counters"
MARKERS = "counted"
SHARDS = 10


class TeamCounters:
    def __init__(self, db: firestore.Client, shards: int = SHARDS):
        self._db = db
        self._shards = shards

    def add(self, team: str, image_id: str, contribution: Contribution) -> bool:
        """Count an image once; False when it was already counted."""
        return self._commit(team, image_id, contribution, +1)

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

    def totals(self, team: str) -> Totals:
        """Sum of the shards: a fixed number of reads however many images the team has."""
        refs = [self._db.collection(COLLECTION).document(f"{team}_{n}") for n in range(self._shards)]
        totals = Totals()
        for snap in self._db.get_all(refs):
            if not snap.exists:
                continue
            data = snap.to_dict()
            for name in ("days", "formats", "cameras"):
                target = getattr(totals, name)
                for key, value in (data.get(name) or {}).items():
                    target[key] = target.get(key, 0) + int(value)
        return totals
