"""Histograms per object generation, computed once and served from caches.

Lookup order: the in-process LRU, then Firestore (shared by every instance;
only for images of at least `lookup_min_pixels`, which cost more to decode
than to fetch), then a computation. Concurrent lookups of the same generation share one
computation (single flight), so 20 identical cold requests decode once.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cachetools import LRUCache
from PIL import Image

from aperture.domain import stats as statistics
from aperture.domain.imaging import pixels
from aperture.domain.records import ObjectInfo, StoredHistograms
from aperture.runtime import logs
from aperture.runtime.timing import Timings

if TYPE_CHECKING:  # repositories are injected; their modules bring the Google clients
    from aperture.storage.histograms import HistogramStore
    from aperture.storage.objects import ObjectStore, StreamingReader

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
    # Set while the luma histogram is still being computed after a cold lookup.
    pending: Future | None = None


class StatsService:
    FINISH_AFTER = 0.2  # seconds: the latest the deferred work of a cold lookup starts

    def __init__(
        self,
        objects: ObjectStore,
        store: HistogramStore,
        *,
        max_pixels: int,
        memory_entries: int = 512,
        memory_bytes: int = 256 * 1024 * 1024,
        max_stored_bytes: int = 900_000,
        max_wide_pixels: int | None = None,
        lookup_min_pixels: int = 0,
    ):
        self._objects = objects
        self._store = store
        self._max_pixels = max_pixels
        self._max_wide_pixels = max_wide_pixels
        self._max_stored_bytes = max_stored_bytes
        self._lookup_min_pixels = lookup_min_pixels
        # Bounded by bytes (`histograms_size`), each entry counting at least memory_bytes / memory_entries,
        # so it also holds at most memory_entries images; one larger than the whole cache is not kept.
        floor = max(1, memory_bytes // max(1, memory_entries))
        self._memory: LRUCache = LRUCache(
            maxsize=memory_bytes, getsizeof=lambda value: max(floor, histograms_size(value))
        )
        self._lock = threading.Lock()
        self._inflight: dict[tuple, Future] = {}
        # Each cold lookup's deferred work waits here for `finish` (at most FINISH_AFTER).
        self._background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="histograms")
        self._lookups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lookup")
        # Counts rows of a JPEG while the decoder thread goes on with later rows.
        self._counters = ThreadPoolExecutor(max_workers=2, thread_name_prefix="count")
        self._deferred: dict[tuple, Callable[[], None]] = {}
        # The generation last kept in memory per object name, and the names whose
        # one-GET lookup (`current`) is under way, which the same name's others wait for.
        self._latest: LRUCache = LRUCache(maxsize=4 * max(1, memory_entries))
        self._fetching: dict[tuple[str, str], threading.Event] = {}

    def find(self, bucket: str, name: str) -> ObjectInfo | None:
        """The object's current generation, or None when it does not exist."""
        return self._objects.info(bucket, name)

    def current(
        self, bucket: str, name: str, *, need_luma: bool = False, timings: Timings | None = None
    ) -> tuple[ObjectInfo, ImageHistograms, str] | None:
        """The object's current generation and its histograms; None when it does not exist.

        When memory holds some generation of the name, a metadata GET says whether it is
        still the current one (an overwrite is never served stale). When it holds none,
        the bytes are needed anyway (or Firestore's copy, looked up from the header), so
        one GET brings the current generation and its bytes together, and a round trip
        is saved. Concurrent requests for such a name wait for the first one's GET.
        """
        timings = timings or Timings()
        where = (bucket, name)
        with self._lock:
            waiting = self._fetching.get(where)
            fetch = waiting is None and not self._holds_some_generation(where)
            if fetch:
                done = self._fetching[where] = threading.Event()
        if fetch:
            try:
                return self._fetch_current(bucket, name, need_luma, timings)
            finally:
                with self._lock:
                    self._fetching.pop(where, None)
                done.set()
        if waiting is not None:
            waiting.wait()
        with timings.span("metadata"):
            info = self.find(bucket, name)
        if info is None:
            return None
        hists, source = self.histograms(info, need_luma=need_luma, timings=timings)
        return info, hists, source

    def _fetch_current(
        self, bucket: str, name: str, need_luma: bool, timings: Timings
    ) -> tuple[ObjectInfo, ImageHistograms, str] | None:
        with timings.span("download"):
            opened = self._objects.stream_current(bucket, name)
        if opened is None:
            return None
        info, reader = opened
        hists, source = self._lookup(info, timings, reader)
        return info, self._with_luma(info, hists, need_luma), source

    def _holds_some_generation(self, where: tuple[str, str]) -> bool:
        """Whether memory holds histograms of some generation of this object (the caller holds the lock)."""
        generation = self._latest.get(where)
        return generation is not None and (*where, generation) in self._memory

    def histograms(
        self, info: ObjectInfo, *, need_luma: bool = False, timings: Timings | None = None
    ) -> tuple[ImageHistograms, str]:
        """The image's histograms and where they came from (computed, memory, firestore)."""
        result, source = self._lookup(info, timings or Timings())
        return self._with_luma(info, result, need_luma), source

    def _with_luma(self, info: ObjectInfo, result: ImageHistograms, need_luma: bool) -> ImageHistograms:
        if need_luma and result.pending is not None:
            self.finish(info)
            return result.pending.result()
        return result

    def finish(self, info: ObjectInfo) -> None:
        """Start the deferred work of a cold lookup now (callers: once the answer is sent)."""
        with self._lock:
            start = self._deferred.pop((info.bucket, info.name, info.generation), None)
        if start is not None:
            start()

    def close(self) -> None:
        """Finish the deferred work of every cold lookup so far, then take no more (shutdown)."""
        with self._lock:
            starts = list(self._deferred.values())
        for start in starts:
            start()
        self._background.shutdown(wait=True)

    def _lookup(
        self, info: ObjectInfo, timings: Timings, reader: StreamingReader | None = None
    ) -> tuple[ImageHistograms, str]:
        """`reader`: the object's bytes when the caller has them coming already (closed if not needed)."""
        key = (info.bucket, info.name, info.generation)
        with self._lock:
            cached = self._memory.get(key)
            running = None if cached is not None else self._inflight.get(key)
            if cached is None and running is None:
                future: Future = Future()
                self._inflight[key] = future
        if (cached is not None or running is not None) and reader is not None:
            reader.close()  # not needed: in memory, or being computed by another request
        if cached is not None:
            return cached, MEMORY
        if running is not None:
            shared, _ = running.result()
            return shared, MEMORY
        try:
            result, source = self._load(info, key, timings, reader or self._objects.stream(info))
            with self._lock:
                self._remember(key, result)
            future.set_result((result, source))
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._inflight.pop(key, None)
        return result, source

    def _remember(self, key: tuple, result: ImageHistograms) -> None:
        """Keep `result` in the memory cache (the caller holds the lock); too large for it: not kept."""
        try:
            self._memory[key] = result
            self._latest[key[:2]] = key[2]
        except ValueError:  # cachetools: "value too large"
            self._memory.pop(key, None)

    def _load(
        self, info: ObjectInfo, key: tuple, timings: Timings, reader: StreamingReader
    ) -> tuple[ImageHistograms, str]:
        # The download has started and the request's own thread decodes as bytes
        # arrive. When the header says the image has at least `lookup_min_pixels`,
        # Firestore is asked on another thread meanwhile; a stored copy wins, and on a
        # hit closing the reader aborts the download and the decode. A smaller image is
        # just counted: its decode costs about what a Firestore read does.
        lookup: Future | None = None

        def on_header(width: int, height: int) -> None:
            nonlocal lookup
            if worth_looking_up(width * height, self._lookup_min_pixels):
                lookup = self._lookups.submit(self._stored, info, reader, timings)

        try:
            try:
                with timings.span("decode"):
                    image, fmt, frames, counted = self._decode(reader, on_header)
            except BaseException:
                stored = _found(lookup)  # the decode may have failed because a hit closed the reader
                if stored is not None:
                    return stored, FIRESTORE
                raise
            stored = _found(lookup)
            if stored is not None:
                return stored, FIRESTORE
            return self._compute(image, fmt, frames, counted, key, info, timings), COMPUTED
        finally:
            reader.close()

    def _stored(self, info: ObjectInfo, reader, timings: Timings) -> ImageHistograms | None:
        """The histograms stored for `info`, closing `reader` when there are (the decode stops)."""
        try:
            with timings.span("firestore"):
                stored = self._store.get(info.bucket, info.name, info.generation)
        except Exception:  # Firestore unreachable: the decode answers, the write in the background may fail too
            logs.exception("reading stored histograms failed", bucket=info.bucket, object=info.name)
            return None
        if stored is None:
            return None
        try:
            found = _from_stored(stored)
        except ValueError:  # not ours or corrupt: computed again (the stored copy stays until its TTL)
            logs.warning("stored histograms unreadable", bucket=info.bucket, object=info.name)
            return None
        reader.close()
        return found

    def _decode(
        self, reader, on_header: Callable[[int, int], None]
    ) -> tuple[Image.Image, str | None, int, statistics.RowHistograms]:
        counted = statistics.RowHistograms(self._counters)
        image = pixels.open_image(
            reader,
            max_pixels=self._max_pixels,
            on_rows=counted.add,
            max_wide_pixels=self._max_wide_pixels,
            on_header=on_header,
        )
        return image, image.format, getattr(image, "n_frames", 1), counted

    def _compute(
        self,
        image,
        fmt,
        frames,
        counted: statistics.RowHistograms,
        key: tuple,
        info: ObjectInfo,
        timings: Timings,
    ) -> ImageHistograms:
        with timings.span("histogram"):
            image = pixels.normalize(image)
            bands = counted.result(image) or statistics.image_histograms(image, luma=False)
        mode = pixels.normalized_mode(image)
        partial = ImageHistograms(bands, image.width, image.height, mode, fmt, frames, pending=Future())
        # Luma costs as much again for RGB; answer the request first and finish
        # (luma, then the Firestore write) in the background, once the answer is
        # out (`finish`), so it does not compete with sending it; it starts after
        # FINISH_AFTER anyway if no caller says so.
        go = threading.Event()

        def complete() -> None:
            go.wait(self.FINISH_AFTER)
            with self._lock:
                self._deferred.pop(key, None)
            self._complete(info, key, image, partial)

        with self._lock:
            self._deferred[key] = go.set
        self._background.submit(complete)
        return partial

    def _complete(self, info: ObjectInfo, key: tuple, image, partial: ImageHistograms) -> None:
        pending = partial.pending
        assert pending is not None, "a partial result carries its pending future"
        try:
            bands = dict(partial.bands)
            statistics.add_luma(image, bands)
            # Kept packed: a float image's millions of distinct values as compressed
            # blocks (about its stored size), not as arrays of 20 bytes per value.
            bands = statistics.pack(bands)
            full = dataclasses.replace(partial, bands=bands, pending=None)
            with self._lock:
                self._remember(key, full)
            pending.set_result(full)
        except BaseException as exc:
            pending.set_exception(exc)
            return
        try:
            payload = statistics.serialize(bands, max_bytes=self._max_stored_bytes)
        except statistics.HistogramTooLarge:
            return  # e.g. float images with millions of distinct values: memory cache only
        stored = StoredHistograms(payload, full.width, full.height, full.mode, full.format, full.frames)
        try:
            self._store.put(info.bucket, info.name, info.generation, stored)
        except Exception:
            logs.exception("storing histograms failed", bucket=info.bucket, object=info.name)


def worth_looking_up(pixels: int, min_pixels: int) -> bool:
    """Whether a cold lookup waits for Firestore's copy: not for an image cheaper to decode than to fetch."""
    return pixels >= min_pixels


def _found(lookup: Future | None) -> ImageHistograms | None:
    """What a lookup found (waiting for it), or None when there was none or it found nothing."""
    return None if lookup is None else lookup.result()


def histograms_size(result: ImageHistograms) -> int:
    """Bytes the histograms of `result` hold (shared ones, e.g. ``all`` and ``l``, counted once)."""
    seen: dict[int, int] = {}
    for hist in result.bands.values():
        seen[id(hist)] = hist.nbytes
    return 1024 + sum(seen.values())


def _from_stored(stored: StoredHistograms) -> ImageHistograms:
    return ImageHistograms(
        bands=statistics.deserialize(stored.payload),
        width=stored.width,
        height=stored.height,
        mode=stored.mode,
        format=stored.format,
        frames=stored.frames,
    )
