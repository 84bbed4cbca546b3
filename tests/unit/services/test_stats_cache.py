"""The in-process histogram cache is bounded by bytes, not by entries."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aperture.domain.imaging import pixels
from aperture.services.stats import COMPUTED, MEMORY, StatsService, histograms_size
from tests.support.images import encode
from tests.unit.services.helpers import MAX_PIXELS, SOURCE


def float_tiff(seed: int, size: tuple[int, int] = (64, 64)) -> bytes:
    """A float (F) TIFF of noise: one distinct value per pixel, the histogram's worst case."""
    samples = np.random.default_rng(seed).random(size[::-1], dtype=np.float32)
    return encode(Image.fromarray(samples, "F"), "TIFF")


def lookup(stats: StatsService, info) -> str:
    _, source = stats.histograms(info, need_luma=True)
    return source


def test_histograms_larger_than_the_whole_cache_are_answered_but_not_kept(objects, histograms):
    info = objects.put(SOURCE, "noise.tiff", float_tiff(1))
    stats = StatsService(objects, histograms, max_pixels=MAX_PIXELS, memory_bytes=10_000, memory_entries=512)

    sources = [lookup(stats, info), lookup(stats, info)]

    assert MEMORY not in sources


def test_the_cache_evicts_the_least_recently_used_by_bytes(objects, histograms):
    infos = [objects.put(SOURCE, f"noise-{seed}.tiff", float_tiff(seed)) for seed in range(3)]
    probe = StatsService(objects, histograms, max_pixels=MAX_PIXELS, memory_bytes=1 << 30)
    sizes = [histograms_size(probe.histograms(info, need_luma=True)[0]) for info in infos]
    # Room for two images' histograms but not three; entries would allow 512.
    stats = StatsService(
        objects, histograms, max_pixels=MAX_PIXELS, memory_bytes=sizes[0] + sizes[1] + 100, memory_entries=512
    )
    for info in infos:
        lookup(stats, info)
    histograms.get = lambda *key: None  # nothing from Firestore: a miss in memory computes

    assert sizes[0] > 64 * 64 * 4  # a float image's histogram: bytes per distinct value
    assert lookup(stats, infos[2]) == MEMORY
    assert lookup(stats, infos[0]) == COMPUTED  # evicted by bytes, though 512 entries would fit


def test_entries_still_bound_the_cache_each_counting_at_least_its_share(objects, histograms):
    infos = [objects.put(SOURCE, f"grey-{seed}.png", encode(Image.new("L", (8, 8), seed))) for seed in range(3)]
    stats = StatsService(objects, histograms, max_pixels=MAX_PIXELS, memory_bytes=1 << 30, memory_entries=2)
    for info in infos:
        lookup(stats, info)
    histograms.get = lambda *key: None

    assert lookup(stats, infos[2]) == MEMORY
    assert lookup(stats, infos[0]) == COMPUTED


def test_a_float_images_histograms_are_kept_packed_in_memory_and_in_firestore(objects, histograms):
    # Arrange: 300x300 noise, 90,000 distinct values (more than one block)
    info = objects.put(SOURCE, "big-noise.tiff", float_tiff(4, (300, 300)))
    stats = StatsService(objects, histograms, max_pixels=MAX_PIXELS)

    # Act
    result, _ = stats.histograms(info, need_luma=True)
    stored = histograms.get(info.bucket, info.name, info.generation)

    # Assert
    assert result.bands["all"].packed and result.bands["all"] is result.bands["luma"]
    assert histograms_size(result) < 1024 + 2 * len(stored.payload)  # its compressed size, not 20 bytes a value
    assert lookup(stats, info) == MEMORY


def test_an_unreadable_stored_histogram_is_computed_again(objects, histograms):
    # Arrange
    from aperture.domain.records import StoredHistograms

    info = objects.put(SOURCE, "grey.png", encode(Image.new("L", (8, 8), 7)))
    histograms.put(info.bucket, info.name, info.generation, StoredHistograms(b"APH\x02garbage", 8, 8, "L", "PNG", 1))
    stats = StatsService(objects, histograms, max_pixels=MAX_PIXELS)

    # Act
    result, source = stats.histograms(info, need_luma=True)

    # Assert
    assert source == COMPUTED
    assert result.bands["all"].max() == 7


def test_a_float_image_over_the_wide_bound_is_refused_before_decoding(objects, histograms):
    # 64x64 = 4096 pixels, the bound 4000: refused from the header; the pixel data is cut
    # off, so a decode would have failed with another reason.
    whole = float_tiff(7)
    info = objects.put(SOURCE, "wide.tiff", whole[: len(whole) // 2] + whole[-200:])
    stats = StatsService(objects, histograms, max_pixels=MAX_PIXELS, max_wide_pixels=4000)

    with pytest.raises(pixels.TooWideForStatistics) as refused:
        stats.histograms(info, need_luma=True)

    assert refused.value.refusal().status == 422
    assert "computed up to 4000 pixels" in str(refused.value) and "4096" in str(refused.value)


def test_the_wide_bound_leaves_8_bit_images_and_smaller_float_images_alone(objects, histograms):
    gray = objects.put(SOURCE, "gray.png", encode(Image.new("L", (64, 64), 7), "PNG"))
    small = objects.put(SOURCE, "small.tiff", float_tiff(8, size=(60, 60)))
    stats = StatsService(objects, histograms, max_pixels=MAX_PIXELS, max_wide_pixels=4000)

    assert lookup(stats, gray) == COMPUTED
    assert lookup(stats, small) == COMPUTED
