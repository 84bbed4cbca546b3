"""Exact value counts of a set of samples, and numpy's statistics computed from them (see the package docstring)."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

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
    def nbytes(self) -> int:
        """Bytes this histogram holds in memory (its arrays, and the cumulative counts once computed)."""
        cumulative = self.__dict__.get("_cumulative")
        extra = cumulative.nbytes if cumulative is not None else self.counts.nbytes
        return self.values.nbytes + self.counts.nbytes + extra

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
