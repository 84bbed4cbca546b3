"""The `search` function (spec S10): natural-language search and "more like this".

* `GET /v1/search?q=&limit=&min_score=&format=&camera=&after=&before=`
* `GET /v1/images/{id}/similar?limit=&min_score=`
* `GET /v1/search/model` — the model current embeddings come from, and the default threshold
* `POST /v1/images/{id}/embedding` — embed an image again with the current model (`aperture reindex`)

Results never leave the caller's team; another team's id answers 404.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flask

from aperture.api.auth import keyed
from aperture.api.image_links import ImageLinks
from aperture.api.json_io import json_response, parse_time
from aperture.api.routing import Router
from aperture.domain.errors import ApiError
from aperture.domain.records import Principal
from aperture.services.search import MAX_LIMIT, Filters, Hit, SearchService

if TYPE_CHECKING:
    from aperture.container import Container

_LIMIT = re.compile(r"\d{1,4}")
_SCORE = re.compile(r"-?(?:\d{1,3}(?:\.\d{1,9})?|\.\d{1,9})")


def build(container: Container) -> Callable[[flask.Request], flask.Response]:
    """The `search` function's handler, over the container's services."""
    links = ImageLinks(container.links, container.config.public_url)
    return keyed(container.access, SearchApi(container.search, links=links).router)


class SearchApi:
    def __init__(self, search: SearchService, *, links: ImageLinks):
        self.search = search
        self.links = links
        self.router = Router(
            [
                ("/v1/search", ("GET",), self.query),
                ("/v1/search/model", ("GET",), self.model),
                ("/v1/images/<image>/similar", ("GET",), self.similar),
                ("/v1/images/<image>/embedding", ("POST",), self.reembed),
            ]
        )

    def query(self, request: flask.Request, principal: Principal) -> flask.Response:
        args = request.args
        _known(args, {"q", "limit", "min_score", "format", "camera", "after", "before"})
        fmt = args.get("format")
        filters = Filters(
            format=fmt.upper().replace("JPG", "JPEG") if fmt else None,
            camera=args.get("camera") or None,
            after=parse_time(args.get("after"), "after"),
            before=parse_time(args.get("before"), "before"),
        )
        hits = self.search.search(
            principal.team, args.get("q", ""), limit=_limit(args), min_score=_score(args), filters=filters
        )
        return self._answer(request, hits)

    def similar(self, request: flask.Request, principal: Principal, image: str) -> flask.Response:
        _known(request.args, {"limit", "min_score"})
        hits = self.search.similar(principal.team, image, limit=_limit(request.args), min_score=_score(request.args))
        return self._answer(request, hits)

    def model(self, request: flask.Request, principal: Principal) -> flask.Response:
        return json_response(
            {"embedding_model": self.search.model, "default_min_score": self.search.default_min_score()}
        )

    def reembed(self, request: flask.Request, principal: Principal, image: str) -> flask.Response:
        principal.require_role("member")
        return json_response(self.search.reembed(principal.team, image))

    def _answer(self, request: flask.Request, hits: list[Hit]) -> flask.Response:
        base = self.links.base(request)
        return json_response(
            {"results": [_hit_view(self.links, base, hit) for hit in hits], "embedding_model": self.search.model},
            headers={"Cache-Control": "private, no-store"},
        )


def _hit_view(links: ImageLinks, base: str, hit: Hit) -> dict[str, Any]:
    record = hit.record
    return {
        "id": record.id,
        "score": round(hit.score, 6),
        "labels": record.labels,
        "format": record.format,
        "width": record.width,
        "height": record.height,
        "size": record.size,
        "filename": record.filename,
        "camera": record.camera,
        "created_at": record.created_at,
        "thumbnail_url": links.thumbnail(base, record),
    }


def _known(args, names: set[str]) -> None:
    unknown = set(args) - names
    if unknown:
        raise ApiError(400, f"unknown parameter(s): {', '.join(sorted(unknown))}")


def _limit(args) -> int:
    raw = args.get("limit", "20")
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def _score(args) -> float | None:
    raw = args.get("min_score")
    if raw is None:
        return None
    if not _SCORE.fullmatch(raw) or not -1.0 <= float(raw) <= 1.0:
        raise ApiError(400, "min_score must be a number from -1 to 1 (a cosine similarity)")
    return float(raw)
