"""Statistics from histograms must equal numpy's on the decoded pixels (spec S4)."""

from __future__ import annotations

import io
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from aperture.domain import stats as statistics
from aperture.domain.imaging.pixels import UnsupportedChannel, band_names, normalize
from aperture.domain.stats import (
    Histogram,
    HistogramTooLarge,
    StatFunction,
    UnknownFunction,
    deserialize,
    format_value,
    image_histograms,
    merge,
    parse_function,
    serialize,
)

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Percentiles as the service receives them: Python floats, with decimals.
percentiles = st.one_of(
    st.integers(0, 100).map(float),
    st.decimals(0, 100, places=1).map(float),
    st.decimals(0, 100, places=3).map(float),
    st.floats(0, 100),
)


def close(actual: float, expected: float) -> bool:
    """The contract's tolerance: equal to 1e-9, absolute or relative."""
    if math.isnan(expected):
        return math.isnan(actual)
    return math.isclose(actual, float(expected), rel_tol=1e-9, abs_tol=1e-9)


# -- building random images of every mode -----------------------------------------

EIGHT_BIT_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "YCbCr": 3}


@st.composite
def images(draw: st.DrawFn, mode: str) -> Image.Image:
    """A random image of `mode`, up to 40x40, with a value range drawn so ties are common."""
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    size = (width, height)
    if mode in EIGHT_BIT_MODES:
        low = draw(st.integers(0, 255))
        high = draw(st.integers(low, 255))
        shape = (height, width, EIGHT_BIT_MODES[mode])
        return Image.frombytes(mode, size, rng.integers(low, high, shape, dtype=np.uint8, endpoint=True).tobytes())
    if mode in ("P", "P+transparency", "PA"):
        raw_mode = "PA" if mode == "PA" else "P"
        channels = 2 if mode == "PA" else 1
        data = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        image = Image.frombytes(raw_mode, size, data.tobytes())
        image.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
        if mode == "P+transparency":
            if draw(st.booleans()):
                image.info["transparency"] = int(rng.integers(0, 256))  # one transparent index
            else:
                image.info["transparency"] = rng.integers(0, 256, 256, dtype=np.uint8).tobytes()  # tRNS alphas
        return image
    if mode == "1":
        return Image.fromarray(rng.random((height, width)) < draw(st.floats(0, 1)))
    if mode in ("I;16", "I;16B"):
        high = draw(st.sampled_from([1, 255, 4095, 65535]))
        data = rng.integers(0, high, (height, width), dtype=np.uint16, endpoint=True)
        return Image.frombytes(mode, size, data.astype("<u2" if mode == "I;16" else ">u2").tobytes())
    if mode == "I":
        bound = draw(st.sampled_from([10, 2**16, 2**31 - 1]))
        data = rng.integers(-bound - 1, bound, (height, width), dtype=np.int32, endpoint=True)
        return Image.frombytes("I", size, data.tobytes())
    if mode == "F":
        scale = draw(st.sampled_from([1e-30, 1e-3, 1.0, 1e6, 1e30]))
        data = (rng.standard_normal((height, width)) * scale).astype(np.float32)
        if draw(st.booleans()):
            # Few distinct values: many ties, so neighbours in sorted order repeat.
            data = rng.choice(data.ravel()[:5], size=(height, width))
        return Image.frombytes("F", size, data.astype(np.float32).tobytes())
    raise AssertionError(mode)


def expected_sample_sets(image: Image.Image) -> dict[str, np.ndarray]:
    """What numpy sees, per channel key, straight from np.asarray of the normalized image."""
    normalized = normalize(image)
    pixels = np.asarray(normalized)
    names = band_names(normalized)
    per_band = pixels if pixels.ndim == 3 else pixels[..., np.newaxis]
    expected = {name: per_band[..., index] for index, name in enumerate(names)}
    expected["all"] = pixels
    if {"r", "g", "b"} <= set(names) or normalized.mode in ("CMYK", "YCbCr"):
        expected["luma"] = np.asarray(normalized.convert("L"))
    else:
        expected["luma"] = expected["l"]
    return expected


