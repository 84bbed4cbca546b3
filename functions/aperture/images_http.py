"""The `images` function (spec S8): list, metadata, delete, download and
convert, statistics on team images, and the team's upload statistics.

Every route goes through `team_route`; a record of another team is answered
exactly like a missing one (404 "image not found").
"""

from __future__ import annotations

import base64
import hashlib
import datetime as dt
import json
import re
from typing import Any, Callable

import flask
from werkzeug.routing import Map, Rule

from aperture import pixels, services, stats_http, transforms
from aperture.access import Principal, default_access, team_route
from aperture.config import get_config
from aperture.counters import Totals
from aperture.http_errors import ApiError
from aperture.http_io import dispatch, json_response
from aperture.timing import Timings

IMAGE_ID = re.compile(r"[0-9a-f]{64}")
MAX_PAGE = 200
STATS_DAYS = 30

ROUTES = Map(
    [
        Rule("/v1/images", methods=["GET"], endpoint="list"),
        Rule("/v1/images/<image>", methods=["GET", "HEAD"], endpoint="get"),
        Rule("/v1/images/<image>", methods=["DELETE"], endpoint="delete"),
        Rule("/v1/images/<image>/original", methods=["GET", "HEAD"], endpoint="original"),
        Rule("/v1/images/<image>/stats/<func>", methods=["GET", "HEAD"], endpoint="stats"),
        Rule("/v1/stats", methods=["GET"], endpoint="upload_stats"),
    ],
    strict_slashes=False,
)

# Fields of a record clients never see (internal or bulky).
_HIDDEN = {"embedding", "histograms", "bucket"}


def today() -> dt.date:
    """The clock of `GET /v1/stats` (tests replace it)."""
    return dt.datetime.now(dt.timezone.utc).date()


@team_route(default_access)
def handle(request: flask.Request, principal: Principal) -> flask.Response:
    endpoint, args = dispatch(ROUTES, request)
    return _HANDLERS[endpoint](request, principal, **args)


def find(principal: Principal, image_id: str) -> dict[str, Any]:
    """The caller's record, or 404, identical for malformed, missing and other teams' ids."""
    record = services.images().get(principal.team, image_id) if IMAGE_ID.fullmatch(image_id) else None
    if record is None:
        raise ApiError(404, "image not found")
    return record


def view(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k not in _HIDDEN}
    if "embedding" in record:
        out["embedding_dimensions"] = len(list(record["embedding"]))
    return out


# -- list ------------------------------------------------------------------------


def list_images(request: flask.Request, principal: Principal) -> flask.Response:
    args = request.args
    unknown = set(args) - {"format", "camera", "label", "after", "before", "limit", "cursor"}
    if unknown:
        raise ApiError(400, f"unknown parameter(s): {', '.join(sorted(unknown))}")
    limit = _int(args.get("limit", "50"), "limit", 1, MAX_PAGE)
    filters = {name: args.get(name) for name in ("format", "camera", "label") if args.get(name)}
    if "format" in filters:
        filters["format"] = filters["format"].upper().replace("JPG", "JPEG")
    after, before = _time(args.get("after"), "after"), _time(args.get("before"), "before")
    cursor = _decode_cursor(args.get("cursor"), filters, after, before) if args.get("cursor") else None
    records = services.images().list(principal.team, filters=filters, after=after, before=before,
                                     limit=limit + 1, start_after=cursor)
    if records is None:
        raise ApiError(400, "cursor points at an image that was deleted; start again without a cursor")
    page, more = records[:limit], len(records) > limit
    next_cursor = _encode_cursor(page[-1], filters, after, before) if more and page else None
    return json_response({"images": [view(r) for r in page], "next_cursor": next_cursor})


def _int(raw: str, name: str, low: int, high: int) -> int:
    if not re.fullmatch(r"\d{1,6}", raw or "") or not low <= int(raw) <= high:
        raise ApiError(400, f"{name} must be an integer from {low} to {high}")
    return int(raw)


def _time(raw: str | None, name: str) -> dt.datetime | None:
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO 8601 date or time, e.g. 2026-11-22T10:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _query_key(filters, after, before) -> str:
    return json.dumps([filters, after.isoformat() if after else None, before.isoformat() if before else None],
                      sort_keys=True)


def _encode_cursor(record: dict, filters, after, before) -> str:
    raw = json.dumps({"id": record["id"], "q": _query_key(filters, after, before)})
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


# -- one image -------------------------------------------------------------------


def get_image(request: flask.Request, principal: Principal, image: str) -> flask.Response:
    image_id, dot, extension = image.partition(".")
    if dot:
        return download_converted(request, principal, image_id, extension)
    return json_response(view(find(principal, image_id)))


