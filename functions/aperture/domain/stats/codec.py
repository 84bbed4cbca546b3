"""Histograms to bytes and back: the compact, versioned form stored in Firestore."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np

from aperture.domain.stats.histogram import Histogram

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
