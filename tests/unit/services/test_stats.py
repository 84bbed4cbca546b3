"""StatsService: histograms per object generation from memory, then the store, then a computation."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image

from aperture.domain import stats as statistics
from aperture.domain.imaging import pixels
from aperture.services.stats import COMPUTED, FIRESTORE, MEMORY, StatsService
from aperture.storage.histograms import StoredHistograms
from tests.support import hostile
from tests.support.images import encode, png_header_only, random_image
from tests.unit.services.helpers import MAX_PIXELS, SOURCE

NAME = "photos/IMG_1.png"


def service(objects, histograms, **options) -> StatsService:
    return StatsService(objects, histograms, max_pixels=options.pop("max_pixels", MAX_PIXELS), **options)


def expected(data: bytes) -> dict[str, statistics.Histogram]:
    return statistics.image_histograms(pixels.normalize(Image.open(io.BytesIO(data))))


def stored_soon(histograms, info, timeout: float = 5.0) -> StoredHistograms | None:
    """The background write of a cold lookup lands shortly after its answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = histograms.get(info.bucket, info.name, info.generation)
        if found is not None:
            return found
        time.sleep(0.01)
    return None


# -- where histograms come from ---------------------------------------------------------------


def test_the_first_lookup_computes_and_the_next_is_served_from_memory(objects, histograms):
    info = objects.put(SOURCE, NAME, encode(random_image("RGB", seed=1)))
    stats = service(objects, histograms)

    _, first = stats.histograms(info)
    _, second = stats.histograms(info)

    assert (first, second) == (COMPUTED, MEMORY)


def test_computed_histograms_are_exact_for_every_band(objects, histograms):
    data = encode(random_image("RGB", seed=2))
    info = objects.put(SOURCE, NAME, data)

    result, _ = service(objects, histograms).histograms(info, need_luma=True)

    assert result.bands == expected(data)
    assert (result.width, result.height, result.mode, result.format, result.frames) == (37, 23, "RGB", "PNG", 1)


