"""Exact value counts of a set of samples, and numpy's statistics computed from them (see the package docstring)."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Iterator
from typing import Literal

import numpy as np

from aperture.domain.stats.blocks import BLOCK, Blocks

ALL = "all"
LUMA = "luma"

# Sample dtypes a Histogram may hold: what np.asarray gives for Pillow modes.
_SUPPORTED_KINDS = "uif"


class Histogram:
    """Exact value counts of one set of samples.

    Conceptually `values` holds the distinct sample values in ascending order
    (NaN, if any, last), in the samples' own native-byte-order `dtype` (uint8,
    uint16, int32, float32, ...): percentile arithmetic is done in that dtype,
    as numpy does it. `counts[i]` is how many samples equal `values[i]`
    (always > 0); `total` is their sum. `kind` is ``'int'`` or ``'float'``.

    Held either *open*, as two read-only arrays (what counting makes), or
    *packed* (`pack`, and what `deserialize` gives for more than `BLOCK`
    distinct values), as `Blocks`: compressed blocks of `BLOCK` pairs with an
    index. Statistics never expand a packed histogram: min and max come from
    the index, the mean is computed once (when packing) and kept, a median or
    percentile decodes the one or two blocks holding its neighbours. `values`,
    `counts` and `merge` do expand it (O(distinct) memory; tests and counting
    use them, never a stored histogram's statistics).
    """

    def __init__(
        self,
        dtype: np.dtype,
        total: int,
        *,
        arrays: tuple[np.ndarray, np.ndarray] | None = None,
        blocks: Blocks | None = None,
        mean: float | None = None,
    ):
        if (arrays is None) == (blocks is None):
            raise ValueError("a histogram is either open (arrays) or packed (blocks)")
        if dtype.kind not in _SUPPORTED_KINDS:
            raise TypeError(f"unsupported sample dtype {dtype}")
        if total <= 0:
            raise ValueError("a histogram needs at least one sample")
        if arrays is not None:
            values, counts = arrays
            if values.ndim != 1 or counts.ndim != 1 or len(values) != len(counts) or len(values) == 0:
                raise ValueError("values and counts must be 1-D arrays of the same length")
            if values.dtype != dtype:
                raise ValueError(f"values are {values.dtype}, not {dtype}")
            values.setflags(write=False)
            counts.setflags(write=False)
        elif blocks is not None and (blocks.dtype != dtype or blocks.total != total):
            raise ValueError("blocks do not match the histogram")
        self.dtype = dtype
        self.total = total
        self.kind: Literal["int", "float"] = "float" if dtype.kind == "f" else "int"
        self._arrays = arrays
        self._blocks = blocks
        if mean is not None:
            self.__dict__["_mean"] = mean

    # -- construction -----------------------------------------------------

    @classmethod
    def from_pairs(cls, values: np.ndarray, counts: np.ndarray) -> Histogram:
        """Histogram from sorted distinct `values` and their positive `counts`."""
        values = _native(np.asarray(values))
        if values.dtype.kind not in _SUPPORTED_KINDS:
            raise TypeError(f"unsupported sample dtype {values.dtype}")
        counts = np.asarray(counts, dtype=np.int64)
        return cls(values.dtype, int(counts.sum()), arrays=(values, counts))

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

    @classmethod
    def from_chunks(
        cls, chunks: Iterable[tuple[np.ndarray, np.ndarray]], dtype: np.dtype, *, mean: float | None = None
    ) -> Histogram:
        """Histogram of consecutive (values, counts) pieces of `BLOCK` pairs (the last may be shorter):
        open if there is one piece, else packed (one piece in memory at a time)."""
        pieces = iter(chunks)
        first = next(pieces)
        second = next(pieces, None)
        if second is None:
            return cls.from_pairs(*first)
        blocks = Blocks.pack(itertools.chain([first, second], pieces), dtype)
        return cls(dtype, blocks.total, blocks=blocks, mean=mean)

    def pack(self) -> Histogram:
        """This histogram as compressed blocks if it has more than `BLOCK` distinct values (else itself)."""
        if self._blocks is not None or self.distinct <= BLOCK:
            return self
        return Histogram.from_chunks(self.chunks(), self.dtype, mean=self.mean())

    # -- representation ----------------------------------------------------

    @property
    def packed(self) -> bool:
        return self._blocks is not None

    @property
    def blocks(self) -> Blocks | None:
        """The compressed blocks of a packed histogram (None when open)."""
        return self._blocks

    @property
    def values(self) -> np.ndarray:
        """The distinct values (expands a packed histogram: O(distinct) memory)."""
        if self._arrays is not None:
            return self._arrays[0]
        return np.concatenate([values for values, _ in self.chunks()])

    @property
    def counts(self) -> np.ndarray:
        """Their counts, int64 (expands a packed histogram: O(distinct) memory)."""
        if self._arrays is not None:
            return self._arrays[1]
        return np.concatenate([counts for _, counts in self.chunks()])

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(values, counts) in consecutive pieces of `BLOCK` pairs (the last may be shorter)."""
        if self._blocks is not None:
            yield from self._blocks.chunks()
            return
        values, counts = self._open()
        for start in range(0, len(values), BLOCK):
            yield values[start : start + BLOCK], counts[start : start + BLOCK]

    def _open(self) -> tuple[np.ndarray, np.ndarray]:
        assert self._arrays is not None, "an open histogram"
        return self._arrays

    @property
    def nbytes(self) -> int:
        """Bytes this histogram holds in memory: its arrays and cumulative counts, or its compressed blocks."""
        if self._blocks is not None:
            return self._blocks.nbytes
        values, counts = self._open()
        cumulative = self.__dict__.get("_cumulative")
        extra = cumulative.nbytes if cumulative is not None else counts.nbytes
        return values.nbytes + counts.nbytes + extra

    @property
    def distinct(self) -> int:
        """Number of distinct values (what the stored size grows with)."""
        if self._blocks is not None:
            return self._blocks.distinct
        return len(self._open()[0])

    # -- derived data (cached: a Histogram is immutable) --------------------

    @functools.cached_property
    def _cumulative(self) -> np.ndarray:
        return np.cumsum(self._open()[1])

    def _first(self) -> np.generic:
        if self._blocks is not None:
            return self._blocks.firsts[0]
        return self._open()[0][0]

    def _last(self) -> np.generic:
        if self._blocks is not None:
            return self._blocks.lasts[-1]
        return self._open()[0][-1]

    @functools.cached_property
    def _has_nan(self) -> bool:
        return self.kind == "float" and bool(np.isnan(self._last()))

    def _nth(self, *indices: int) -> list[np.generic]:
        """The `indices`-th (0-based) samples in sorted order, as numpy scalars."""
        if self._blocks is not None:
            return self._blocks.nth(*indices)
        values = self._open()[0]
        return [values[int(np.searchsorted(self._cumulative, index, side="right"))] for index in indices]

    # -- statistics ------------------------------------------------------------

    def min(self) -> int | float:
        if self._has_nan:
            return math.nan
        return _python(self._first())

    def max(self) -> int | float:
        if self._has_nan:
            return math.nan
        return _python(self._last())

    def mean(self) -> float:
        return self._mean

    @functools.cached_property
    def _mean(self) -> float:
        # Cached, and kept by `pack` and `serialize`: for millions of distinct values it costs ~0.1 s.
        if self._has_nan:
            return math.nan
        if self.kind == "int":
            return sum(_exact_int_sum(values, counts) for values, counts in self.chunks()) / self.total
        return _float_mean(self.chunks(), self.total, exact=self.distinct <= 1 << 20)

    def median(self) -> float:
        """np.median: the middle sample, or numpy's mean of the two middle ones."""
        if self._has_nan:
            return math.nan
        n = self.total
        half = n // 2
        if n % 2 == 1:
            (middle,) = self._nth(half)
            return float(middle)
        low, high = self._nth(half - 1, half)
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
        low, high = self._nth(previous_index, next_index)
        return float(_lerp(low, high, float(gamma)))

    def merge(self, other: Histogram) -> Histogram:
        return merge([self, other])

    def __eq__(self, other: object) -> bool:
        """Same samples; compared piece by piece, so packed histograms are not expanded."""
        if not isinstance(other, Histogram):
            return NotImplemented
        if (self.kind, self.total, self.dtype, self.distinct) != (other.kind, other.total, other.dtype, other.distinct):
            return False
        equal_nan = self.kind == "float"
        for (values, counts), (other_values, other_counts) in zip(self.chunks(), other.chunks()):
            if len(values) != len(other_values):  # pieces cut elsewhere: compare whole
                return np.array_equal(self.values, other.values, equal_nan=equal_nan) and np.array_equal(
                    self.counts, other.counts
                )
            if not (np.array_equal(values, other_values, equal_nan=equal_nan) and np.array_equal(counts, other_counts)):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        form = "packed" if self.packed else "open"
        return (
            f"Histogram(kind={self.kind!r}, dtype={self.dtype}, distinct={self.distinct}, total={self.total}, {form})"
        )


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


def _float_mean(chunks: Iterable[tuple[np.ndarray, np.ndarray]], total: int, *, exact: bool) -> float:
    """Mean of float samples from their (values, counts) pieces, one piece in memory at a time.

    float32 value * count < 2**29 is exact in float64, so the only rounding is
    in the sum: with `exact`, math.fsum rounds it once; otherwise (millions of
    distinct values) each piece is summed by numpy (pairwise, error ~1e-16 *
    log n) and the piece sums by fsum.
    """
    infinities: set[float] = set()

    def products() -> Iterator[np.ndarray]:
        for values, counts in chunks:
            with np.errstate(all="ignore"):
                product = values.astype(np.float64) * counts
            infinite = np.isinf(product)
            if infinite.any():
                infinities.update(product[infinite].tolist())
                product[infinite] = 0.0
            yield product

    if exact:
        total_sum = math.fsum(x for product in products() for x in product.tolist())
    else:
        total_sum = math.fsum(float(np.sum(product)) for product in products())
    if infinities:
        # inf and -inf cancel to NaN, as in numpy.
        return sum(infinities) / total
    return total_sum / total


def merge(histograms: Iterable[Histogram]) -> Histogram:
    """Histogram of the union of the samples of `histograms` (e.g. every band)."""
    histograms = list(histograms)
    if not histograms:
        raise ValueError("nothing to merge")
    if len(histograms) == 1:
        return histograms[0]
    dtype = np.result_type(*(h.dtype for h in histograms))
    values = np.concatenate([h.values.astype(dtype, copy=False) for h in histograms])
    counts = np.concatenate([h.counts for h in histograms])
    distinct, inverse = np.unique(values, return_inverse=True)
    summed = np.zeros(len(distinct), dtype=np.int64)
    np.add.at(summed, inverse.ravel(), counts)
    return Histogram.from_pairs(distinct, summed)


def pack(hists: dict[str, Histogram]) -> dict[str, Histogram]:
    """`hists` with each histogram packed (`Histogram.pack`), shared ones still shared."""
    packed: dict[int, Histogram] = {}
    return {name: packed.setdefault(id(hist), hist.pack()) for name, hist in hists.items()}
