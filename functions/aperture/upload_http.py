"""The `upload` function (spec S6): multi-file uploads and upload links.

* `POST /v1/images` (key): multipart, field `files` (or `image_files`).
* `POST /v1/upload-links` (key): a bearer URL for uploads without a key, plus
  optional V4 signed URLs for direct uploads of large files to `incoming/`.
* `POST /v1/uploads/{token}` (no key): the upload link's URL.
"""

from __future__ import annotations

import datetime as dt

import flask
from werkzeug.routing import Map, Rule

from aperture import services
from aperture.access import Principal, default_access, team_route
from aperture.config import get_config
from aperture.http_errors import ApiError, json_errors
from aperture.http_io import dispatch, json_response, read_json
from aperture.multipart_form import read_file_parts
from aperture.timing import Timings
from aperture.upload_service import overall_status

FILE_FIELDS = ("files", "image_files")
DIRECT_CONTENT_TYPE = "application/octet-stream"

ROUTES = Map(
    [
        Rule("/v1/images", methods=["POST"], endpoint="upload"),
        Rule("/v1/upload-links", methods=["POST"], endpoint="create_link"),
        Rule("/v1/uploads/<token>", methods=["POST"], endpoint="link_upload"),
    ],
    strict_slashes=False,
)


def handle(request: flask.Request) -> flask.Response:
    if request.path.startswith("/v1/uploads/"):
        return _handle_link_upload(request)
    return _handle_keyed(request)


@team_route(default_access)
def _handle_keyed(request: flask.Request, principal: Principal) -> flask.Response:
    endpoint, _ = dispatch(ROUTES, request)
    if endpoint == "upload":
        principal.require_role("member")
        by = {"key_id": principal.key_id, "user_id": principal.user_id}
        return _upload(request, principal.team, by)
    if endpoint == "create_link":
        return _create_link(request, principal)
    raise ApiError(404, f"no route for {request.path}")


@json_errors
def _handle_link_upload(request: flask.Request) -> flask.Response:
    _, args = dispatch(ROUTES, request)
    found = services.upload_links().find(args["token"])
    if found is None:
        raise ApiError(404, "unknown upload link")
    link, digest = found
    if link.expired():
        raise ApiError(410, f"this upload link expired at {link.expires_at.isoformat()}")
    return _upload(
        request, link.team, {"upload_link": link.link_id},
        claim=lambda: services.upload_links().claim(digest, link.max_files),
        release=lambda slot: services.upload_links().release(digest, slot),
    )


def _upload(request: flask.Request, team: str, uploaded_by: dict, **slots) -> flask.Response:
    config = get_config()
    if request.content_length is None:
        # A declared length lets us refuse oversized bodies before reading them.
        raise ApiError(411, "send a Content-Length header (chunked uploads are not accepted)")
    if request.content_length > config.max_request_bytes:
        raise ApiError(413, f"request is {request.content_length} bytes; the limit is {config.max_request_bytes}")
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "send the files as multipart/form-data in the field 'files'")
    timings = Timings()
    service = services.uploads()
    started = []

    def start(part) -> None:  # validation and the object write begin while later files arrive
        if not slots and len(started) < config.max_files_per_request:
            started.append(service.start(team, part.filename, part.data))

    try:
        with timings.span("parse"):
            uploads = read_file_parts(request.stream, request.content_type, FILE_FIELDS,
                                      max_parts=config.max_files_per_request * 2 + 20, on_file=start)
        if not uploads:
            raise ApiError(400, "no files: send them in the multipart field 'files' (or 'image_files')")
        if len(uploads) > config.max_files_per_request:
            raise ApiError(413, f"{len(uploads)} files in one request; the limit is {config.max_files_per_request}")
    except BaseException:
        service.abandon(team, started)  # refused (or cut off) after some files started: leave nothing
        raise
    files = [(upload.filename, upload.data) for upload in uploads]
    if slots:  # upload links count files one by one against their slots
        results = [service.add(team, name, data, uploaded_by, timings=timings, **slots)
                   for name, data in files]
    else:
        results = service.add_many(team, files, uploaded_by, timings=timings, started=started)
    body = {
        "files": [r.view() for r in results],
        "mapping": {r.filename: r.id for r in results if r.id is not None},
    }
    return json_response(body, overall_status(results), {"Server-Timing": timings.header()})


def _create_link(request: flask.Request, principal: Principal) -> flask.Response:
    principal.require_role("member")
    config = get_config()
    body = read_json(request, max_bytes=config.max_json_bytes, allowed={"expiry_seconds", "max_files", "signed_urls"})
    expiry = _int_field(body, "expiry_seconds", 3600, 60, config.max_link_seconds)
    max_files = _int_field(body, "max_files", 10, 1, 1000)
    signed = _int_field(body, "signed_urls", 0, 0, min(max_files, 100))
    link, token = services.upload_links().create(principal.team, max_files, dt.timedelta(seconds=expiry),
                                  {"key_id": principal.key_id, "user_id": principal.user_id})
    base = config.public_url or request.host_url.rstrip("/")
    direct = [
        {
            "method": "PUT",
            "url": services.url_signer().put_url(config.uploads_bucket, incoming_name(principal.team, link.link_id, n),
                                     link.expires_at, DIRECT_CONTENT_TYPE),
            "headers": {"Content-Type": DIRECT_CONTENT_TYPE},
        }
        for n in range(signed)
    ]
    return json_response(
        {
            "upload_id": link.link_id,
            "upload_url": f"{base}/v1/uploads/{token}",
            "expires_at": link.expires_at,
            "max_files": max_files,
            "direct_uploads": direct,
        },
        201,
    )


def incoming_name(team: str, link_id: str, n: int) -> str:
    return f"incoming/{team}/{link_id}/{n}"


def _int_field(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"{name} must be an integer from {low} to {high}")
    return value
