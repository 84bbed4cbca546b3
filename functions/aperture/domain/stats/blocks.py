"""Sorted (value, count) pairs kept as independently zlib-compressed blocks.

A float or 32-bit image can have one distinct value per pixel, and a smooth
one compresses ~1000:1 (consecutive values differ by one unit in the last
place), so arrays of its pairs can be thousands of times its stored size.
`Blocks` keeps them compressed, `BLOCK` pairs per block, with a small index
(first and last value, pairs, samples per block), and decodes one block at a
time: memory is the compressed bytes, the index, and one decoded block.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

BLOCK = 1 << 16  # pairs per block: one decoded block is at most ~1.6 MB (values, counts, cumulative counts)
LEVEL = 1  # zlib level: smooth images' deltas compress ~1000:1 even at 1; noise barely compresses at any level


class HistogramTooLarge(ValueError):
    """Serialized histograms would exceed the `max_bytes` the caller can store."""

    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"serialized histograms exceed {limit} bytes")


@dataclass(frozen=True, eq=False)
class Blocks:
    """Compressed blocks of sorted distinct values (dtype `dtype`) and their counts.

    `firsts`/`lasts` are each block's first and last value, `sizes` its pairs,
    `totals` its samples, `widths` the bytes per count, `offsets` where its
    compressed bytes start in `data` (one more entry: the end).
    """

    dtype: np.dtype
    firsts: np.ndarray
    lasts: np.ndarray
    sizes: np.ndarray
    totals: np.ndarray
    widths: np.ndarray
    offsets: np.ndarray
    data: bytes

    def __post_init__(self) -> None:
        count = len(self.sizes)
        if not (len(self.firsts) == len(self.lasts) == len(self.totals) == len(self.widths) == count > 0):
            raise ValueError("inconsistent block index")
        if len(self.offsets) != count + 1 or int(self.offsets[0]) != 0 or int(self.offsets[-1]) != len(self.data):
            raise ValueError("block offsets do not cover the data")
        if (np.diff(self.offsets) <= 0).any() or (self.sizes <= 0).any() or (self.sizes > BLOCK).any():
            raise ValueError("corrupt block index")
        if (self.totals < self.sizes).any() or not np.isin(self.widths, (1, 2, 4, 8)).all():
            raise ValueError("corrupt block index")
        for array in (self.firsts, self.lasts, self.sizes, self.totals, self.widths, self.offsets):
            array.setflags(write=False)

    @classmethod
    def pack(
        cls,
        chunks: Iterable[tuple[np.ndarray, np.ndarray]],
        dtype: np.dtype,
        *,
        level: int | None = None,
        max_bytes: int | None = None,
    ) -> Blocks:
        """Blocks of `chunks`: consecutive (values, counts) pieces of at most BLOCK pairs, in order.

        Raises `HistogramTooLarge` as soon as the compressed blocks pass `max_bytes`.
        """
        firsts, lasts, sizes, totals, widths, pieces = [], [], [], [], [], []
        size = 0
        for values, counts in chunks:
            width = count_width(int(counts.max()))
            firsts.append(values[0])
            lasts.append(values[-1])
            sizes.append(len(values))
            totals.append(int(counts.sum()))
            widths.append(width)
            pieces.append(zlib.compress(encode_block(values, counts, width), LEVEL if level is None else level))
            size += len(pieces[-1])
            if max_bytes is not None and size > max_bytes:
                raise HistogramTooLarge(max_bytes)
        offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum([len(piece) for piece in pieces], out=offsets[1:])
        return cls(
            dtype,
            np.array(firsts, dtype=dtype),
            np.array(lasts, dtype=dtype),
            np.array(sizes, dtype=np.int64),
            np.array(totals, dtype=np.int64),
            np.array(widths, dtype=np.uint8),
            offsets,
            b"".join(pieces),
        )

    @property
    def nbytes(self) -> int:
        index = (self.firsts, self.lasts, self.sizes, self.totals, self.widths, self.offsets, self._ends)
        return len(self.data) + sum(array.nbytes for array in index)

    @property
    def distinct(self) -> int:
        return int(self.sizes.sum())

    @property
    def total(self) -> int:
        return int(self.totals.sum())

    @property
    def _ends(self) -> np.ndarray:
        # Samples up to the end of each block; cached on first use.
        ends = self.__dict__.get("_cumulative_totals")
        if ends is None:
            ends = np.cumsum(self.totals)
            object.__setattr__(self, "_cumulative_totals", ends)
        return ends

    def __len__(self) -> int:
        return len(self.sizes)

    def block(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Values (dtype) and counts (int64) of block `index`; ValueError if its bytes are corrupt."""
        size, width = int(self.sizes[index]), int(self.widths[index])
        raw = self.data[int(self.offsets[index]) : int(self.offsets[index + 1])]
        expected = size * (self.dtype.itemsize + width)
        inflater = zlib.decompressobj()
        try:
            body = inflater.decompress(raw, expected)
        except zlib.error as exc:
            raise ValueError(f"corrupt histogram block: {exc}") from None
        if len(body) != expected or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
            raise ValueError("corrupt histogram block: wrong length")
        values, counts = decode_block(body, size, self.dtype, width)
        if int(counts.sum()) != int(self.totals[index]) or (counts == 0).any():
            raise ValueError("corrupt histogram block: counts do not add up")
        if values[:1].tobytes() != self.firsts[index : index + 1].tobytes() or (
            values[-1:].tobytes() != self.lasts[index : index + 1].tobytes()
        ):
            raise ValueError("corrupt histogram block: values do not match the index")
        return values, counts

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for index in range(len(self)):
            yield self.block(index)

    def nth(self, *positions: int) -> list[np.generic]:
        """The samples at 0-based sorted `positions`, decoding each block needed once."""
        ends = self._ends
        found: list[np.generic] = []
        decoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for position in positions:
            index = int(np.searchsorted(ends, position, side="right"))
            if index not in decoded:
                values, counts = self.block(index)
                decoded = {index: (values, np.cumsum(counts))}  # keep one block at a time
            values, cumulative = decoded[index]
            before = int(ends[index - 1]) if index else 0
            found.append(values[int(np.searchsorted(cumulative, position - before, side="right"))])
        return found


def count_width(largest: int) -> int:
    """Bytes of the narrowest unsigned integer holding `largest`."""
    for width in (1, 2, 4):
        if largest < 1 << (8 * width):
            return width
    return 8


def encode_block(values: np.ndarray, counts: np.ndarray, width: int) -> bytes:
    """Values delta-encoded as unsigned integers of their width (exact for any dtype; runs of
    consecutive values become runs of 1, which compress to almost nothing), then counts."""
    little = values.astype(values.dtype.newbyteorder("<"), copy=False)
    bits = little.view(f"<u{little.dtype.itemsize}")
    deltas = np.diff(bits, prepend=bits.dtype.type(0))
    return deltas.tobytes() + counts.astype(f"<u{width}").tobytes()


def decode_block(body: bytes, size: int, dtype: np.dtype, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `encode_block` (`dtype` in native byte order)."""
    unsigned = np.dtype(f"<u{dtype.itemsize}")
    deltas = np.frombuffer(body, dtype=unsigned, count=size)
    bits = np.cumsum(deltas, dtype=unsigned)  # wraps modulo 2**bits, undoing the diff
    values = bits.view(dtype.newbyteorder("<")).astype(dtype)
    counts = np.frombuffer(body, dtype=f"<u{width}", count=size, offset=size * dtype.itemsize).astype(np.int64)
    return values, counts