@pytest.mark.parametrize(
    "mode,fmt", [("L", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("I;16", "PNG"), ("RGB", "JPEG"), ("F", "TIFF")]
)
def test_computed_histograms_match_a_plain_decode_in_every_mode(objects, histograms, mode, fmt):
    data = encode(random_image(mode, size=(64, 48), seed=3), fmt)
    info = objects.put(SOURCE, NAME, data)

    result, _ = service(objects, histograms).histograms(info, need_luma=True)

    assert result.bands == expected(data)


def test_a_large_jpeg_counted_while_it_decodes_matches_a_plain_decode(objects, histograms):
    data = hostile.jpeg(size=(1200, 900), seed=4)
    info = objects.put(SOURCE, NAME, data)

    result, _ = service(objects, histograms).histograms(info, need_luma=True)

    assert result.bands == expected(data)
    assert result.mode == "RGB"


def test_a_cold_lookup_answers_before_luma_and_luma_is_there_when_asked_for(objects, histograms):
    info = objects.put(SOURCE, NAME, encode(random_image("RGB", seed=5)))
    stats = service(objects, histograms)

    quick, _ = stats.histograms(info)
    full, _ = stats.histograms(info, need_luma=True)

    assert quick.pending is not None and statistics.LUMA not in quick.bands
    assert full.pending is None and statistics.LUMA in full.bands


def test_a_computation_is_stored_for_other_instances(objects, histograms):
    data = encode(random_image("RGB", seed=6))
    info = objects.put(SOURCE, NAME, data)
    service(objects, histograms).histograms(info, need_luma=True)

    stored = stored_soon(histograms, info)

    assert stored is not None
    assert statistics.deserialize(stored.payload) == expected(data)
    assert (stored.width, stored.height, stored.mode, stored.format, stored.frames) == (37, 23, "RGB", "PNG", 1)


def test_stored_histograms_are_read_back_without_decoding(objects, histograms):
    data = encode(random_image("RGB", seed=7))
    info = objects.put(SOURCE, NAME, data)
    histograms.put(
        SOURCE, NAME, info.generation, StoredHistograms(statistics.serialize(expected(data)), 37, 23, "RGB", "PNG", 1)
    )

    result, source = service(objects, histograms).histograms(info)

    assert source == FIRESTORE
    assert result.bands == expected(data)
    assert (result.width, result.height, result.mode, result.format, result.frames, result.pending) == (
        37,
        23,
        "RGB",
        "PNG",
        1,
        None,
    )


def test_histograms_stored_by_one_instance_are_read_by_another(objects, histograms):
    info = objects.put(SOURCE, NAME, encode(random_image("RGB", seed=8)))
    service(objects, histograms).histograms(info, need_luma=True)
    assert stored_soon(histograms, info) is not None

    _, source = service(objects, histograms).histograms(info)

    assert source == FIRESTORE


def test_an_overwritten_object_is_never_served_its_old_histograms(objects, histograms):
    stats = service(objects, histograms)
    old = objects.put(SOURCE, NAME, encode(random_image("RGB", seed=9)))
    stats.histograms(old, need_luma=True)
    new_data = encode(random_image("RGB", seed=10))
    new = objects.put(SOURCE, NAME, new_data)

    result, source = stats.histograms(new, need_luma=True)

    assert source == COMPUTED
    assert result.bands == expected(new_data)


# -- when a cold lookup waits for the stored copy ------------------------------------------------


class CountingStore:
    """A histogram store that counts reads and writes."""

    def __init__(self, inner) -> None:
        self.inner, self.gets, self.puts = inner, 0, 0

    def get(self, bucket, name, generation):
        self.gets += 1
        return self.inner.get(bucket, name, generation)

    def put(self, bucket, name, generation, record):
        self.puts += 1
        return self.inner.put(bucket, name, generation, record)


def stored(data: bytes, size: tuple[int, int]) -> StoredHistograms:
    return StoredHistograms(statistics.serialize(expected(data)), *size, "RGB", "PNG", 1)


def test_an_image_under_the_lookup_threshold_is_computed_without_asking_the_store(objects, histograms):
    data = encode(random_image("RGB", size=(40, 30), seed=13))
    info = objects.put(SOURCE, NAME, data)
    store = CountingStore(histograms)
    stats = service(objects, store, lookup_min_pixels=40 * 30 + 1)

    result, source = stats.histograms(info, need_luma=True)
    stats.close()  # the deferred work (luma, the write) is done

    assert (source, store.gets) == (COMPUTED, 0)
    assert result.bands == expected(data)
    assert store.puts == 1 and histograms.get(SOURCE, NAME, info.generation) is not None


def test_an_image_at_the_lookup_threshold_is_served_from_the_store(objects, histograms):
    data = encode(random_image("RGB", size=(40, 30), seed=14))
    info = objects.put(SOURCE, NAME, data)
    histograms.put(SOURCE, NAME, info.generation, stored(data, (40, 30)))

    result, source = service(objects, histograms, lookup_min_pixels=40 * 30).histograms(info)

    assert source == FIRESTORE
    assert result.bands == expected(data)


def test_a_small_image_already_stored_is_computed_and_the_stored_copy_kept(objects, histograms):
    data = encode(random_image("RGB", size=(40, 30), seed=15))
    info = objects.put(SOURCE, NAME, data)
    first = stored(data, (40, 30))
    histograms.put(SOURCE, NAME, info.generation, first)
    stats = service(objects, histograms, lookup_min_pixels=10**9)

    result, source = stats.histograms(info, need_luma=True)
    stats.close()

    assert source == COMPUTED
    assert result.bands == expected(data)
    assert histograms.get(SOURCE, NAME, info.generation) is first  # create-only: the write changed nothing


def test_a_broken_header_is_refused_without_asking_the_store(objects, histograms):
    info = objects.put(SOURCE, "notes.txt", b"just some text\n" * 50)
    store = CountingStore(histograms)

    with pytest.raises(pixels.NotAnImage):
        service(objects, store).histograms(info)
    assert store.gets == 0


class UnreachableStore(CountingStore):
    def get(self, bucket, name, generation):
        self.gets += 1
        raise ConnectionError("Firestore is down")


def test_an_image_whose_stored_copy_cannot_be_read_is_answered_from_its_decode(objects, histograms):
    data = encode(random_image("RGB", size=(40, 30), seed=16))
    info = objects.put(SOURCE, NAME, data)
    store = UnreachableStore(histograms)

    result, source = service(objects, store, lookup_min_pixels=1).histograms(info, need_luma=True)

    assert (source, store.gets) == (COMPUTED, 1)
    assert result.bands == expected(data)


# -- single flight -------------------------------------------------------------------------------


def held_together(objects, method: str, call, callers: int = 8) -> tuple[list, list]:
    """Runs `call` on `callers` threads at once, the first call of `objects.<method>` held
    until every thread has started; returns that method's calls and what each `call` gave."""
    real, calls, release = getattr(objects, method), [], threading.Event()

    def held(*args):
        calls.append(args)
        if len(calls) == 1:
            release.wait(5)
        return real(*args)

    setattr(objects, method, held)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(call())) for _ in range(callers)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join(10)
    return calls, results


def test_concurrent_lookups_of_one_generation_share_one_computation(objects, histograms):
    info = objects.put(SOURCE, NAME, encode(random_image("RGB", size=(200, 150), seed=11)))
    stats = service(objects, histograms)

    streams, results = held_together(objects, "stream", lambda: stats.histograms(info))

    assert len(streams) == 1
    assert sorted(source for _, source in results) == [COMPUTED] + [MEMORY] * 7


# -- bad objects ---------------------------------------------------------------------------------


def test_a_non_image_raises_not_an_image(objects, histograms):
    info = objects.put(SOURCE, "notes.txt", b"just some text\n" * 50)

    with pytest.raises(pixels.NotAnImage):
        service(objects, histograms).histograms(info)


