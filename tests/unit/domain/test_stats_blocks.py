"""Stored histograms of float and 32-bit images are read in bounded memory, with exact statistics (#18 item 3)."""

from __future__ import annotations

import io
import json
import math
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from aperture.domain.imaging.pixels import normalize
from aperture.domain.stats import BLOCK, Histogram, deserialize, image_histograms, parse_function, serialize
from tests.unit.domain.test_stats import images

FUNCTIONS = ("min", "max", "mean", "median", "p0", "p0.1", "p25", "p50", "p99.9", "p100")


def smooth_float_tiff(width: int, height: int) -> bytes:
    """A float TIFF whose every pixel is the next float32 after the previous one: one distinct
    value per pixel, and tiny with the floating-point predictor (the issue's 283 KB file)."""
    bits = np.arange(width * height, dtype=np.uint32) + np.uint32(0x3F800000)
    image = Image.frombytes("F", (width, height), bits.view(np.float32).tobytes())
    buffer = io.BytesIO()
    image.save(buffer, "TIFF", compression="tiff_adobe_deflate", tiffinfo={317: 3})
    return buffer.getvalue()


def numpy_answers(samples: np.ndarray) -> dict[str, float]:
    answers = {"min": np.min(samples), "max": np.max(samples), "median": np.median(samples)}
    answers["mean"] = np.mean(samples, dtype=np.float64)  # the documented exact mean (float images too)
    for name in FUNCTIONS:
        if name.startswith("p"):
            answers[name] = np.percentile(samples, float(name[1:]))
    return {name: float(value) for name, value in answers.items()}


def assert_exact(hist: Histogram, samples: np.ndarray) -> None:
    expected = numpy_answers(samples)
    for name in FUNCTIONS:
        actual = parse_function(name).apply(hist)
        if name == "mean":
            assert math.isclose(actual, expected[name], rel_tol=1e-12) or (
                math.isnan(actual) and math.isnan(expected[name])
            )
        else:  # bit-identical to numpy
            assert actual == expected[name] or (math.isnan(actual) and math.isnan(expected[name])), name


def serialize_v1(hists: dict[str, Histogram]) -> bytes:
    """The version-1 writer as it was (one zlib stream of directory, values, counts), for compatibility tests."""
    directory, blobs, stored = [], [], []
    for name, hist in hists.items():
        alias = next((earlier for earlier, h in stored if h is hist or h == hist), None)
        if alias is not None:
            directory.append({"name": name, "alias": alias})
            continue
        stored.append((name, hist))
        dtype = hist.values.dtype.newbyteorder("<")
        largest = int(hist.counts.max())
        width = next((w for w in (1, 2, 4) if largest < 1 << (8 * w)), 8)
        directory.append(
            {"name": name, "dtype": dtype.str, "n": hist.distinct, "count_bytes": width, "total": hist.total}
        )
        bits = hist.values.astype(dtype).view(f"<u{dtype.itemsize}")
        blobs.append(np.diff(bits, prepend=bits.dtype.type(0)).tobytes())
        blobs.append(hist.counts.astype(f"<u{width}").tobytes())
    header = json.dumps({"histograms": directory}, separators=(",", ":")).encode()
    return b"APH\x01" + zlib.compress(struct.pack("<I", len(header)) + header + b"".join(blobs), 1)


def peak_bytes(work) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- the case ---------------------------------------------------------------------------

# Reading may hold the stored bytes about twice (the document and the blocks cut from it), the
# index, and one decoded block with its cumulative counts (BLOCK * 24 bytes ~ 1.6 MB).
FIXED_BOUND = 4 << 20


@pytest.mark.parametrize("version", [2, 1])
def test_a_smooth_float_tiffs_stored_histogram_is_read_and_answered_in_bounded_memory(version: int) -> None:
    # Arrange: 3 MP, 3 M distinct values; its histogram was ~60 MB of arrays when read (20 bytes per value)
    data = smooth_float_tiff(2000, 1500)
    pixels = np.asarray(normalize(Image.open(io.BytesIO(data))))
    hists = image_histograms(normalize(Image.open(io.BytesIO(data))))
    payload = serialize(hists) if version == 2 else serialize_v1(hists)

    # Act
    def read_and_answer():
        restored = deserialize(payload)
        return restored, {name: parse_function(name).apply(restored["all"]) for name in FUNCTIONS}

    (restored, answers), peak = peak_bytes(read_and_answer)

    # Assert
    assert len(data) < 100_000 and len(payload) < 200_000  # small file, small document...
    assert pixels.size == 3_000_000 == restored["all"].distinct  # ...millions of distinct values
    assert peak < 3 * len(payload) + FIXED_BOUND, f"{peak / 1e6:.1f} MB for a {len(payload) / 1e3:.0f} KB payload"
    assert restored["all"].packed and restored["all"].nbytes < 2 * len(payload)
    assert_exact(restored["all"], pixels)
    assert answers == {name: parse_function(name).apply(hists["all"]) for name in FUNCTIONS}