def assert_all_functions_match(hist: Histogram, samples: np.ndarray, qs: list[float]) -> None:
    is_int = samples.dtype.kind in "iu"

    for func, reference in (("min", np.min), ("max", np.max)):
        value = parse_function(func).apply(hist)
        assert type(value) is (int if is_int else float)
        assert close(value, reference(samples)), (func, value, reference(samples))

    if is_int:
        # Integer images: np.mean is exact (float64 sums of integers below 2**53).
        assert hist.mean() == np.mean(samples)
    else:
        # F images: the true mean (see statistics docstring), not np.mean's float32 result.
        exact = sum((Fraction(float(x)) for x in samples.ravel()), Fraction(0)) / samples.size
        assert close(hist.mean(), float(exact))

    assert close(hist.median(), np.median(samples))
    for q in [0.0, 100.0, 50.0, *qs]:
        value = hist.percentile(q)
        assert type(value) is float
        assert close(value, np.percentile(samples, q)), (q, value, np.percentile(samples, q))


MODES = ["L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "P", "P+transparency", "PA", "1", "I;16", "I;16B", "I", "F"]


@pytest.mark.parametrize("mode", MODES)
@PROPERTY
@given(data=st.data())
def test_every_function_on_every_channel_matches_numpy(mode: str, data: st.DataObject) -> None:
    # Arrange
    image = data.draw(images(mode))
    qs = data.draw(st.lists(percentiles, min_size=1, max_size=4))
    expected = expected_sample_sets(image)

    # Act
    hists = image_histograms(normalize(image))

    # Assert
    assert set(hists) == set(expected)
    for channel, samples in expected.items():
        assert hists[channel].total == samples.size
        assert_all_functions_match(hists[channel], samples, qs)


@PROPERTY
@given(
    samples=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=1, max_side=50),
        elements=st.floats(width=32, allow_nan=False, allow_infinity=False),
    ),
    q=percentiles,
)
def test_float32_percentiles_are_bit_identical_to_numpy(samples: np.ndarray, q: float) -> None:
    # Arrange: any float32s, including subnormals, -0.0 and huge magnitudes.
    hist = Histogram.from_array(samples)

    # Act
    actual = (hist.percentile(q), hist.median())

    # Assert: numpy interpolates in float32; so must we, or results drift ~1e-8.
    expected = (float(np.percentile(samples, q)), float(np.median(samples)))
    for a, e in zip(actual, expected):
        assert a == e or (math.isnan(a) and math.isnan(e))


def test_float_mean_is_the_float64_mean_not_numpys_float32_accumulation() -> None:
    # Arrange
    rng = np.random.default_rng(7)
    samples = (rng.standard_normal(100_000) + 1000).astype(np.float32)
    hist = Histogram.from_array(samples)

    # Act
    mean = hist.mean()

    # Assert
    assert close(mean, np.mean(samples, dtype=np.float64))
    assert not close(mean, np.mean(samples))  # float32 accumulation is off by ~1e-7


def test_nan_makes_every_statistic_nan_like_numpy() -> None:
    # Arrange
    samples = np.array([1.0, np.nan, 3.0, 2.0], dtype=np.float32)
    hist = Histogram.from_array(samples)

    # Act
    results = [parse_function(f).apply(hist) for f in ("min", "max", "mean", "median", "p50", "p0")]

    # Assert
    assert all(math.isnan(r) for r in results)
    assert math.isnan(np.percentile(samples, 50.0)) and math.isnan(np.median(samples))


def test_int32_percentile_reproduces_numpy_even_when_neighbours_are_far_apart() -> None:
    # Arrange
    samples = np.array([-(2**31), 2**31 - 1, 5, -7], dtype=np.int32)
    hist = Histogram.from_array(samples)

    # Act / Assert
    for q in (0.0, 10.0, 33.3, 50.0, 66.7, 90.0, 100.0):
        assert close(hist.percentile(q), np.percentile(samples, q))
    assert close(hist.mean(), np.mean(samples))


@pytest.mark.parametrize("photo", ["astronaut", "coffee", "chelsea", "camera"])
def test_real_jpeg_photos_match_numpy(photo: str) -> None:
    # Arrange: a real photo through a real JPEG encode/decode.
    import skimage.data as skimage_data

    buffer = io.BytesIO()
    Image.fromarray(getattr(skimage_data, photo)()).save(buffer, format="JPEG", quality=90)
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    decoded.load()
    expected = expected_sample_sets(decoded)

    # Act
    hists = image_histograms(normalize(decoded))

    # Assert
    assert set(hists) == set(expected)
    for channel, samples in expected.items():
        assert_all_functions_match(hists[channel], samples, [0.1, 1.0, 2.5, 25.0, 75.0, 99.0, 99.9])


