"""Upload links (spec S6): a bearer URL for uploads without a key, and V4 signed
URLs for direct uploads of large files into `incoming/` (filed by `incoming`).

A link works until it expires, is revoked (`revoke`, by a member of its team),
or the key that made it is revoked: every use checks that key through the
same `Access` path (and cache) as a key check, so a link lives no longer than
its key. Signed PUT URLs carry, signed, the largest file size
(`x-goog-content-length-range: 0,<max_file_bytes>`) and a create-only
precondition (`x-goog-if-generation-match: 0`): Cloud Storage refuses a bigger
body (400) and a PUT while the object exists (412), so a replayed URL cannot
replace bytes that are waiting to be filed. Once `incoming` has filed and
removed the object, a replay is a new upload: it takes one of the link's
`max_files` slots like any other, and none once the link is revoked.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aperture.domain.errors import ApiError
from aperture.domain.records import Principal, UploadLink
from aperture.services.uploads import LinkSlots

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from aperture.storage.upload_links import UploadLinkStore
    from aperture.storage.url_signing import UrlSigner

DIRECT_CONTENT_TYPE = "application/octet-stream"
LINK_ID = re.compile(r"[0-9a-f]{16}")
REVOKED = "this upload link was revoked"
KEY_REVOKED = "this upload link was revoked with the key that made it"


class KeyLiveness(Protocol):
    """Is the key with this id still good? (`aperture.services.access.Access.key_live`)"""

    def key_live(self, key_id: str | None) -> bool: ...


def incoming_name(team: str, link_id: str, n: int) -> str:
    return f"incoming/{team}/{link_id}/{n}"


def direct_headers(max_file_bytes: int) -> dict[str, str]:
    """The headers a direct upload must send, exactly as signed."""
    return {
        "Content-Type": DIRECT_CONTENT_TYPE,
        "x-goog-content-length-range": f"0,{max_file_bytes}",
        "x-goog-if-generation-match": "0",
    }


@dataclass(frozen=True)
class NewLink:
    link: UploadLink
    token: str
    direct_uploads: list[dict[str, Any]]


class LinkService:
    def __init__(
        self, links: UploadLinkStore, signer: UrlSigner, bucket: str, keys: KeyLiveness, *, max_file_bytes: int
    ):
        self._links = links
        self._signer = signer
        self._bucket = bucket
        self._keys = keys
        self._max_file_bytes = max_file_bytes

    def create(
        self, team: str, *, max_files: int, lifetime: dt.timedelta, signed_urls: int, created_by: dict[str, Any]
    ) -> NewLink:
        link, token = self._links.create(team, max_files, lifetime, created_by)
        headers = direct_headers(self._max_file_bytes)
        signed = {k: v for k, v in headers.items() if k != "Content-Type"}  # content type: its own V4 field
        direct = [
            {
                "method": "PUT",
                "url": self._signer.put_url(
                    self._bucket,
                    incoming_name(team, link.link_id, n),
                    link.expires_at,
                    DIRECT_CONTENT_TYPE,
                    signed,
                ),
                "headers": dict(headers),
            }
            for n in range(signed_urls)
        ]
        return NewLink(link, token, direct)

    def find(self, token: str) -> tuple[UploadLink, str]:
        """The link a token names and its document id; 404 unknown."""
        found = self._links.find(token)
        if found is None:
            raise ApiError(404, "unknown upload link")
        return found

    def admit(self, link: UploadLink, digest: str) -> LinkSlots:
        """The slots of a link that still works; 410 when it expired, was revoked, or its key was."""
        if link.revoked:
            raise ApiError(410, REVOKED)
        if link.expired():
            raise ApiError(410, f"this upload link expired at {link.expires_at.isoformat()}")
        if not self._keys.key_live(link.creator_key_id):
            raise ApiError(410, KEY_REVOKED)
        return LinkSlots(
            claim=lambda: self._links.claim(digest, link.max_files),
            release=lambda slot: self._links.release(digest, slot),
        )

    def open(self, token: str) -> tuple[UploadLink, LinkSlots]:
        """The live link a token names and its slots; 404 unknown, 410 expired or revoked."""
        link, digest = self.find(token)
        return link, self.admit(link, digest)

    def revoke(self, principal: Principal, link_id: str) -> UploadLink:
        """Revoke one of the caller's team's links (again: no change); 404 for any other."""
        principal.require_role("member")
        found = self._links.find_by_id(link_id) if LINK_ID.fullmatch(link_id) else None
        if found is None:
            raise ApiError(404, "upload link not found")
        link, digest = found
        principal.require_team(link.team, "upload link")
        return link if link.revoked else self._links.revoke(digest)
