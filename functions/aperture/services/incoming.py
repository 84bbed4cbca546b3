"""Direct uploads: objects that arrive in `incoming/{team}/{link_id}/{n}` through
an upload link's V4 signed URL (files too large for the function request limit).

The finalize trigger hands them here: the object is validated like an API
upload, filed under its content id (`teams/{team}/{id}.{ext}` plus a record)
and removed from `incoming/` whatever the outcome, so nothing unvalidated stays.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aperture.domain.records import TEAM_ID, ObjectInfo
from aperture.runtime import logs
from aperture.services.uploads import CREATED, DUPLICATE, LinkSlots, UploadService

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from aperture.storage.objects import ObjectStore
    from aperture.storage.upload_links import UploadLinkStore

PREFIX = "incoming/"
_NAME = re.compile(rf"incoming/({TEAM_ID.pattern})/([0-9a-f]{{16}})/(\d{{1,4}})")


def is_incoming(name: str) -> bool:
    return name.startswith(PREFIX)


def file_incoming(info: ObjectInfo, objects: ObjectStore, links: UploadLinkStore, uploads: UploadService) -> str:
    """File one direct upload; returns what happened (for logs and tests)."""
    try:
        outcome = _file(info, objects, links, uploads)
    finally:
        objects.delete(info.bucket, info.name, info.generation)
    logs.info("direct upload " + outcome, bucket=info.bucket, object=info.name, generation=info.generation)
    return outcome


def _file(info: ObjectInfo, objects: ObjectStore, links: UploadLinkStore, uploads: UploadService) -> str:
    match = _NAME.fullmatch(info.name)
    if match is None:
        return "rejected: not an upload-link object name"
    team, link_id, slot = match.groups()
    found = links.find_by_id(link_id)
    if found is None or found[0].team != team:
        return "rejected: no such upload link for this team"
    link, digest = found
    if link.revoked:
        return "rejected: the upload link was revoked"
    if info.size > uploads.max_file_bytes:
        return f"rejected: {info.size} bytes is over the limit of {uploads.max_file_bytes}"
    data = objects.read(info)
    result = uploads.add(
        team,
        f"direct-upload-{slot}",
        data,
        {"upload_link": link_id, "direct": True},
        slots=LinkSlots(claim=lambda: links.claim(digest, link.max_files), release=lambda s: links.release(digest, s)),
    )
    if result.status in (CREATED, DUPLICATE):
        return f"{result.status}: {result.id}"
    return f"rejected: {result.error}"