@PROPERTY
@given(data=st.data())
def test_merge_of_bands_is_the_all_histogram(data: st.DataObject) -> None:
    # Arrange
    image = data.draw(images(data.draw(st.sampled_from(["RGB", "RGBA", "LA"]))))
    hists = image_histograms(image)
    bands = [hists[name] for name in band_names(image)]

    # Act
    merged = merge(bands)
    pairwise = bands[0].merge(bands[1])

    # Assert
    assert merged == hists["all"]
    assert pairwise.total == bands[0].total + bands[1].total


def test_histogram_of_uint16_is_exact_and_native_endian() -> None:
    # Arrange
    samples = np.array([[65535, 0], [0, 258]], dtype=">u2")

    # Act
    hist = Histogram.from_array(samples)

    # Assert
    assert hist.values.tolist() == [0, 258, 65535]
    assert hist.counts.tolist() == [2, 1, 1]
    assert hist.values.dtype == np.dtype("=u2")
    assert (hist.total, hist.kind, hist.min(), hist.max()) == (4, "int", 0, 65535)


# -- parse_function -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "percentile"),
    [
        ("min", None),
        ("max", None),
        ("mean", None),
        ("median", None),
        ("p0", 0.0),
        ("p100", 100.0),
        ("p99.9", 99.9),
        ("p50", 50.0),
        ("p05", 5.0),
        ("p050", 50.0),
        ("p2.5", 2.5),
        ("p100.000", 100.0),
    ],
)
def test_parse_function_accepts(name: str, percentile: float | None) -> None:
    # Act
    func = parse_function(name)

    # Assert
    assert func == StatFunction(name, percentile)


@pytest.mark.parametrize(
    "name",
    [
        "average",
        "p101",
        "p-1",
        "p",
        "P50",
        "p1e1",
        "pnan",
        "pinf",
        "p100.0001",
        "p 5",
        "p+5",
        "p5.",
        "p.5",
        "p5 ",
        " p5",
        "p٥",  # Arabic-Indic digit five: \d would accept it
        "p5_0",
        "MIN",
        "Mean",
        "",
    ],
)
def test_parse_function_rejects(name: str) -> None:
    with pytest.raises(UnknownFunction):
        parse_function(name)


@given(q=st.decimals(0, 100, places=4))
def test_parse_function_accepts_any_plain_decimal_in_range(q) -> None:
    # Arrange
    name = f"p{q:f}"

    # Act
    func = parse_function(name)

    # Assert
    assert func.percentile == float(name[1:])


def test_apply_returns_python_numbers() -> None:
    # Arrange
    hist = Histogram.from_array(np.array([1, 2, 3, 4], dtype=np.uint8))

    # Act
    values = {f: parse_function(f).apply(hist) for f in ("min", "max", "mean", "median", "p25")}

    # Assert
    assert values == {"min": 1, "max": 4, "mean": 2.5, "median": 2.5, "p25": 1.75}
    assert type(values["min"]) is int and type(values["max"]) is int


# -- format_value -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (255, "255"),
        (np.uint8(7), "7"),
        (np.int32(-5), "-5"),
        (2.5, "2.5"),
        (0.1, "0.1"),
        (127.0, "127.0"),
        (np.float32(0.1), "0.10000000149011612"),
        (1e-300, "1e-300"),
        (float("nan"), "nan"),
    ],
)
def test_format_value(value, text: str) -> None:
    assert format_value(value) == text


@given(st.floats(allow_nan=False))
def test_format_value_round_trips_floats(value: float) -> None:
    assert float(format_value(value)) == value


# -- channel selection -------------------------------------------------------------------


def test_select_picks_band_luma_or_every_sample() -> None:
    # Arrange
    hists = image_histograms(Image.new("RGB", (2, 2), (10, 20, 30)))

    # Act / Assert
    assert statistics.select(hists, None) is hists["all"]
    assert statistics.select(hists, "g").max() == 20
    assert statistics.select(hists, "luma").max() == (10 * 299 + 20 * 587 + 30 * 114) // 1000


@pytest.mark.parametrize("channel", ["a", "l", "all", "x", "R"])
def test_select_rejects_channels_the_image_lacks(channel: str) -> None:
    # Arrange
    hists = image_histograms(Image.new("RGB", (2, 2)))

    # Act
    with pytest.raises(UnsupportedChannel) as info:
        statistics.select(hists, channel)

    # Assert
    message = str(info.value)
    assert repr(channel) in message
    assert "r, g, b, luma" in message


