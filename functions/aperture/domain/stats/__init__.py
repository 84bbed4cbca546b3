"""Exact per-band histograms of an image and the statistics answered from them.

The service decodes an image once, reduces its pixels to exact value counts
(`Histogram`), stores those (`serialize`) and answers every later
``/stats/{image}/{func}`` from the counts alone. Every statistic equals what
numpy computes on ``numpy.asarray(normalized_image)`` (or one band of it):

* ``min``/``max``: the extreme sample, as a Python int for integer images.
* ``mean``: integer images give exactly ``np.mean``: the exact integer sum
  divided by the count, correctly rounded, as numpy's float64 accumulation
  gives whenever the sum is below 2**53 (always, for 8- and 16-bit images).
  Float (``F``) images: ``np.mean`` of a float32 array accumulates *in
  float32* and returns float32, which is off the true mean by ~1e-7 relative
  (more on large images). We return the true mean instead, computed in
  float64 from exact per-value products; it equals
  ``np.mean(arr, dtype=np.float64)`` to ~1e-15 relative.
* ``median`` and ``pXX``: numpy's default ("linear") method step by step,
  including its arithmetic in the sample dtype (float32 for ``F`` images)
  and ``_lerp``'s switch of formula at t >= 0.5, so results are bit-identical
  to ``np.median`` / ``np.percentile(arr, q)`` with ``q`` a Python float.
* Any NaN sample makes every statistic NaN, as in numpy.

Pure domain code: numpy and Pillow only.
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
import zlib
from collections.abc import Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageMode

from aperture.domain.imaging.pixels import RowBand, UnsupportedChannel, band_names, normalize

__all__ = [
    "Histogram",
    "merge",
    "UnknownFunction",
    "StatFunction",
    "parse_function",
    "format_value",
    "image_histograms",
    "add_luma",
    "RowHistograms",
    "select",
    "serialize",
    "deserialize",
    "serialized_size",
    "HistogramTooLarge",
    "ALL",
    "LUMA",
]

ALL = "all"
LUMA = "luma"

# Sample dtypes a Histogram may hold: what np.asarray gives for Pillow modes.
_SUPPORTED_KINDS = "uif"


@dataclass(frozen=True, eq=False)
class Histogram:
    """Exact value counts of one set of samples.

    `values` holds the distinct sample values in ascending order (NaN, if
    any, last), in the samples' own native-byte-order dtype (uint8, uint16,
    int32, float32, ...): percentile arithmetic is done in that dtype, as
    numpy does it. `counts[i]` is how many samples equal `values[i]` (always
    > 0); `total` is their sum. `kind` is ``'int'`` or ``'float'``.
    Both arrays are made read-only.
    """

    values: np.ndarray
    counts: np.ndarray
    total: int
    kind: Literal["int", "float"]

    def __post_init__(self) -> None:
        if self.values.ndim != 1 or self.counts.ndim != 1 or len(self.values) != len(self.counts):
            raise ValueError("values and counts must be 1-D arrays of the same length")
        if len(self.values) == 0 or self.total <= 0:
            raise ValueError("a histogram needs at least one sample")
        expected = "float" if self.values.dtype.kind == "f" else "int"
        if self.kind != expected:
            raise ValueError(f"kind {self.kind!r} does not match dtype {self.values.dtype}")
        self.values.setflags(write=False)
        self.counts.setflags(write=False)

    # -- construction -----------------------------------------------------

    @classmethod
    def from_pairs(cls, values: np.ndarray, counts: np.ndarray) -> Histogram:
        """Histogram from sorted distinct `values` and their positive `counts`."""
        values = _native(np.asarray(values))
        if values.dtype.kind not in _SUPPORTED_KINDS:
            raise TypeError(f"unsupported sample dtype {values.dtype}")
        counts = np.asarray(counts, dtype=np.int64)
        return cls(values, counts, int(counts.sum()), "float" if values.dtype.kind == "f" else "int")

    @classmethod
    def from_dense(cls, dense_counts: np.ndarray | list[int], dtype: np.dtype | type = np.uint8) -> Histogram:
        """Histogram from counts indexed by value (``dense_counts[v]`` samples equal v).

        This is the shape of Pillow's ``Image.histogram()`` for one 8-bit band.
        """
        dense = np.asarray(dense_counts, dtype=np.int64)
        present = np.flatnonzero(dense)
        return cls.from_pairs(present.astype(dtype), dense[present])

    @classmethod
    def from_array(cls, samples: np.ndarray) -> Histogram:
        """Exact histogram of every element of `samples` (any shape)."""
        flat = np.asarray(samples).ravel()
        if flat.dtype.kind == "b":
            flat = flat.view(np.uint8)
        if flat.dtype.kind not in _SUPPORTED_KINDS:
            raise TypeError(f"unsupported sample dtype {flat.dtype}")
        if flat.dtype.kind == "u" and flat.dtype.itemsize <= 2:
            # Dense counting is exact and much faster than sorting for <= 16 bits.
            dense = np.bincount(flat, minlength=1 << (8 * flat.dtype.itemsize))
            return cls.from_dense(dense, _native(flat[:0]).dtype)
        values, counts = np.unique(flat, return_counts=True)
        return cls.from_pairs(values, counts)

    # -- derived data (cached: a Histogram is immutable) --------------------

    @functools.cached_property
    def _cumulative(self) -> np.ndarray:
        return np.cumsum(self.counts)

    @functools.cached_property
    def _has_nan(self) -> bool:
        return self.kind == "float" and bool(np.isnan(self.values[-1]))

    @property
    def distinct(self) -> int:
        """Number of distinct values (what the stored size grows with)."""
        return len(self.values)

    def _nth(self, index: int) -> np.generic:
        """The `index`-th (0-based) sample in sorted order, as a numpy scalar."""
        position = int(np.searchsorted(self._cumulative, index, side="right"))
        return self.values[position]

    # -- statistics ------------------------------------------------------------

    def min(self) -> int | float:
        if self._has_nan:
            return math.nan
        return _python(self.values[0])

    def max(self) -> int | float:
        if self._has_nan:
            return math.nan
        return _python(self.values[-1])

    def mean(self) -> float:
        return self._mean

    @functools.cached_property
    def _mean(self) -> float:
        # Cached: for F images with millions of distinct values it costs ~0.1 s.
        if self._has_nan:
            return math.nan
        if self.kind == "int":
            return _exact_int_sum(self.values, self.counts) / self.total
        return _float_mean(self.values, self.counts, self.total)

    def median(self) -> float:
        """np.median: the middle sample, or numpy's mean of the two middle ones."""
        if self._has_nan:
            return math.nan
        n = self.total
        half = n // 2
        if n % 2 == 1:
            middle = self._nth(half)
            return float(middle)
        low, high = self._nth(half - 1), self._nth(half)
        with np.errstate(all="ignore"):
            if self.kind == "int":
                # np.mean sums integers in float64.
                return float((np.float64(low) + np.float64(high)) / np.intp(2))
            # np.mean of float32 sums in float32, divides, casts back to float32.
            pair_sum = low + high  # type: ignore[operator]  # numpy scalars of the sample dtype
            return float(pair_sum.dtype.type(pair_sum / np.intp(2)))

    def percentile(self, q: float) -> float:
        """np.percentile(samples, q) with the default linear method, q in [0, 100]."""
        q = float(q)
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile {q} is outside [0, 100]")
        if self._has_nan:
            return math.nan
        n = self.total
        # Same float64 operations, in the same order, as numpy's _quantile.
        quantile = q / 100.0
        virtual = (n - 1) * quantile
        if virtual >= n - 1:
            # numpy marks both neighbours as index -1 (the last sample), and
            # computes gamma against that -1.
            previous_index = next_index = n - 1
            gamma = virtual - (-1)
        else:
            previous_index = math.floor(virtual)
            next_index = previous_index + 1
            gamma = virtual - previous_index
        low, high = self._nth(previous_index), self._nth(next_index)
        return float(_lerp(low, high, float(gamma)))

    def merge(self, other: Histogram) -> Histogram:
        return merge([self, other])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (
            self.kind == other.kind
            and self.total == other.total
            and self.values.dtype == other.values.dtype
            and np.array_equal(self.values, other.values, equal_nan=self.kind == "float")
            and np.array_equal(self.counts, other.counts)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Histogram(kind={self.kind!r}, dtype={self.values.dtype}, distinct={self.distinct}, total={self.total})"


def _native(values: np.ndarray) -> np.ndarray:
    """`values` in native byte order (I;16B arrives big-endian)."""
    if values.dtype.byteorder not in ("=", "|"):
        return values.astype(values.dtype.newbyteorder("="))
    return values


def _python(value: np.generic) -> int | float:
    return int(value) if value.dtype.kind in "iub" else float(value)


def _lerp(a: np.generic, b: np.generic, t: float) -> np.generic:
    """numpy's _lerp on scalars: a + (b-a)*t, or b - (b-a)*(1-t) when t >= 0.5.

    `a` and `b` keep their dtype and `t` is a Python float, so float32 samples
    are interpolated in float32 exactly as np.percentile does.
    """
    with np.errstate(all="ignore"):
        diff = b - a  # type: ignore[operator]  # numpy scalars of the sample dtype
        if t >= 0.5:
            return np.subtract(b, diff * (1 - t))
        return np.add(a, diff * t)


def _exact_int_sum(values: np.ndarray, counts: np.ndarray) -> int:
    total = int(counts.sum())
    largest = max(abs(int(values[0])), abs(int(values[-1])))
    if largest * total < 2**63:
        # No partial sum of value*count can overflow int64.
        return int(np.dot(values.astype(np.int64), counts))
    return sum(int(v) * int(c) for v, c in zip(values.tolist(), counts.tolist()))


def _float_mean(values: np.ndarray, counts: np.ndarray, total: int) -> float:
    with np.errstate(all="ignore"):
        wide = values.astype(np.float64)
        if np.isinf(wide).any():
            # inf and -inf cancel to NaN, as in numpy.
            return float(np.sum(np.unique(wide[np.isinf(wide)])) / total)
        # float32 value * count < 2**29 is exact in float64, so the only
        # rounding is in the sum; math.fsum rounds it once.
        if len(values) <= 1 << 20:
            return math.fsum((wide * counts).tolist()) / total
        # Huge float images: numpy's pairwise float64 sum (error ~1e-16 * log n).
        return float(np.sum(wide * counts) / total)


def merge(histograms: Iterable[Histogram]) -> Histogram:
    """Histogram of the union of the samples of `histograms` (e.g. every band)."""
    histograms = list(histograms)
    if not histograms:
        raise ValueError("nothing to merge")
    if len(histograms) == 1:
        return histograms[0]
    dtype = np.result_type(*(h.values.dtype for h in histograms))
    values = np.concatenate([h.values.astype(dtype, copy=False) for h in histograms])
    counts = np.concatenate([h.counts for h in histograms])
    distinct, inverse = np.unique(values, return_inverse=True)
    summed = np.zeros(len(distinct), dtype=np.int64)
    np.add.at(summed, inverse.ravel(), counts)
    return Histogram.from_pairs(distinct, summed)


# -- functions ------------------------------------------------------------------


class UnknownFunction(ValueError):
    """`func` is not min, max, mean, median or pXX with XX in [0, 100]."""


# Digits, optionally a dot followed by digits; ASCII only (\d would accept
# other scripts' digits). No sign, exponent, whitespace, nan/inf or "5.".
_PERCENTILE = re.compile(r"p([0-9]+(?:\.[0-9]+)?)")
_NAMED = ("min", "max", "mean", "median")


@dataclass(frozen=True)
class StatFunction:
    """A parsed ``func``: `name` as requested, `percentile` set for pXX."""

    name: str
    percentile: float | None = None

    def apply(self, hist: Histogram) -> int | float:
        if self.percentile is not None:
            return hist.percentile(self.percentile)
        if self.name == "min":
            return hist.min()
        if self.name == "max":
            return hist.max()
        if self.name == "mean":
            return hist.mean()
        if self.name == "median":
            return hist.median()
        raise UnknownFunction(self.name)


def parse_function(name: str) -> StatFunction:
    """Parse ``func`` of ``/stats/{image}/{func}``; raise `UnknownFunction` if it is not one.

    Accepted: min, max, mean, median, and p followed by a plain decimal in
    [0, 100] (leading zeros and a fractional part allowed: p05, p99.9,
    p100.000). Rejected: anything else, including upper case, signs,
    exponents, whitespace, nan/inf and a trailing dot.
    """
    if name in _NAMED:
        return StatFunction(name)
    match = _PERCENTILE.fullmatch(name)
    if match is None:
        raise UnknownFunction(f"unknown function {name!r}")
    q = float(match.group(1))
    if not 0.0 <= q <= 100.0:
        raise UnknownFunction(f"percentile {match.group(1)} is outside 0..100")
    return StatFunction(name, q)


def format_value(value: int | float | np.generic) -> str:
    """Exact text form: integers as digits, floats as the shortest round-trip repr."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))


# -- images ---------------------------------------------------------------------


def image_histograms(image: Image.Image, *, luma: bool = True) -> dict[str, Histogram]:
    """Exact histograms of a normalized image: one per band, plus ``all`` and usually ``luma``.

    Keys are `pixels.band_names(image)` (``'r'``, ``'g'``, ...), ``'all'``
    (every sample of every band merged) and ``'luma'``:

    * images with r, g and b bands (RGB, RGBA, RGBX, RGBa): the histogram of
      ``image.convert('L')``, Pillow's ITU-R 601-2 luma L = R*299/1000 +
      G*587/1000 + B*114/1000 (alpha ignored);
    * single-band images (L, I;16*, I, F) and LA, La: the ``l`` band itself;
    * CMYK, YCbCr and other modes Pillow can convert to L: the histogram of
      ``image.convert('L')`` (for YCbCr that is the Y band; for CMYK luma of
      Pillow's naive CMYK->RGB);
    * other modes with an ``l`` band (LAB): that band;
    * modes Pillow cannot convert to L and without an ``l`` band: no ``luma`` key.

    8-bit images are counted with Pillow's C ``Image.histogram()`` (one pass,
    ~13 ms for 12 MP RGB); 16-bit with ``np.bincount``; I and F images with
    ``np.unique``, which may have one entry per pixel.
    """
    image = normalize(image)
    names = band_names(image)
    hists: dict[str, Histogram] = {}
    if ImageMode.getmode(image.mode).typestr == "|u1":
        hists.update(_dense_histograms(names, image.histogram()))
    else:
        samples = np.asarray(image)
        if samples.ndim == 2:
            samples = samples[..., np.newaxis]
        for index, name in enumerate(names):
            hists[name] = Histogram.from_array(samples[..., index])
        hists[ALL] = merge(hists[name] for name in names)

    if luma:
        add_luma(image, hists)
    return hists


def _dense_histograms(names: tuple[str, ...], counts: Iterable[int]) -> dict[str, Histogram]:
    """Per-band and ``all`` histograms from Pillow's 256-per-band counts
    (an RGBX image's padding band comes last and is dropped)."""
    dense = np.asarray(counts, dtype=np.int64).reshape(-1, 256)[: len(names)]
    hists = {name: Histogram.from_dense(band_counts) for name, band_counts in zip(names, dense)}
    hists[ALL] = Histogram.from_dense(dense.sum(axis=0))
    return hists


class RowHistograms:
    """The band histograms of an 8-bit image, counted run by run as its rows
    are decoded: pass `add` as `pixels.open_image(on_rows=...)`; each run is
    counted on `executor`, so counting overlaps the decode of later rows,
    unless the decoder already counted it (`RowBand.counts`)."""

    def __init__(self, executor: Executor):
        self._executor = executor
        # (rows, counts) per run: counts as an array, or the Future of one.
        # Runs come from up to two decoding threads; list.append is atomic.
        self._runs: list[tuple[int, np.ndarray | Future]] = []

    def add(self, rows: RowBand) -> None:
        counts = rows.counts if rows.counts is not None else self._executor.submit(_count_run, rows)
        self._runs.append((rows.height, counts))

    def result(self, image: Image.Image) -> dict[str, Histogram] | None:
        """The histograms (no luma) of the decoded `image`, or None unless the
        runs reported cover it (none at all, or a decode that started over)."""
        if not self._runs or sum(rows for rows, _ in self._runs) != image.height:
            return None
        counts = np.stack([c if isinstance(c, np.ndarray) else c.result() for _, c in self._runs]).sum(axis=0)
        return _dense_histograms(band_names(image), counts)


def _count_run(rows: RowBand) -> np.ndarray:
    # The run's counts become an array on the counting thread, so that the sum,
    # the one step after the decode, is a single vectorised add. RGBX: the
    # padding band (the last 256) is dropped, as in `RowBand.counts`.
    return np.asarray(rows().histogram()[:768], dtype=np.int64)


def add_luma(image: Image.Image, hists: dict[str, Histogram]) -> None:
    """Add the ``luma`` histogram to `image_histograms(image, luma=False)`'s result.

    Separate because for RGB it costs a conversion plus a pass (about as much
    as the band histograms): callers can answer other channels first.
    """
    image = normalize(image)
    luma = _luma(image, band_names(image), hists)
    if luma is not None:
        hists[LUMA] = luma


def _luma(image: Image.Image, names: tuple[str, ...], hists: dict[str, Histogram]) -> Histogram | None:
    if not {"r", "g", "b"} <= set(names) and "l" in names:
        return hists["l"]
    try:
        grey = image.convert("L")
    except ValueError:
        return None
    return Histogram.from_dense(grey.histogram())


def select(hists: dict[str, Histogram], channel: str | None) -> Histogram:
    """The histogram ``?channel=`` asks for: every sample when None, else one band or luma.

    Raises `pixels.UnsupportedChannel` naming the channels this image has.
    """
    if channel is None:
        return hists[ALL]
    if channel == ALL or channel not in hists:
        available = [name for name in hists if name != ALL]
        raise UnsupportedChannel(channel, available)
    return hists[channel]


# -- storage --------------------------------------------------------------------

_MAGIC = b"APH"
_VERSION = 1
_HEADER = struct.Struct("<I")
_SMALL_BODY = 4 << 20
_CHUNK = 1 << 20


class HistogramTooLarge(ValueError):
    """`serialize` output would exceed the `max_bytes` the caller can store."""

    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"serialized histograms exceed {limit} bytes")


def serialize(hists: dict[str, Histogram], *, max_bytes: int | None = None) -> bytes:
    """Compact, versioned bytes of `hists`; `deserialize` gives them back exactly.

    Layout: ``b"APH"``, a version byte, then zlib of: a little-endian uint32
    length, a JSON directory, and per stored histogram its values
    (delta-encoded as unsigned integers of the same width, which makes runs of
    consecutive values compress to almost nothing) and its counts (in the
    narrowest unsigned width that holds them). A histogram equal to an earlier
    one (``all`` and ``luma`` of an L image, say) is stored as an alias.

    8-bit images take a few KB and 16-bit ones tens of KB, but F and I images
    can have one distinct value per pixel (~10 MB for 12 MP of noise). With
    `max_bytes`, compression stops as soon as the output passes it and
    `HistogramTooLarge` is raised, so the caller does not pay seconds of zlib
    for something it will not store.
    """
    directory: list[dict[str, object]] = []
    blobs: list[bytes] = []
    stored: list[tuple[str, Histogram]] = []
    for name, hist in hists.items():
        alias = next((earlier for earlier, h in stored if h is hist or h == hist), None)
        if alias is not None:
            directory.append({"name": name, "alias": alias})
            continue
        stored.append((name, hist))
        dtype = hist.values.dtype.newbyteorder("<")
        width = _count_width(int(hist.counts.max()))
        directory.append(
            {"name": name, "dtype": dtype.str, "n": len(hist.values), "count_bytes": width, "total": hist.total}
        )
        blobs.append(_delta_encode(hist.values.astype(dtype, copy=False)))
        blobs.append(hist.counts.astype(f"<u{width}").tobytes())
    header = json.dumps({"histograms": directory}, separators=(",", ":")).encode()
    body = memoryview(_HEADER.pack(len(header)) + header + b"".join(blobs))

    # Small bodies (every 8/16-bit image) get the better ratio; big ones speed.
    compressor = zlib.compressobj(6 if len(body) <= _SMALL_BODY else 1)
    pieces = [_MAGIC, bytes([_VERSION])]
    size = len(_MAGIC) + 1
    for start in range(0, len(body), _CHUNK):
        piece = compressor.compress(body[start : start + _CHUNK])
        pieces.append(piece)
        size += len(piece)
        if max_bytes is not None and size > max_bytes:
            raise HistogramTooLarge(max_bytes)
    pieces.append(compressor.flush())
    size += len(pieces[-1])
    if max_bytes is not None and size > max_bytes:
        raise HistogramTooLarge(max_bytes)
    return b"".join(pieces)


def deserialize(data: bytes) -> dict[str, Histogram]:
    """Inverse of `serialize`; raises ValueError for bytes it did not write."""
    data = bytes(data)
    if len(data) < len(_MAGIC) + 1 or not data.startswith(_MAGIC):
        raise ValueError("not a serialized histogram")
    version = data[len(_MAGIC)]
    if version != _VERSION:
        raise ValueError(f"unsupported histogram format version {version}")
    try:
        body = zlib.decompress(data[len(_MAGIC) + 1 :])
        (header_length,) = _HEADER.unpack_from(body, 0)
        offset = _HEADER.size
        directory = json.loads(body[offset : offset + header_length])["histograms"]
        offset += header_length
        hists: dict[str, Histogram] = {}
        for entry in directory:
            if "alias" in entry:
                hists[entry["name"]] = hists[entry["alias"]]
                continue
            dtype = np.dtype(entry["dtype"])
            n = entry["n"]
            values = _delta_decode(body[offset : offset + n * dtype.itemsize], dtype)
            offset += n * dtype.itemsize
            width = entry["count_bytes"]
            counts = np.frombuffer(body[offset : offset + n * width], dtype=f"<u{width}").astype(np.int64)
            offset += n * width
            if len(values) != n or len(counts) != n:
                raise ValueError("truncated histogram data")
            hist = Histogram.from_pairs(values, counts)
            if hist.total != entry["total"]:
                raise ValueError("histogram counts do not add up")
            hists[entry["name"]] = hist
    except (zlib.error, struct.error, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"corrupt serialized histogram: {exc}") from None
    if offset != len(body):
        raise ValueError("corrupt serialized histogram: trailing data")
    return hists


def serialized_size(hists: dict[str, Histogram]) -> int:
    """Bytes `serialize(hists)` takes (prefer ``serialize(..., max_bytes=)`` to store-or-skip)."""
    return len(serialize(hists))


def _count_width(largest: int) -> int:
    for width in (1, 2, 4):
        if largest < 1 << (8 * width):
            return width
    return 8


def _delta_encode(values: np.ndarray) -> bytes:
    # Differences of the raw bits, modulo 2**bits: exact for any dtype.
    bits = values.view(f"<u{values.dtype.itemsize}")
    return np.diff(bits, prepend=bits.dtype.type(0)).tobytes()


def _delta_decode(raw: bytes, dtype: np.dtype) -> np.ndarray:
    unsigned = np.dtype(f"<u{dtype.itemsize}")
    deltas = np.frombuffer(raw, dtype=unsigned)
    bits = np.cumsum(deltas, dtype=unsigned)  # wraps modulo 2**bits, undoing the diff
    return bits.view(dtype).astype(dtype.newbyteorder("="))