# -- exact statistics on packed histograms of F, I and I;16 images --------------------------------


@st.composite
def big_samples(draw: st.DrawFn, mode: str) -> np.ndarray:
    """More samples than one block holds distinct values, with ties, extremes and (floats) NaN/inf sometimes."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    size = draw(st.integers(BLOCK + 1, 3 * BLOCK))
    if mode == "F":
        scale = draw(st.sampled_from([1e-30, 1e-3, 1.0, 1e30]))
        samples = (rng.standard_normal(size) * scale).astype(np.float32)
        special = draw(st.sampled_from([None, np.nan, np.inf, -np.inf, "both"]))
        if special == "both":
            samples[:2] = (np.inf, -np.inf)
        elif special is not None:
            samples[0] = special
    elif mode == "I":
        bound = draw(st.sampled_from([2**17, 2**31 - 1]))
        samples = rng.integers(-bound - 1, bound, size, dtype=np.int32, endpoint=True)
    else:  # I;16: at most 65,536 distinct values, so one block
        samples = rng.integers(0, 65535, size, dtype=np.uint16, endpoint=True)
    if draw(st.booleans()):
        samples[: size // 3] = samples[size // 3 : 2 * (size // 3)]  # many ties
    return samples


@pytest.mark.parametrize("mode", ["F", "I", "I;16"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_statistics_of_stored_histograms_equal_numpys_on_the_pixels(mode: str, data: st.DataObject) -> None:
    # Arrange
    samples = data.draw(big_samples(mode))
    image = Image.frombytes(mode, (len(samples), 1), samples.tobytes())
    pixels = np.asarray(normalize(image))

    # Act
    restored = deserialize(serialize(image_histograms(image)))["all"]

    # Assert
    assert restored.packed == (restored.distinct > BLOCK)
    assert_exact(restored, pixels)


@pytest.mark.parametrize("version", [2, 1])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), mode=st.sampled_from(["F", "I"]))
def test_codec_round_trips_packed_and_open_histograms_exactly(version: int, mode: str, data: st.DataObject) -> None:
    # Arrange
    samples = data.draw(big_samples(mode))
    image = Image.frombytes(mode, (len(samples), 1), samples.tobytes())
    hists = image_histograms(image)
    packed = {name: hist.pack() for name, hist in hists.items()}

    # Act
    written = serialize(hists) if version == 2 else serialize_v1(hists)
    restored = deserialize(written)

    # Assert
    assert list(restored) == list(hists)
    for name, hist in hists.items():
        assert restored[name] == hist == packed[name]
        assert restored[name].dtype == hist.dtype and restored[name].total == hist.total
        assert np.array_equal(restored[name].values, hist.values, equal_nan=True)
        assert np.array_equal(restored[name].counts, hist.counts)
    assert restored["all"] is restored["l"]
    assert serialize(packed) == serialize(hists)  # packed histograms are written as they are


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "I", "F"])
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_version_1_documents_of_every_mode_are_still_read(mode: str, data: st.DataObject) -> None:
    # Arrange
    hists = image_histograms(normalize(data.draw(images(mode))))

    # Act
    restored = deserialize(serialize_v1(hists))

    # Assert
    assert list(restored) == list(hists)
    assert all(restored[name] == hist for name, hist in hists.items())


def test_packing_keeps_the_mean_and_shrinks_a_smooth_histogram() -> None:
    # Arrange
    bits = np.arange(5 * BLOCK, dtype=np.uint32) + np.uint32(0x3F800000)
    hist = Histogram.from_array(bits.view(np.float32))

    # Act
    packed = hist.pack()

    # Assert
    assert packed.packed and packed.blocks is not None and len(packed.blocks) == 5
    assert packed.mean() == hist.mean()
    assert packed.nbytes < hist.nbytes / 100
    assert Histogram.from_array(np.arange(10, dtype=np.int32)).pack().packed is False  # one block: stays open


def test_a_corrupt_block_is_a_value_error_not_a_wrong_answer() -> None:
    # Arrange
    samples = np.random.default_rng(3).standard_normal(3 * BLOCK).astype(np.float32)
    payload = bytearray(serialize({"all": Histogram.from_array(samples)}))
    payload[-20] ^= 0xFF  # inside the last block's compressed bytes

    # Act / Assert
    restored = deserialize(bytes(payload))["all"]
    with pytest.raises(ValueError, match="corrupt"):
        restored.percentile(100.0)


@pytest.mark.parametrize("cut", [5, 40, 200, -1])
def test_truncated_documents_are_refused(cut: int) -> None:
    samples = np.random.default_rng(4).standard_normal(2 * BLOCK).astype(np.float32)
    payload = serialize({"all": Histogram.from_array(samples)})

    with pytest.raises(ValueError):
        deserialize(payload[:cut])