# -- serialization -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "RGBA", "P+transparency", "1", "I;16", "I", "F"])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_serialize_round_trips_exactly(mode: str, data: st.DataObject) -> None:
    # Arrange
    hists = image_histograms(normalize(data.draw(images(mode))))

    # Act
    restored = deserialize(serialize(hists))

    # Assert
    assert list(restored) == list(hists)
    for name, hist in hists.items():
        assert restored[name] == hist
        assert restored[name].values.dtype == hist.values.dtype
        assert restored[name].kind == hist.kind


def test_serialized_8bit_photo_is_small() -> None:
    # Arrange
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))

    # Act
    payload = serialize(image_histograms(image))

    # Assert
    assert len(payload) < 8_000
    assert statistics.serialized_size(image_histograms(image)) == len(payload)


def test_serialize_stops_early_past_max_bytes() -> None:
    # Arrange: float noise has one histogram entry per pixel.
    rng = np.random.default_rng(2)
    image = Image.frombytes("F", (300, 300), rng.standard_normal((300, 300)).astype(np.float32).tobytes())
    hists = image_histograms(image)

    # Act / Assert
    with pytest.raises(HistogramTooLarge, match="10000"):
        serialize(hists, max_bytes=10_000)
    assert len(serialize(hists, max_bytes=10_000_000)) > 10_000


@pytest.mark.parametrize("payload", [b"", b"APH", b"XYZ\x01" + b"\x00" * 10, b"APH\x63" + b"\x00", b"APH\x01not zlib"])
def test_deserialize_rejects_foreign_bytes(payload: bytes) -> None:
    with pytest.raises(ValueError):
        deserialize(payload)


def test_deserialize_rejects_unknown_version() -> None:
    # Arrange
    payload = bytearray(serialize(image_histograms(Image.new("L", (1, 1)))))
    payload[3] = 99

    # Act / Assert
    with pytest.raises(ValueError, match="version 99"):
        deserialize(bytes(payload))


# -- RowHistograms: counting while the decoder runs ---------------------------------------


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_row_histograms_of_a_jpeg_equal_the_histograms_of_its_plain_decode(progressive: bool) -> None:
    # Arrange
    from concurrent.futures import ThreadPoolExecutor

    from aperture.domain.imaging.pixels import open_image

    rng = np.random.default_rng(11)
    photo = Image.fromarray(rng.integers(0, 256, (700, 1000, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90, progressive=progressive)
    data = buffer.getvalue()
    expected = statistics.image_histograms(Image.open(io.BytesIO(data)))

    with ThreadPoolExecutor(2) as pool:
        counted = statistics.RowHistograms(pool)

        # Act
        image = open_image(io.BytesIO(data), max_pixels=10**7, on_rows=counted.add)
        bands = counted.result(image)
    statistics.add_luma(image, bands)

    # Assert
    assert set(bands) == set(expected) == {"r", "g", "b", "all", "luma"}
    for name in expected:
        assert bands[name] == expected[name], name


def test_row_histograms_of_a_decode_that_started_over_defer_to_a_whole_image_count() -> None:
    # Arrange: corrupt data makes the two-core decode give up after reporting some rows
    from concurrent.futures import ThreadPoolExecutor

    from aperture.domain.imaging.pixels import open_image
    from tests.unit.domain.imaging.test_pixels import corrupt_jpeg

    data = corrupt_jpeg(1600, 1200, seed=8, at=0.9)
    expected = statistics.image_histograms(Image.open(io.BytesIO(data)), luma=False)

    with ThreadPoolExecutor(2) as pool:
        counted = statistics.RowHistograms(pool)

        # Act
        image = open_image(io.BytesIO(data), max_pixels=10**7, on_rows=counted.add)

        # Assert
        assert counted.result(image) is None
    assert statistics.image_histograms(image, luma=False) == expected


def test_row_histograms_without_rows_defer_to_a_whole_image_count() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        assert statistics.RowHistograms(pool).result(Image.new("L", (3, 3))) is None


def test_rgbx_images_count_as_rgb() -> None:
    rgb = Image.fromarray(np.random.default_rng(5).integers(0, 256, (20, 30, 3), dtype=np.uint8))

    assert statistics.image_histograms(rgb.convert("RGBX")) == statistics.image_histograms(rgb)
