"""HTTP surface of the `stats` function (spec S4): /health and /stats/{image}/{func}.

Routing, content negotiation and caching headers live here; the numbers come
from `statistics` over histograms that `StatsService` keeps per object
generation.
"""

from __future__ import annotations

import functools
import hashlib
import json

import flask

from aperture import clients, pixels, statistics
from aperture.config import get_config
from aperture.histogram_store import HistogramStore
from aperture.http_errors import ApiError, json_errors, not_found
from aperture.object_store import ObjectStore
from aperture.stats_service import ImageHistograms, StatsService
from aperture.timing import Timings

CHANNELS = ("r", "g", "b", "a", "l", "luma")
_ALLOWED = "GET, HEAD"


@functools.cache
def _service() -> StatsService:
    config = get_config()
    return StatsService(
        ObjectStore(clients.source_storage_client()),
        HistogramStore(clients.firestore_client(), ttl_days=config.histogram_ttl_days),
        max_pixels=config.max_pixels,
        memory_entries=config.stats_memory_entries,
        max_stored_bytes=config.histogram_max_bytes,
    )


@functools.cache
def _source_objects() -> ObjectStore:
    return ObjectStore(clients.source_storage_client())


@json_errors
def handle(request: flask.Request) -> flask.Response:
    path = request.path
    if path.rstrip("/") == "/health":
        return flask.Response("OK", status=200, mimetype="text/plain")
    if not path.startswith("/stats/"):
        raise not_found(f"no route for {path}")
    if request.method not in ("GET", "HEAD"):
        raise ApiError(405, f"method {request.method} is not allowed; use GET", {"Allow": _ALLOWED})
    image, _, func_name = path[len("/stats/") :].rpartition("/")
    if not image:
        raise not_found("path must be /stats/{image}/{func}")
    try:
        func = statistics.parse_function(func_name)
    except statistics.UnknownFunction:
        raise not_found(
            f"unsupported function {func_name!r}: use min, max, mean, median or pXX with XX in 0..100"
        ) from None
    channel = request.args.get("channel")
    if channel is not None and channel not in CHANNELS:
        raise ApiError(400, f"unknown channel {channel!r}: use one of {', '.join(CHANNELS)}")

    config = get_config()
    timings = Timings()
    with timings.span("metadata"):
        info = _source_objects().info(config.source_bucket, image)
    if info is None:
        raise not_found(f"image {image!r} not found")

    wants_json = _wants_json(request)
    etag = _etag(info.bucket, image, info.generation, func.name, channel, wants_json)
    headers = {"ETag": f'"{etag}"', "Cache-Control": config.stats_cache_control, "Vary": "Accept"}
    if request.if_none_match.contains_weak(etag):  # If-None-Match compares weakly (RFC 9110)
        return flask.Response(status=304, headers=headers)

    try:
        hists, source = _service().histograms(info, need_luma=channel == "luma", timings=timings)
    except pixels.TooManyPixels as exc:
        raise ApiError(422, str(exc)) from None
    except pixels.NotAnImage as exc:
        raise ApiError(422, f"object {image!r} is not a readable image: {exc}") from None
    value = func.apply(_band(hists, channel))
    headers["X-Aperture-Cache"] = source
    headers["Server-Timing"] = timings.header()

    if wants_json:
        body = {
            "image": image,
            "function": func.name,
            "channel": channel or "all",
            "value": value,
            "generation": str(info.generation),
            "width": hists.width,
            "height": hists.height,
            "mode": hists.mode,
            "format": hists.format,
            "frames": hists.frames,
            "samples": _band(hists, channel).total,
            "cache": source,
        }
        return flask.Response(json.dumps(body), status=200, mimetype="application/json", headers=headers)
    return flask.Response(statistics.format_value(value), status=200, mimetype="text/plain", headers=headers)


def _band(hists: ImageHistograms, channel: str | None) -> statistics.Histogram:
    try:
        return statistics.select(hists.bands, channel)
    except pixels.UnsupportedChannel as exc:
        raise ApiError(400, f"{exc} (this is a {hists.mode} image)") from None


def _wants_json(request: flask.Request) -> bool:
    accept = request.accept_mimetypes
    return accept["application/json"] > accept["text/plain"]


def _etag(bucket: str, name: str, generation: int, func: str, channel: str | None, as_json: bool) -> str:
    # The generation changes on every overwrite, so the tag does too.
    raw = f"{bucket}\0{name}\0{generation}\0{func}\0{channel}\0{int(as_json)}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


