"""Upload links: a bearer URL that lets anyone post files into one team until it expires.

The token is random and only its SHA-256 is stored (`upload_links/{hash}`).
A link admits at most `max_files` files; each accepted file claims a numbered
slot document, create-only, so concurrent uploads cannot overshoot the limit
without any read-modify-write transaction on the hot link document.
`revoke` sets `revoked_at` (the link then answers 410); `created_by.key_id`
names the key that made it, which the service checks is still live.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from aperture.domain.records import UploadLink

COLLECTION = "upload_links"
SLOTS = "slots"


def new_token() -> str:
    return "upl_" + secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UploadLinkStore:
    def __init__(self, db: firestore.Client):
        self._db = db
        self._collection = db.collection(COLLECTION)

    def create(
        self, team: str, max_files: int, lifetime: dt.timedelta, created_by: dict[str, Any]
    ) -> tuple[UploadLink, str]:
        token = new_token()
        digest = token_hash(token)
        now = dt.datetime.now(dt.timezone.utc)
        link = UploadLink(digest[:16], team, max_files, now + lifetime, now, created_by)
        self._collection.document(digest).create(
            {
                "link_id": link.link_id,
                "team": team,
                "max_files": max_files,
                "expires_at": link.expires_at,
                "created_at": now,
                "created_by": created_by,
                "used": 0,
            }
        )
        return link, token

    def find(self, token: str) -> tuple[UploadLink, str] | None:
        digest = token_hash(token)
        snap = self._collection.document(digest).get()
        if not snap.exists:
            return None
        return _link(snap.to_dict()), digest

    def find_by_id(self, link_id: str) -> tuple[UploadLink, str] | None:
        from google.cloud.firestore_v1.base_query import FieldFilter

        for snap in self._collection.where(filter=FieldFilter("link_id", "==", link_id)).limit(1).stream():
            return _link(snap.to_dict()), snap.id
        return None

    def revoke(self, digest: str) -> UploadLink:
        """Mark the link revoked (once: a second revoke keeps the first time); the link as it now is."""
        doc = self._collection.document(digest)
        now = dt.datetime.now(dt.timezone.utc)

        @firestore.transactional
        def revoke_in(transaction: firestore.Transaction) -> UploadLink:
            data = doc.get(transaction=transaction).to_dict()
            if data is None:
                raise gexc.NotFound(f"no upload link {digest}")
            if data.get("revoked_at") is None:
                transaction.update(doc, {"revoked_at": now})
                data["revoked_at"] = now
            return _link(data)

        return revoke_in(self._db.transaction())

    def claim(self, digest: str, max_files: int) -> str | None:
        """Take a free slot; None when all `max_files` are taken."""
        doc = self._collection.document(digest)
        used = (doc.get(field_paths=["used"]).to_dict() or {}).get("used", 0)
        for slot in range(min(used, max_files), max_files):
            try:
                doc.collection(SLOTS).document(str(slot)).create({"at": dt.datetime.now(dt.timezone.utc)})
            except gexc.AlreadyExists:
                continue
            doc.update({"used": firestore.Increment(1)})
            return str(slot)
        return None

    def release(self, digest: str, slot: str) -> None:
        doc = self._collection.document(digest)
        doc.collection(SLOTS).document(slot).delete()
        doc.update({"used": firestore.Increment(-1)})


def _link(data: dict[str, Any]) -> UploadLink:
    return UploadLink(
        data["link_id"],
        data["team"],
        data["max_files"],
        data["expires_at"],
        data["created_at"],
        data["created_by"],
        data.get("revoked_at"),
    )
