"""The `upload` function (spec S6): multi-file uploads and upload links.

* `POST /v1/images` (key): multipart, field `files` (or `image_files`).
* `POST /v1/upload-links` (key): a bearer URL for uploads without a key, plus
  optional V4 signed URLs for direct uploads of large files to `incoming/`.
* `DELETE /v1/upload-links/{id}` (key): revoke a link of the caller's team.
* `POST /v1/uploads/{token}` (no key): the upload link's URL. Audited like a
  keyed request, as the link (its id and team) with each file's outcome.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import flask

from aperture.api.auth import attempt, audited, keyed
from aperture.api.errors import guarded
from aperture.api.json_io import json_response, read_json
from aperture.api.multipart import read_file_parts
from aperture.api.routing import Router
from aperture.domain.errors import ApiError
from aperture.domain.records import Principal, UploadLink
from aperture.runtime.timing import Timings
from aperture.services.access import Access
from aperture.services.upload_links import LinkService
from aperture.services.uploads import LinkSlots, UploadService, overall_status

if TYPE_CHECKING:
    from aperture.container import Container

FILE_FIELDS = ("files", "image_files")
LINK_PREFIX = "/v1/uploads/"
AUDITED_FILES = 100  # files named per audit record of a link upload (the count is always exact)


@dataclass(frozen=True)
class UploadLimits:
    max_request_bytes: int
    max_files_per_request: int
    max_json_bytes: int
    max_link_seconds: int


def build(container: Container) -> Callable[[flask.Request], flask.Response]:
    """The `upload` function's handler, over the container's services."""
    config = container.config
    api = UploadsApi(
        container.uploads,
        container.link_service,
        UploadLimits(
            config.max_request_bytes, config.max_files_per_request, config.max_json_bytes, config.max_link_seconds
        ),
        public_url=config.public_url,
    )
    keyed_routes = keyed(container.access, api.keyed)

    def link_routes(request: flask.Request) -> flask.Response:
        return linked(container.access, api, request)

    def handle(request: flask.Request) -> flask.Response:
        return (link_routes if request.path.startswith(LINK_PREFIX) else keyed_routes)(request)

    return handle


@dataclass
class LinkUse:
    """What an upload through a link did, for its audit record."""

    link: UploadLink | None = None
    files: list[dict] | None = None


def linked(access: Access, api: UploadsApi, request: flask.Request) -> flask.Response:
    """An upload-link request, audited: who is the link (id, team), what is each file's outcome."""
    use = LinkUse()
    response, reason = guarded(request, lambda: api.link_upload(request, use))
    link = use.link
    record = attempt(
        request,
        response.status_code,
        None,
        reason,
        team=link.team if link else None,
        link_id=link.link_id if link else None,
        files=use.files,
    )
    return audited(access, record, response)


class UploadsApi:
    def __init__(self, uploads: UploadService, links: LinkService, limits: UploadLimits, *, public_url: str):
        self.uploads = uploads
        self.links = links
        self.limits = limits
        self.public_url = public_url
        self.keyed = Router(
            [
                ("/v1/images", ("POST",), self.upload),
                ("/v1/upload-links", ("POST",), self.create_link),
                ("/v1/upload-links/<link_id>", ("DELETE",), self.revoke_link),
            ]
        )
        self._link_routes = Router([("/v1/uploads/<token>", ("POST",), self._link_upload)])

    def upload(self, request: flask.Request, principal: Principal) -> flask.Response:
        principal.require_role("member")
        by = {"key_id": principal.key_id, "user_id": principal.user_id}
        return self._upload(request, principal.team, by)

    def link_upload(self, request: flask.Request, use: LinkUse | None = None) -> flask.Response:
        return self._link_routes(request, use or LinkUse())

    def _link_upload(self, request: flask.Request, use: LinkUse, token: str) -> flask.Response:
        link, digest = self.links.find(token)
        use.link = link
        slots = self.links.admit(link, digest)
        use.files = []
        return self._upload(request, link.team, {"upload_link": link.link_id}, slots, use.files)

    def _upload(
        self,
        request: flask.Request,
        team: str,
        uploaded_by: dict,
        slots: LinkSlots | None = None,
        outcomes: list[dict] | None = None,
    ) -> flask.Response:
        limits = self.limits
        if request.content_length is None:
            # A declared length lets us refuse oversized bodies before reading them.
            raise ApiError(411, "send a Content-Length header (chunked uploads are not accepted)")
        if request.content_length > limits.max_request_bytes:
            raise ApiError(413, f"request is {request.content_length} bytes; the limit is {limits.max_request_bytes}")
        if request.mimetype != "multipart/form-data":
            raise ApiError(415, "send the files as multipart/form-data in the field 'files'")
        timings = Timings()
        service = self.uploads
        started = []

        def start(part) -> None:  # validation and the object write begin while later files arrive
            if slots is None and len(started) < limits.max_files_per_request:
                started.append(service.start(team, part.filename, part.data))

        try:
            with timings.span("parse"):
                uploads = read_file_parts(
                    request.stream,
                    request.content_type,
                    FILE_FIELDS,
                    max_parts=limits.max_files_per_request * 2 + 20,
                    on_file=start,
                )
            if not uploads:
                raise ApiError(400, "no files: send them in the multipart field 'files' (or 'image_files')")
            if len(uploads) > limits.max_files_per_request:
                raise ApiError(413, f"{len(uploads)} files in one request; the limit is {limits.max_files_per_request}")
        except BaseException:
            service.abandon(team, started)  # refused (or cut off) after some files started: leave nothing
            raise
        files = [(upload.filename, upload.data) for upload in uploads]
        if slots is not None:  # upload links count files one by one against their slots
            results = [service.add(team, name, data, uploaded_by, slots=slots, timings=timings) for name, data in files]
        else:
            results = service.add_many(team, files, uploaded_by, timings=timings, started=started)
        if outcomes is not None:
            outcomes.extend(
                {"filename": r.filename[:200], "status": r.status, "id": r.id} for r in results[:AUDITED_FILES]
            )
        body = {
            "files": [r.view() for r in results],
            "mapping": {r.filename: r.id for r in results if r.id is not None},
        }
        return json_response(body, overall_status(results), {"Server-Timing": timings.header()})

    def create_link(self, request: flask.Request, principal: Principal) -> flask.Response:
        principal.require_role("member")
        limits = self.limits
        body = read_json(
            request, max_bytes=limits.max_json_bytes, allowed={"expiry_seconds", "max_files", "signed_urls"}
        )
        expiry = _int_field(body, "expiry_seconds", 3600, 60, limits.max_link_seconds)
        max_files = _int_field(body, "max_files", 10, 1, 1000)
        signed = _int_field(body, "signed_urls", 0, 0, min(max_files, 100))
        made = self.links.create(
            principal.team,
            max_files=max_files,
            lifetime=dt.timedelta(seconds=expiry),
            signed_urls=signed,
            created_by={"key_id": principal.key_id, "user_id": principal.user_id},
        )
        base = self.public_url or request.host_url.rstrip("/")
        return json_response(
            {
                "upload_id": made.link.link_id,
                "upload_url": f"{base}{LINK_PREFIX}{made.token}",
                "expires_at": made.link.expires_at,
                "max_files": max_files,
                "direct_uploads": made.direct_uploads,
            },
            201,
        )

    def revoke_link(self, request: flask.Request, principal: Principal, link_id: str) -> flask.Response:
        self.links.revoke(principal, link_id)
        return flask.Response(status=204)


def _int_field(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"{name} must be an integer from {low} to {high}")
    return value
