"""Histograms per object generation, computed once and served from caches.

Lookup order: the in-process LRU, then Firestore (shared by every instance),
then a computation. Concurrent lookups of the same generation share one
computation (single flight), so 20 identical cold requests decode once.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

from cachetools import LRUCache

from aperture import pixels, statistics
from aperture.histogram_store import HistogramStore, StoredHistograms
from aperture.object_store import ObjectInfo, ObjectStore

# Where a lookup's histograms came from; reported to clients and benchmarks.
COMPUTED, MEMORY, FIRESTORE = "computed", "memory", "firestore"


@dataclass(frozen=True)
class ImageHistograms:
    bands: dict[str, statistics.Histogram]
    width: int
    height: int
    mode: str
    format: str | None
    frames: int


class StatsService:
    def __init__(
        self,
        objects: ObjectStore,
        store: HistogramStore,
        *,
        max_pixels: int,
        memory_entries: int = 512,
        max_stored_bytes: int = 900_000,
        on_compute: Callable[[ObjectInfo], None] | None = None,
    ):
        self._objects = objects
        self._store = store
        self._max_pixels = max_pixels
        self._max_stored_bytes = max_stored_bytes
        self._memory: LRUCache = LRUCache(maxsize=memory_entries)
        self._lock = threading.Lock()
        self._inflight: dict[tuple, Future] = {}
        self._on_compute = on_compute

    def histograms(self, info: ObjectInfo) -> tuple[ImageHistograms, str]:
        key = (info.bucket, info.name, info.generation)
        with self._lock:
            cached = self._memory.get(key)
            if cached is not None:
                return cached, MEMORY
            future = self._inflight.get(key)
            leader = future is None
            if leader:
                future = self._inflight[key] = Future()
        if not leader:
            result, _ = future.result()
            return result, MEMORY
        try:
            result, source = self._load(info)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._inflight.pop(key, None)
        with self._lock:
            self._memory[key] = result
        future.set_result((result, source))
        return result, source

    def _load(self, info: ObjectInfo) -> tuple[ImageHistograms, str]:
        stored = self._store.get(info.bucket, info.name, info.generation)
        if stored is not None:
            return _from_stored(stored), FIRESTORE
        result, stored = self._compute(info)
        if len(stored.payload) <= self._max_stored_bytes:
            self._store.put(info.bucket, info.name, info.generation, stored)
        return result, COMPUTED

    def _compute(self, info: ObjectInfo) -> tuple[ImageHistograms, StoredHistograms]:
        if self._on_compute is not None:
            self._on_compute(info)
        reader = self._objects.stream(info)
        try:
            image = pixels.open_image(reader, max_pixels=self._max_pixels)
        finally:
            reader.close()
        fmt = image.format
        frames = getattr(image, "n_frames", 1)
        image = pixels.normalize(image)
        bands = statistics.image_histograms(image)
        result = ImageHistograms(bands, image.width, image.height, image.mode, fmt, frames)
        stored = StoredHistograms(
            payload=statistics.serialize(bands),
            width=image.width,
            height=image.height,
            mode=image.mode,
            format=fmt,
            frames=frames,
        )
        return result, stored


def _from_stored(stored: StoredHistograms) -> ImageHistograms:
    return ImageHistograms(
        bands=statistics.deserialize(stored.payload),
        width=stored.width,
        height=stored.height,
        mode=stored.mode,
        format=stored.format,
        frames=stored.frames,
    )
