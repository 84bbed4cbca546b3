"""HTTP surface of the `stats` function (spec S4): /health and /stats/{image}/{func}.

Routing, content negotiation and caching headers live here; the numbers come
from `statistics` over histograms that `StatsService` keeps per object
generation.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import flask

from aperture.api.errors import json_errors
from aperture.api.json_io import empty_response
from aperture.domain import stats as statistics
from aperture.domain.errors import ApiError, not_found
from aperture.domain.imaging import pixels
from aperture.domain.records import ObjectInfo
from aperture.runtime.timing import Timings
from aperture.services.stats import ImageHistograms, StatsService

if TYPE_CHECKING:
    from aperture.container import Container

CHANNELS = ("r", "g", "b", "a", "l", "luma")
_ALLOWED = "GET, HEAD"


@dataclass(frozen=True)
class StatsAnswers:
    """Answers statistics requests over one service's histograms (S4 semantics)."""

    service: StatsService
    cache_control: str

    def answer(
        self, request: flask.Request, info: ObjectInfo, label: str, func_name: str, timings: Timings
    ) -> flask.Response:
        func, channel = parse_stat_request(request, func_name)
        return answer(request, info, label, func, channel, self.service, timings, self.cache_control)

    def answer_current(self, request: flask.Request, bucket: str, name: str, func_name: str) -> flask.Response:
        """The statistic over the object's current generation, whatever it is (404 when none)."""
        func, channel = parse_stat_request(request, func_name)
        timings = Timings()
        if request.if_none_match:
            # A revalidation may be answered 304 from the generation alone: no bytes.
            with timings.span("metadata"):
                info = self.service.find(bucket, name)
            if info is None:
                raise not_found(f"image {name!r} not found")
            return answer(request, info, name, func, channel, self.service, timings, self.cache_control)
        try:
            found = self.service.current(bucket, name, need_luma=channel == "luma", timings=timings)
        except pixels.ImageError as exc:
            raise exc.refusal(name) from None
        if found is None:
            raise not_found(f"image {name!r} not found")
        info, hists, source = found
        etag = _etag(info.bucket, info.name, info.generation, func.name, channel, _wants_json(request))
        headers = _headers(etag, self.cache_control)
        return respond(request, info, name, func, channel, hists, source, self.service, timings, headers)


def build(container: Container) -> Callable[[flask.Request], flask.Response]:
    """The `stats` function: /health and /stats/{image}/{func} over the source bucket."""
    config = container.config
    return SourceStats(config.source_bucket, StatsAnswers(container.source_stats, config.stats_cache_control)).handle


@dataclass(frozen=True)
class SourceStats:
    bucket: str
    answers: StatsAnswers

    def handle(self, request: flask.Request) -> flask.Response:
        return json_errors(self._handle)(request)

    def _handle(self, request: flask.Request) -> flask.Response:
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
        parse_stat_request(request, func_name)  # a bad function or channel is refused before any I/O
        return self.answers.answer_current(request, self.bucket, image, func_name)


def parse_stat_request(request: flask.Request, func_name: str) -> tuple[statistics.StatFunction, str | None]:
    """The function (404 when unsupported, as S4 says) and the channel (400 when unknown)."""
    try:
        func = statistics.parse_function(func_name)
    except statistics.UnknownFunction:
        raise not_found(
            f"unsupported function {func_name!r}: use min, max, mean, median or pXX with XX in 0..100"
        ) from None
    channel = request.args.get("channel")
    if channel is not None and channel not in CHANNELS:
        raise ApiError(400, f"unknown channel {channel!r}: use one of {', '.join(CHANNELS)}")
    return func, channel


def answer(
    request: flask.Request,
    info: ObjectInfo,
    label: str,
    func: statistics.StatFunction,
    channel: str | None,
    service: StatsService,
    timings: Timings,
    cache_control: str,
) -> flask.Response:
    """The statistic over one object generation, with ETag/304, text or JSON (S4)."""
    etag = _etag(info.bucket, info.name, info.generation, func.name, channel, _wants_json(request))
    headers = _headers(etag, cache_control)
    if request.if_none_match.contains_weak(etag):  # If-None-Match compares weakly (RFC 9110)
        return empty_response(304, headers)
    try:
        hists, source = service.histograms(info, need_luma=channel == "luma", timings=timings)
    except pixels.ImageError as exc:
        raise exc.refusal(label) from None
    return respond(request, info, label, func, channel, hists, source, service, timings, headers)


def respond(
    request: flask.Request,
    info: ObjectInfo,
    label: str,
    func: statistics.StatFunction,
    channel: str | None,
    hists: ImageHistograms,
    source: str,
    service: StatsService,
    timings: Timings,
    headers: dict[str, str],
) -> flask.Response:
    """The answer carrying the statistic of `hists` (text, or JSON when asked for)."""
    wants_json = _wants_json(request)
    band = _band(hists, channel)
    value = func.apply(band)
    headers["X-Aperture-Cache"] = source
    headers["Server-Timing"] = timings.header()
    finish = functools.partial(service.finish, info)
    if wants_json:
        body = {
            "image": label,
            "function": func.name,
            "channel": channel or "all",
            "value": value,
            "generation": str(info.generation),
            "width": hists.width,
            "height": hists.height,
            "mode": hists.mode,
            "format": hists.format,
            "frames": hists.frames,
            "samples": band.total,
            "cache": source,
        }
        response = flask.Response(json.dumps(body), status=200, mimetype="application/json", headers=headers)
    else:
        response = flask.Response(statistics.format_value(value), status=200, mimetype="text/plain", headers=headers)
    response.call_on_close(finish)  # deferred histogram work starts once the answer is sent
    return response


def _headers(etag: str, cache_control: str) -> dict[str, str]:
    return {"ETag": f'"{etag}"', "Cache-Control": cache_control, "Vary": "Accept"}


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
