"""Semantic search (spec S10): natural-language prompts and "more like this", ranked by cosine
similarity, inside the caller's team, among embeddings of the current model only.

Scores are cosine similarities (1 = the same direction). A default threshold
per provider drops unrelated images (chosen from scripts/bench/search_quality.py,
docs/search.md); `min_score` overrides it. Query embeddings are kept in a
bounded per-instance LRU, so a repeated query costs one vector query.
"""

from __future__ import annotations

import datetime as dt
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache

from aperture.domain.errors import ApiError
from aperture.domain.imaging import pixels
from aperture.domain.records import IMAGE_ID, ImageRecord, ImageStatus

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from aperture.storage.images import ImageStore
    from aperture.storage.objects import ObjectStore
    from aperture.vision.base import VisionProvider

MAX_QUERY = 500  # characters of a query; longer is 400 (docs/search.md)
MAX_LIMIT = 100
# Candidates fetched when filters (format, camera, time) are applied after the vector query.
FILTERED_CANDIDATES = 500
DEFAULT_MIN_SCORE = {"local": 0.30, "cloud": 0.08}


@dataclass(frozen=True)
class Hit:
    record: ImageRecord
    score: float


@dataclass(frozen=True)
class Filters:
    format: str | None = None
    camera: str | None = None
    after: dt.datetime | None = None
    before: dt.datetime | None = None

    def __bool__(self) -> bool:
        return any(value is not None for value in (self.format, self.camera, self.after, self.before))

    def keep(self, record: ImageRecord) -> bool:
        return (
            (self.format is None or record.format == self.format)
            and (self.camera is None or record.camera == self.camera)
            and (self.after is None or record.created_at >= self.after)
            and (self.before is None or record.created_at < self.before)
        )


class SearchService:
    def __init__(
        self,
        images: ImageStore,
        objects: ObjectStore,
        provider: Callable[[], VisionProvider],
        *,
        max_pixels: int,
        cache_entries: int = 1024,
        min_scores: dict[str, float] | None = None,
    ):
        self._images = images
        self._objects = objects
        self._provider = provider  # built on first use: the text model loads once per instance
        self._max_pixels = max_pixels
        self._cache: LRUCache = LRUCache(maxsize=cache_entries)
        self._lock = threading.Lock()
        self._min_scores = {**DEFAULT_MIN_SCORE, **(min_scores or {})}

    @property
    def model(self) -> str:
        return self._provider().model

    def default_min_score(self) -> float:
        return self._min_scores.get(self._provider().name, 0.0)

    def search(
        self, team: str, query: str, *, limit: int, min_score: float | None = None, filters: Filters = Filters()
    ) -> list[Hit]:
        text = normalize_query(query)
        vector = self.query_vector(text)
        return self._rank(team, vector, limit=limit, min_score=min_score, filters=filters)

    def similar(self, team: str, image_id: str, *, limit: int, min_score: float | None = None) -> list[Hit]:
        """The team's other images nearest to this one's embedding; 409 while it has none of the current model."""
        record = self._images.get(team, image_id) if IMAGE_ID.fullmatch(image_id) else None
        if record is None:
            raise ApiError(404, "image not found")
        if record.embedding is None or record.embedding_model != self.model:
            raise ApiError(
                409,
                "this image has no embedding of the current model yet (it is being processed, "
                "or needs `aperture reindex`); try again later",
            )
        hits = self._rank(team, record.embedding, limit=limit + 1, min_score=min_score, filters=Filters())
        return [hit for hit in hits if hit.record.id != image_id][:limit]

    def query_vector(self, text: str) -> list[float]:
        key = (self.model, text)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        vector = self._provider().embed_text(text)
        with self._lock:
            self._cache[key] = vector
        return vector

    def reembed(self, team: str, image_id: str) -> dict[str, Any]:
        """Embed an image again with the current model (after a provider or model change); idempotent."""
        record = self._images.get(team, image_id) if IMAGE_ID.fullmatch(image_id) else None
        if record is None:
            raise ApiError(404, "image not found")
        model = self.model
        if record.embedding_model == model:
            return {"id": image_id, "embedding_model": model, "changed": False}
        if record.status is not ImageStatus.PROCESSED:
            raise ApiError(409, f"this image is {record.status.value}; only processed images are re-embedded")
        info = self._objects.info(record.bucket, record.object)
        if info is None:
            raise ApiError(404, "image not found")
        image = pixels.normalize(pixels.open_image(self._objects.read(info), max_pixels=self._max_pixels))
        _, embedding = self._provider().analyze(image)
        self._images.set_embedding(record, embedding, model)
        return {"id": image_id, "embedding_model": model, "changed": True}

    def _rank(
        self, team: str, vector: list[float], *, limit: int, min_score: float | None, filters: Filters
    ) -> list[Hit]:
        if not 1 <= limit <= MAX_LIMIT + 1:
            raise ApiError(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
        threshold = self.default_min_score() if min_score is None else min_score
        fetch = FILTERED_CANDIDATES if filters else limit
        found = self._images.nearest(team, self.model, vector, limit=fetch, max_distance=1.0 - threshold)
        hits = [Hit(record, 1.0 - distance) for record, distance in found if filters.keep(record)]
        return [hit for hit in hits if hit.score >= threshold][:limit]


def normalize_query(query: str | None) -> str:
    """The query as embedded: NFC, whitespace collapsed; 400 when blank or over MAX_QUERY characters."""
    text = " ".join(unicodedata.normalize("NFC", query or "").split())
    if not text:
        raise ApiError(400, "q must be a non-empty search text")
    if len(text) > MAX_QUERY:
        raise ApiError(400, f"q is {len(text)} characters; the limit is {MAX_QUERY}")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in text):
        raise ApiError(400, "q contains control characters or unpaired surrogates")
    return text