def delete_image(request: flask.Request, principal: Principal, image: str) -> flask.Response:
    record = find(principal, image)
    services.deleter().delete(record)
    return flask.Response(status=204)


def original(request: flask.Request, principal: Principal, image: str) -> flask.Response:
    record = find(principal, image)
    info = services.objects().info(record["bucket"], record["object"])
    if info is None:
        raise ApiError(404, "image not found")
    etag = f'"{record["id"]}"'  # content-addressed: the id is a perfect validator
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable",
               "Content-Disposition": f'inline; filename="{record["id"]}.{record["extension"]}"',
               "X-Content-Type-Options": "nosniff"}
    if request.if_none_match.contains_weak(record["id"]):
        return flask.Response(status=304, headers=headers)
    data = b"" if request.method == "HEAD" else services.objects().read(info)
    response = flask.Response(data, status=200, mimetype=record["mime_type"], headers=headers)
    response.headers["Content-Length"] = str(info.size)
    return response


def download_converted(request: flask.Request, principal: Principal, image_id: str, extension: str) -> flask.Response:
    """The image converted to `extension` with the `ops=` pipeline (or single-parameter forms) applied."""
    try:
        fmt = transforms.output_format(extension)
        pipeline = transforms.parse_query(request.args.items(multi=True))
    except transforms.InvalidOperation as exc:
        raise ApiError(400, str(exc)) from None
    if pipeline.splits:
        raise ApiError(400, "split gives four images: download one with split:tl, split:tr, split:bl or split:br "
                            "(batch jobs write all four)")
    record = find(principal, image_id)
    # Content-addressed source + canonical pipeline + format: the output never changes.
    etag = hashlib.sha256(f"{record['id']}\0{pipeline}\0{fmt.extension}".encode()).hexdigest()[:32]
    headers = {"ETag": f'"{etag}"', "Cache-Control": "private, max-age=31536000, immutable",
               "X-Content-Type-Options": "nosniff"}
    if request.if_none_match.contains_weak(etag):
        return flask.Response(status=304, headers=headers)
    info = services.objects().info(record["bucket"], record["object"])
    if info is None:
        raise ApiError(404, "image not found")
    timings = Timings()
    with timings.span("download"):
        data = services.objects().read(info)
    try:
        with timings.span("render"):
            [out] = transforms.render(data, pipeline, fmt.extension, max_pixels=get_config().max_pixels)
    except transforms.InvalidOperation as exc:
        raise ApiError(400, str(exc)) from None
    except (pixels.NotAnImage, pixels.TooManyPixels) as exc:
        raise ApiError(422, str(exc)) from None
    headers["Server-Timing"] = timings.header()
    headers["Content-Disposition"] = f'inline; filename="{record["id"]}.{out.extension}"'
    return flask.Response(out.data, status=200, mimetype=out.mime_type, headers=headers)


def image_stats(request: flask.Request, principal: Principal, image: str, func: str) -> flask.Response:
    parsed, channel = stats_http.parse_stat_request(request, func)
    record = find(principal, image)
    timings = Timings()
    with timings.span("metadata"):
        info = services.objects().info(record["bucket"], record["object"])
    if info is None:
        raise ApiError(404, "image not found")
    return stats_http.answer(request, info, record["id"], parsed, channel, services.team_stats(), timings)


# -- upload statistics -----------------------------------------------------------


def upload_stats(request: flask.Request, principal: Principal) -> flask.Response:
    return json_response(stats_view(services.counters().totals(principal.team), today()))


def stats_view(totals: Totals, day: dt.date, days: int = STATS_DAYS) -> dict[str, Any]:
    """S8's dashboard numbers from the counters: no scan of the images."""
    series = []
    for offset in range(days - 1, -1, -1):
        key = (day - dt.timedelta(days=offset)).isoformat()
        series.append({"date": key, "uploads": max(0, totals.days.get(key, 0))})
    formats = {k: v for k, v in totals.formats.items() if v > 0}
    cameras = sorted(((k, v) for k, v in totals.cameras.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))
    popular = max(formats.items(), key=lambda kv: (kv[1], kv[0]))[0] if formats else None
    return {
        "uploads_per_day": series,
        "total_images": sum(formats.values()),
        "most_popular_format": popular,
        "formats": formats,
        "top_cameras": [{"camera": k, "images": v} for k, v in cameras[:10]],
    }


_HANDLERS: dict[str, Callable[..., flask.Response]] = {
    "list": list_images, "get": get_image, "delete": delete_image, "original": original,
    "stats": image_stats, "upload_stats": upload_stats,
}