def test_a_failed_lookup_is_not_remembered(objects, histograms):
    info = objects.put(SOURCE, "notes.txt", b"just some text\n" * 50)
    stats = service(objects, histograms)
    with pytest.raises(pixels.NotAnImage):
        stats.histograms(info)

    with pytest.raises(pixels.NotAnImage):
        stats.histograms(info)

    assert histograms.keys() == set()


def test_an_image_over_the_pixel_limit_raises_too_many_pixels(objects, histograms):
    info = objects.put(SOURCE, "bomb.png", png_header_only(20_000, 20_000))

    with pytest.raises(pixels.TooManyPixels):
        service(objects, histograms, max_pixels=1_000_000).histograms(info)


# -- find ------------------------------------------------------------------------------------


def test_find_gives_the_current_generation(objects, histograms):
    objects.put(SOURCE, NAME, b"first")
    latest = objects.put(SOURCE, NAME, encode(random_image("L", seed=12)))

    found = service(objects, histograms).find(SOURCE, NAME)

    assert (found.generation, found.size) == (latest.generation, latest.size)


def test_find_gives_none_for_a_missing_object(objects, histograms):
    assert service(objects, histograms).find(SOURCE, "missing.png") is None


# -- current: the object's current generation, by name -------------------------------------------


class Calls:
    """Records which reads of the object store a lookup made, passing each on."""

    def __init__(self, objects) -> None:
        self.made: list[str] = []
        for method in ("info", "stream", "stream_current"):
            setattr(objects, method, self._recorded(method, getattr(objects, method)))

    def _recorded(self, method, real):
        def call(*args):
            self.made.append(method)
            return real(*args)

        return call


def test_the_first_request_for_a_name_fetches_generation_and_bytes_in_one_read(objects, histograms):
    data = encode(random_image("RGB", seed=21))
    put = objects.put(SOURCE, NAME, data)
    stats = service(objects, histograms)
    calls = Calls(objects)

    info, result, source = stats.current(SOURCE, NAME, need_luma=True)

    assert calls.made == ["stream_current"]
    assert (info.generation, source) == (put.generation, COMPUTED)
    assert result.bands == expected(data)


def test_a_name_held_in_memory_is_checked_for_its_generation_and_served_from_memory(objects, histograms):
    put = objects.put(SOURCE, NAME, encode(random_image("RGB", seed=22)))
    stats = service(objects, histograms)
    stats.current(SOURCE, NAME)
    calls = Calls(objects)

    info, _, source = stats.current(SOURCE, NAME)

    assert calls.made == ["info"]
    assert (info.generation, source) == (put.generation, MEMORY)


def test_current_never_serves_an_overwritten_objects_old_histograms(objects, histograms):
    objects.put(SOURCE, NAME, encode(random_image("RGB", seed=23)))
    stats = service(objects, histograms)
    stats.current(SOURCE, NAME, need_luma=True)
    new_data = encode(random_image("RGB", seed=24))
    new = objects.put(SOURCE, NAME, new_data)

    info, result, source = stats.current(SOURCE, NAME, need_luma=True)

    assert (info.generation, source) == (new.generation, COMPUTED)
    assert result.bands == expected(new_data)


def test_current_of_a_missing_object_is_none(objects, histograms):
    stats = service(objects, histograms)

    assert stats.current(SOURCE, "missing.png") is None
    assert stats.current(SOURCE, "missing.png") is None


def test_a_name_evicted_from_memory_is_fetched_in_one_read_again(objects, histograms):
    objects.put(SOURCE, NAME, encode(random_image("RGB", size=(64, 48), seed=25)))
    objects.put(SOURCE, "other.png", encode(random_image("RGB", size=(64, 48), seed=26)))
    stats = service(objects, histograms, memory_entries=1, memory_bytes=1)
    stats.current(SOURCE, NAME)
    stats.current(SOURCE, "other.png")  # evicts NAME's histograms
    calls = Calls(objects)

    _, _, source = stats.current(SOURCE, NAME)

    assert calls.made == ["stream_current"]
    assert source == COMPUTED


def test_concurrent_first_requests_for_a_name_fetch_it_once(objects, histograms):
    objects.put(SOURCE, NAME, encode(random_image("RGB", size=(200, 150), seed=27)))
    stats = service(objects, histograms)

    fetches, results = held_together(objects, "stream_current", lambda: stats.current(SOURCE, NAME))

    assert len(fetches) == 1
    assert sorted(source for _, _, source in results) == [COMPUTED] + [MEMORY] * 7


def test_a_non_image_fetched_by_name_raises_not_an_image_every_time(objects, histograms):
    objects.put(SOURCE, "notes.txt", b"just some text\n" * 50)
    stats = service(objects, histograms)

    for _ in range(2):
        with pytest.raises(pixels.NotAnImage):
            stats.current(SOURCE, "notes.txt")
    assert histograms.keys() == set()
