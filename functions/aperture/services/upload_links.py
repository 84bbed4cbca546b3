"""Upload links (spec S6): a bearer URL for uploads without a key, and V4 signed
URLs for direct uploads of large files into `incoming/` (filed by `incoming`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aperture.domain.errors import ApiError
from aperture.domain.records import UploadLink
from aperture.services.uploads import LinkSlots

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from aperture.storage.upload_links import UploadLinkStore
    from aperture.storage.url_signing import UrlSigner

DIRECT_CONTENT_TYPE = "application/octet-stream"


def incoming_name(team: str, link_id: str, n: int) -> str:
    return f"incoming/{team}/{link_id}/{n}"


@dataclass(frozen=True)
class NewLink:
    link: UploadLink
    token: str
    direct_uploads: list[dict[str, Any]]


class LinkService:
    def __init__(self, links: UploadLinkStore, signer: UrlSigner, bucket: str):
        self._links = links
        self._signer = signer
        self._bucket = bucket

    def create(
        self, team: str, *, max_files: int, lifetime: dt.timedelta, signed_urls: int, created_by: dict[str, Any]
    ) -> NewLink:
        link, token = self._links.create(team, max_files, lifetime, created_by)
        direct = [
            {
                "method": "PUT",
                "url": self._signer.put_url(
                    self._bucket, incoming_name(team, link.link_id, n), link.expires_at, DIRECT_CONTENT_TYPE
                ),
                "headers": {"Content-Type": DIRECT_CONTENT_TYPE},
            }
            for n in range(signed_urls)
        ]
        return NewLink(link, token, direct)

    def open(self, token: str) -> tuple[UploadLink, LinkSlots]:
        """The live link a token names and its slots; 404 unknown, 410 expired."""
        found = self._links.find(token)
        if found is None:
            raise ApiError(404, "unknown upload link")
        link, digest = found
        if link.expired():
            raise ApiError(410, f"this upload link expired at {link.expires_at.isoformat()}")
        return link, LinkSlots(
            claim=lambda: self._links.claim(digest, link.max_files),
            release=lambda slot: self._links.release(digest, slot),
        )
