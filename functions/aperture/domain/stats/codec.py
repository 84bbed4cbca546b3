"""Histograms to bytes and back: the compact, versioned form stored in Firestore.

Version 2 (written): ``b"APH\\x02"``, a little-endian uint32 length and a JSON
directory, then per stored histogram its block index and its blocks (see
`blocks.Blocks`): each block of up to `BLOCK` pairs compressed on its own, so
reading never inflates more than one block at a time. A histogram of one block
(every 8- and 16-bit band) is decoded when read; larger ones stay packed, and
their exact mean is stored (hex float) so that it is never recomputed.
Reading costs the stored bytes plus the index plus one block, however well
the values compressed.

Version 1 (read only): one zlib stream of the whole directory, values and
counts. It is read incrementally (two inflaters, one at the values and one at
the counts) and repacked into blocks, so a ~1000:1 stream is never inflated
into memory either.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator

import numpy as np

from aperture.domain.stats.blocks import BLOCK, Blocks, HistogramTooLarge
from aperture.domain.stats.histogram import Histogram

_MAGIC = b"APH"
_VERSION = 2
_HEADER = struct.Struct("<I")
_INPUT_CHUNK = 64 << 10
_SKIP_CHUNK = 1 << 20
_SMALL_LEVEL = 6  # one-block histograms: the better ratio costs nothing


def serialize(hists: dict[str, Histogram], *, max_bytes: int | None = None) -> bytes:
    """Compact, versioned bytes of `hists`; `deserialize` gives them back exactly.

    A histogram equal to an earlier one (``all`` and ``l`` of an L image) is
    stored as an alias. Packed histograms are written as they are, open ones
    are compressed block by block; with `max_bytes`, compression stops as soon
    as the output passes it and `HistogramTooLarge` is raised, so the caller
    does not pay seconds of zlib for something it will not store.
    """
    directory: list[dict[str, object]] = []
    parts: list[bytes] = []
    size = len(_MAGIC) + 1 + _HEADER.size
    stored: list[tuple[str, Histogram]] = []
    for name, hist in hists.items():
        alias = next((earlier for earlier, h in stored if h is hist or h == hist), None)
        if alias is not None:
            directory.append({"name": name, "alias": alias})
            continue
        stored.append((name, hist))
        blocks = hist.blocks
        if blocks is None:
            try:
                blocks = Blocks.pack(
                    hist.chunks(),
                    hist.dtype,
                    level=_SMALL_LEVEL if hist.distinct <= BLOCK else None,
                    max_bytes=None if max_bytes is None else max_bytes - size,
                )
            except HistogramTooLarge:
                raise HistogramTooLarge(max_bytes or 0) from None
        little = blocks.dtype.newbyteorder("<")
        index = b"".join(
            (
                blocks.firsts.astype(little).tobytes(),
                blocks.lasts.astype(little).tobytes(),
                blocks.sizes.astype("<u4").tobytes(),
                blocks.totals.astype("<u8").tobytes(),
                blocks.widths.astype("u1").tobytes(),
                np.diff(blocks.offsets).astype("<u4").tobytes(),
            )
        )
        parts += [index, blocks.data]
        size += len(index) + len(blocks.data)
        directory.append(
            {
                "name": name,
                "dtype": little.str,
                "n": hist.distinct,
                "total": hist.total,
                "blocks": len(blocks),
                "mean": float.hex(hist.mean()),
            }
        )
        if max_bytes is not None and size > max_bytes:
            raise HistogramTooLarge(max_bytes)
    header = json.dumps({"histograms": directory}, separators=(",", ":")).encode()
    if max_bytes is not None and size + len(header) > max_bytes:
        raise HistogramTooLarge(max_bytes)
    return b"".join([_MAGIC, bytes([_VERSION]), _HEADER.pack(len(header)), header, *parts])


def deserialize(data: bytes) -> dict[str, Histogram]:
    """Inverse of `serialize` (versions 1 and 2); raises ValueError for bytes it did not write."""
    data = bytes(data)
    if len(data) < len(_MAGIC) + 1 or not data.startswith(_MAGIC):
        raise ValueError("not a serialized histogram")
    version = data[len(_MAGIC)]
    if version not in (1, 2):
        raise ValueError(f"unsupported histogram format version {version}")
    try:
        return _read_v2(data) if version == 2 else _read_v1(data)
    except (zlib.error, struct.error, KeyError, TypeError, IndexError, OverflowError, json.JSONDecodeError) as exc:
        raise ValueError(f"corrupt serialized histogram: {exc!r}") from None


def serialized_size(hists: dict[str, Histogram]) -> int:
    """Bytes `serialize(hists)` takes (prefer ``serialize(..., max_bytes=)`` to store-or-skip)."""
    return len(serialize(hists))


def _sample_dtype(text: str) -> np.dtype:
    dtype = np.dtype(text)
    if dtype.kind not in "uif" or dtype.itemsize not in (1, 2, 4, 8) or dtype.byteorder == ">":
        raise ValueError(f"corrupt serialized histogram: dtype {text!r}")
    return dtype


def _read_v2(data: bytes) -> dict[str, Histogram]:
    offset = len(_MAGIC) + 1
    (length,) = _HEADER.unpack_from(data, offset)
    offset += _HEADER.size
    directory = json.loads(data[offset : offset + length])["histograms"]
    offset += length
    hists: dict[str, Histogram] = {}
    for entry in directory:
        if "alias" in entry:
            hists[entry["name"]] = hists[entry["alias"]]
            continue
        dtype, count = _sample_dtype(entry["dtype"]), int(entry["blocks"])
        if not 0 < count <= len(data):
            raise ValueError("corrupt serialized histogram: block count")
        index = []
        for field in (dtype, dtype, "<u4", "<u8", "u1", "<u4"):
            field = np.dtype(field)
            if offset + count * field.itemsize > len(data):
                raise ValueError("corrupt serialized histogram: truncated index")
            index.append(np.frombuffer(data, field, count, offset).astype(field.newbyteorder("=")))
            offset += count * field.itemsize
        firsts, lasts, sizes, totals, widths, lengths = index
        offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        end = offset + int(offsets[-1])
        if end > len(data):
            raise ValueError("corrupt serialized histogram: truncated blocks")
        blocks = Blocks(
            firsts.dtype,
            firsts,
            lasts,
            sizes.astype(np.int64),
            totals.astype(np.int64),
            widths,
            offsets,
            data[offset:end],
        )
        offset = end
        if count == 1:
            hist = Histogram.from_pairs(*blocks.block(0))
        else:
            hist = Histogram(firsts.dtype, blocks.total, blocks=blocks, mean=float.fromhex(entry["mean"]))
        if hist.total != entry["total"] or hist.distinct != entry["n"]:
            raise ValueError("corrupt serialized histogram: counts do not add up")
        hists[entry["name"]] = hist
    if offset != len(data):
        raise ValueError("corrupt serialized histogram: trailing data")
    return hists


class _Inflater:
    """Reads a zlib stream in exact pieces, inflating no more than asked."""

    def __init__(self, data: bytes, start: int):
        self._data = memoryview(data)
        self._position = start
        self._inflater = zlib.decompressobj()

    def read(self, size: int) -> bytes:
        pieces: list[bytes] = []
        needed = size
        while needed > 0:
            source: bytes | memoryview = self._inflater.unconsumed_tail
            if not source:
                if self._inflater.eof or self._position >= len(self._data):
                    raise ValueError("corrupt serialized histogram: truncated data")
                source = self._data[self._position : self._position + _INPUT_CHUNK]
                self._position += len(source)
            piece = self._inflater.decompress(source, needed)
            pieces.append(piece)
            needed -= len(piece)
        return b"".join(pieces)

    def skip(self, size: int) -> None:
        while size > 0:
            step = min(size, _SKIP_CHUNK)
            self.read(step)
            size -= step

    def finish(self) -> None:
        """Raise unless the stream ends here, exactly where the data does."""
        rest = self._inflater.unconsumed_tail + bytes(self._data[self._position :])
        if self._inflater.decompress(rest, 1) or not self._inflater.eof or self._inflater.unused_data:
            raise ValueError("corrupt serialized histogram: trailing data")


def _read_v1(data: bytes) -> dict[str, Histogram]:
    start = len(_MAGIC) + 1
    stream = _Inflater(data, start)
    (length,) = _HEADER.unpack(stream.read(_HEADER.size))
    directory = json.loads(stream.read(length))["histograms"]
    offset = _HEADER.size + length  # in the inflated body
    hists: dict[str, Histogram] = {}
    for entry in directory:
        if "alias" in entry:
            hists[entry["name"]] = hists[entry["alias"]]
            continue
        dtype, n, width = _sample_dtype(entry["dtype"]), int(entry["n"]), int(entry["count_bytes"])
        if n <= 0 or width not in (1, 2, 4, 8):
            raise ValueError("corrupt serialized histogram: directory")
        counts = _Inflater(data, start)
        counts.skip(offset + n * dtype.itemsize)
        hist = Histogram.from_chunks(_v1_chunks(stream, counts, n, dtype, width), dtype.newbyteorder("="))
        stream.skip(n * width)
        offset += n * (dtype.itemsize + width)
        if hist.total != entry["total"]:
            raise ValueError("corrupt serialized histogram: counts do not add up")
        hists[entry["name"]] = hist
    stream.finish()
    return hists


def _v1_chunks(
    values: _Inflater, counts: _Inflater, n: int, dtype: np.dtype, width: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Version 1's values (delta-encoded over the whole array) and counts, `BLOCK` pairs at a time."""
    unsigned = np.dtype(f"<u{dtype.itemsize}")
    carry = unsigned.type(0)
    for start in range(0, n, BLOCK):
        size = min(BLOCK, n - start)
        bits = np.cumsum(np.frombuffer(values.read(size * dtype.itemsize), unsigned), dtype=unsigned)
        bits += carry  # modulo 2**bits, continuing the previous block's sum
        carry = bits[-1]
        block_counts = np.frombuffer(counts.read(size * width), f"<u{width}").astype(np.int64)
        yield bits.view(dtype).astype(dtype.newbyteorder("=")), block_counts
