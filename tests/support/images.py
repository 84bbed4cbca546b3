"""Test images made in memory, and numpy's answers for them."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def random_image(mode: str, size=(37, 23), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "F":
        return Image.fromarray(rng.normal(0, 1000, (h, w)).astype(np.float32), "F")
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "1":
        return Image.fromarray(rng.integers(0, 2, (h, w), dtype=np.uint8) * 255).convert("1")
    if mode == "P":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert("P")
    bands = len(mode)
    return Image.fromarray(rng.integers(0, 256, (h, w, bands), dtype=np.uint8).squeeze(), mode)


def samples(data: bytes, channel: str | None = None) -> np.ndarray:
    """What S4 defines the statistics over, computed the plain way."""
    image = Image.open(io.BytesIO(data))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    if channel == "luma":
        return np.asarray(image.convert("L") if image.mode in ("RGB", "RGBA") else image)
    array = np.asarray(image)
    if channel is None:
        return array
    bands = [b.lower() for b in image.getbands()]
    return array[..., bands.index(channel)] if array.ndim == 3 else array


def numpy_stat(array: np.ndarray, func: str) -> float:
    if func == "min":
        return float(np.min(array))
    if func == "max":
        return float(np.max(array))
    if func == "mean":
        return float(np.mean(array, dtype=np.float64))
    if func == "median":
        return float(np.median(array))
    return float(np.percentile(array, float(func[1:])))


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, kind, body, CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but carries one tiny IDAT: a bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
