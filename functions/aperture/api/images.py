"""The `images` function (spec S8): list, metadata, delete, download and
convert, statistics on team images, and the team's upload statistics.

A download (the original or a conversion) whose body is over
APERTURE_MAX_RESPONSE_BYTES, which API Gateway would refuse (its responses are
capped at 32 MiB), is answered with 307 and a signed URL of a copy in the
derived bucket (`ImageService.deliver`); a HEAD has no body and is answered as
before.

Every route goes through the key check (`api.auth.keyed`); a record of another team is answered
exactly like a missing one (404 "image not found"). Downloads (a conversion or the original) also
open by a signed link instead of a key (`api.image_links`, spec S11); listings and records carry
such links (`thumbnail_url`, `original_url`), and `POST /v1/images/{id}/links` makes one for any
format and operations. Conversions are kept in the rendition cache (`ImageService.rendition`):
`X-Rendition-Cache: hit` says one was served from it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import flask

from aperture.api.auth import keyed
from aperture.api.image_links import ImageLinks, image_download
from aperture.api.json_io import empty_response, json_response, parse_time, read_json
from aperture.api.routing import Router
from aperture.api.stats import StatsAnswers, parse_stat_request
from aperture.domain import links as signed
from aperture.domain import transforms
from aperture.domain.errors import ApiError
from aperture.domain.records import IMAGE_ID, ImageRecord, Principal
from aperture.runtime.timing import Timings
from aperture.services.images import Body, ImageService

if TYPE_CHECKING:
    from aperture.container import Container

MAX_PAGE = 200
# Statistics of a team's image: only its team may see them, so only the
# client may keep them (and revalidates by ETag, as S4's answers do).
TEAM_STATS_CACHE_CONTROL = "private, no-cache"


def today() -> dt.date:
    """The clock of `GET /v1/stats` (tests replace it)."""
    return dt.datetime.now(dt.timezone.utc).date()


def build(container: Container) -> Callable[[flask.Request], flask.Response]:
    """The `images` function's handler, over the container's services."""
    config = container.config
    links = ImageLinks(container.links, config.public_url)
    api = ImagesApi(
        container.image_service,
        # A team's image: its statistics are private (the source bucket's, S4, are public).
        StatsAnswers(container.team_stats, TEAM_STATS_CACHE_CONTROL),
        links,
        max_json_bytes=config.max_json_bytes,
    )
    return keyed(container.access, api.router, container.links, image_download)


class ImagesApi:
    def __init__(self, images: ImageService, stats: StatsAnswers, links: ImageLinks, *, max_json_bytes: int = 65536):
        self.images = images
        self.stats = stats
        self.links = links
        self.max_json_bytes = max_json_bytes
        self.router = Router(
            [
                ("/v1/images", ("GET",), self.list_images),
                ("/v1/images/<image>", ("GET", "HEAD"), self.get_image),
                ("/v1/images/<image>", ("DELETE",), self.delete_image),
                ("/v1/images/<image>/links", ("POST",), self.create_link),
                ("/v1/images/<image>/original", ("GET", "HEAD"), self.original),
                ("/v1/images/<image>/stats/<func>", ("GET", "HEAD"), self.image_stats),
                ("/v1/stats", ("GET",), self.upload_stats),
            ]
        )

    # -- list --------------------------------------------------------------------

    def list_images(self, request: flask.Request, principal: Principal) -> flask.Response:
        args = request.args
        unknown = set(args) - {"format", "camera", "label", "after", "before", "limit", "cursor"}
        if unknown:
            raise ApiError(400, f"unknown parameter(s): {', '.join(sorted(unknown))}")
        limit = _int(args.get("limit", "50"), "limit", 1, MAX_PAGE)
        filters = {name: args[name] for name in ("format", "camera", "label") if args.get(name)}
        if "format" in filters:
            filters["format"] = filters["format"].upper().replace("JPG", "JPEG")
        after, before = parse_time(args.get("after"), "after"), parse_time(args.get("before"), "before")
        cursor = _decode_cursor(args["cursor"], filters, after, before) if args.get("cursor") else None
        records = self.images.list(
            principal.team, filters=filters, after=after, before=before, limit=limit + 1, start_after=cursor
        )
        page, more = records[:limit], len(records) > limit
        next_cursor = _encode_cursor(page[-1], filters, after, before) if more and page else None
        base = self.links.base(request)
        views = [{**r.view(), **self.links.record_urls(base, r)} for r in page]
        return json_response({"images": views, "next_cursor": next_cursor})

    # -- one image ---------------------------------------------------------------

    def get_image(self, request: flask.Request, principal: Principal, image: str) -> flask.Response:
        image_id, dot, extension = image.partition(".")
        if dot:
            return self.download_converted(request, principal, image_id, extension)
        record = self.images.find(principal.team, image_id)
        return json_response({**record.view(), **self.links.record_urls(self.links.base(request), record)})

    def create_link(self, request: flask.Request, principal: Principal, image: str) -> flask.Response:
        """A signed link to the image, converted and transformed as asked, that opens without a key."""
        body = read_json(request, max_bytes=self.max_json_bytes, allowed={"format", "ops", "expires_in"})
        expires_in = body.get("expires_in", 3600)
        low, high = signed.MIN_LINK_SECONDS, signed.MAX_LINK_SECONDS
        if type(expires_in) is not int or not low <= expires_in <= high:
            raise ApiError(400, f"expires_in must be an integer number of seconds from {low} to {high}")
        fmt, ops = body.get("format"), body.get("ops")
        if (fmt is not None and not isinstance(fmt, str)) or (ops is not None and not isinstance(ops, str)):
            raise ApiError(400, "format and ops must be strings")
        if ops is not None and fmt is None:
            raise ApiError(400, "ops need a format (the original is served as uploaded)")
        params: list[tuple[str, str]] = []
        if fmt is not None:
            try:
                extension = transforms.output_format(fmt).extension
                pipeline = transforms.parse_ops(ops or "")
            except transforms.InvalidOperation as exc:
                raise ApiError(400, str(exc)) from None
            if pipeline.splits:
                raise ApiError(400, "split gives four images: link one with split:tl, split:tr, split:bl or split:br")
            path = f"/v1/images/{image}.{extension}"
            params = [("ops", str(pipeline))] if pipeline.ops else []
        else:
            path = f"/v1/images/{image}/original"
        record = self.images.find(principal.team, image)  # after the checks: a bad request costs no lookup
        expires = int(self.links.links.clock().timestamp()) + expires_in
        url = self.links.url(self.links.base(request), path, record.team, params, expires)
        expires_at = dt.datetime.fromtimestamp(expires, dt.timezone.utc).isoformat()
        return json_response({"url": url, "expires_at": expires_at}, 201)

    def delete_image(self, request: flask.Request, principal: Principal, image: str) -> flask.Response:
        self.images.delete(self.images.find(principal.team, image))
        return empty_response(204)

    def original(self, request: flask.Request, principal: Principal, image: str) -> flask.Response:
        record = self.images.find(principal.team, image)
        info = self.images.stored(record)
        etag = f'"{record.id}"'  # content-addressed: the id is a perfect validator
        headers = {
            "ETag": etag,
            "Cache-Control": "private, max-age=31536000, immutable",
            "Content-Disposition": f'inline; filename="{record.id}.{record.extension}"',
            "X-Content-Type-Options": "nosniff",
        }
        if request.if_none_match.contains_weak(record.id):
            return empty_response(304, headers)
        if request.method == "HEAD":
            body = Body()
        else:
            body = self.images.original(record, info)
            if body.url:
                return _redirect(body.url, headers)
        response = flask.Response(body.data, status=200, mimetype=record.mime_type, headers=headers)
        response.headers["Content-Length"] = str(info.size)
        return response

    def download_converted(
        self, request: flask.Request, principal: Principal, image_id: str, extension: str
    ) -> flask.Response:
        """The image converted to `extension` with the `ops=` pipeline (or single-parameter forms) applied."""
        try:
            fmt = transforms.output_format(extension)
            pipeline = transforms.parse_query(request.args.items(multi=True), ignore=signed.LINK_PARAMS)
        except transforms.InvalidOperation as exc:
            raise ApiError(400, str(exc)) from None
        if pipeline.splits:
            raise ApiError(
                400,
                "split gives four images: download one with split:tl, split:tr, split:bl or "
                "split:br (batch jobs write all four)",
            )
        record = self.images.find(principal.team, image_id)
        # Content-addressed source + canonical pipeline + format: the output never changes.
        etag = hashlib.sha256(f"{record.id}\0{pipeline}\0{fmt.extension}".encode()).hexdigest()[:32]
        headers = {
            "ETag": f'"{etag}"',
            "Cache-Control": "private, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        }
        if request.if_none_match.contains_weak(etag):
            return empty_response(304, headers)
        timings = Timings()
        out = self.images.rendition(record, pipeline, fmt.extension, timings)
        headers["Server-Timing"] = timings.header()
        headers["X-Rendition-Cache"] = "hit" if out.cached else "miss"
        filename = f"{record.id}.{out.extension}"
        headers["Content-Disposition"] = f'inline; filename="{filename}"'
        if request.method == "HEAD":
            return flask.Response(out.data, status=200, mimetype=out.mime_type, headers=headers)
        body = self.images.deliver_rendition(out, filename)
        if body.url:
            return _redirect(body.url, headers)
        return flask.Response(body.data, status=200, mimetype=out.mime_type, headers=headers)

    def image_stats(self, request: flask.Request, principal: Principal, image: str, func: str) -> flask.Response:
        parse_stat_request(request, func)  # a bad function or channel is refused before any lookup
        record = self.images.find(principal.team, image)
        timings = Timings()
        with timings.span("metadata"):
            info = self.images.stored(record)
        return self.stats.answer(request, info, record.id, func, timings)

    # -- upload statistics -------------------------------------------------------

    def upload_stats(self, request: flask.Request, principal: Principal) -> flask.Response:
        return json_response(self.images.upload_stats(principal.team, today()))


# -- responses ---------------------------------------------------------------------


def _redirect(url: str, headers: dict[str, str]) -> flask.Response:
    """307 to a signed URL of the body (too large for the gateway). The URL
    expires, so the redirect itself is never cached; the ETag stays, so a
    client holding the body still gets its 304."""
    kept = {k: v for k, v in headers.items() if k in ("ETag", "Server-Timing", "X-Content-Type-Options")}
    return empty_response(307, {**kept, "Location": url, "Cache-Control": "private, no-store"})


# -- query parameters and cursors -------------------------------------------------


def _int(raw: str, name: str, low: int, high: int) -> int:
    if not re.fullmatch(r"\d{1,6}", raw or "") or not low <= int(raw) <= high:
        raise ApiError(400, f"{name} must be an integer from {low} to {high}")
    return int(raw)


def _query_key(filters, after, before) -> str:
    return json.dumps(
        [filters, after.isoformat() if after else None, before.isoformat() if before else None], sort_keys=True
    )


def _encode_cursor(record: ImageRecord, filters, after, before) -> str:
    raw = json.dumps({"id": record.id, "q": _query_key(filters, after, before)})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(raw: str, filters, after, before) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        position, query = str(data["id"]), data["q"]
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "cursor is not one this API returned") from None
    if not IMAGE_ID.fullmatch(position):
        raise ApiError(400, "cursor is not one this API returned")
    if query != _query_key(filters, after, before):
        raise ApiError(400, "cursor belongs to a different query (filters changed)")
    return position
