"""Decoding untrusted image bytes into the pixels that statistics are computed over.

"Pixels" (product spec S4) are every sample of every channel as
``numpy.asarray(image)`` gives them after `normalize`: palette images become
RGB or RGBA and 1-bit images become L, so that a statistic is always over the
colours a viewer sees rather than over palette indices.

This module is pure domain code: Pillow, numpy and our jpegrows extension; no
web framework, no cloud SDK.
"""

from __future__ import annotations

import io
import os
import re
import struct
import sys
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageMode

from aperture.domain.errors import ApiError

try:  # optional C extension (functions/native/jpegrows): a JPEG's rows on two cores
    import jpegrows
except ImportError:  # not built here (no compiler or libjpeg headers): Pillow decodes alone
    jpegrows = None

__all__ = [
    "ImageError",
    "NotAnImage",
    "TooManyPixels",
    "UnsupportedChannel",
    "open_image",
    "RowBand",
    "normalize",
    "band_names",
    "normalized_mode",
]


class ImageError(ValueError):
    """Base of every reason an upload cannot be turned into pixels."""

    def refusal(self, label: str | None = None) -> ApiError:
        """What a caller is told: 422, with the reason (and the limit, for too many pixels)."""
        return ApiError(422, str(self))


class NotAnImage(ImageError):
    """The bytes are not a decodable image; the message says why."""

    def refusal(self, label: str | None = None) -> ApiError:
        return ApiError(422, f"{label!r} is not a readable image: {self}" if label else str(self))


class TooManyPixels(ImageError):
    """width*height is above the configured limit (decompression-bomb guard)."""

    def __init__(self, pixels: int | None, limit: int):
        self.pixels = pixels
        self.limit = limit
        if pixels is None:
            message = f"image has too many pixels; the limit is {limit}"
        else:
            message = f"image has {pixels} pixels; the limit is {limit}"
        super().__init__(message)


# Modes whose pixels can take millions of distinct values (32-bit integer and
# float): their exact statistics cost memory per distinct value, not per level.
WIDE_MODES = ("I", "F")


class TooWideForStatistics(TooManyPixels):
    """A 32-bit integer or float image with more pixels than exact statistics are computed for."""

    def __init__(self, pixels: int, limit: int, mode: str):
        super().__init__(pixels, limit)
        self.args = (
            f"exact statistics of {mode} (32-bit integer or float) images are computed up to {limit} pixels "
            f"(each distinct value costs memory); this image has {pixels}",
        )


class UnsupportedChannel(ImageError):
    """The requested channel is not one of the image's bands (or luma)."""

    def __init__(self, channel: str, available: tuple[str, ...] | list[str]):
        self.channel = channel
        self.available = tuple(available)
        listed = ", ".join(self.available) if self.available else "none"
        super().__init__(f"channel {channel!r} is not available; available channels: {listed}")


# Exceptions Pillow (and the codecs under it) raise on bytes it cannot decode.
# MemoryError is deliberately absent: that is our problem, not the upload's.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes UnidentifiedImageError and "image file is truncated"
    SyntaxError,  # raised by several plugins for malformed headers
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
    NotImplementedError,
)

_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


@dataclass(frozen=True)
class RowBand:
    """A run of finished rows of an image still being decoded: rows `top` to
    `top + height - 1`. Calling it gives them as a read-only image sharing
    the decoded memory (the decoder never writes those rows again, so it is
    safe from any thread while decoding goes on)."""

    top: int
    height: int
    _pixels: memoryview
    _width: int
    # Pillow's 256-per-band histogram of these rows (RGB, padding dropped) when
    # the decoder counted them as it wrote them; None otherwise.
    counts: np.ndarray | None = None

    def __call__(self) -> Image.Image:
        # Pillow's stubs name bytes-like types only; any buffer works, and a view avoids a copy.
        return Image.frombuffer("RGBX", (self._width, self.height), self._pixels, "raw", "RGBX", 0, 1)  # type: ignore[arg-type]


def open_image(
    data: bytes | bytearray | memoryview | BinaryIO,
    *,
    max_pixels: int,
    on_rows: Callable[[RowBand], None] | None = None,
    max_wide_pixels: int | None = None,
    on_header: Callable[[int, int], None] | None = None,
) -> Image.Image:
    """Decode the first frame of `data`, refusing images over `max_pixels` before decoding.

    `on_header(width, height)` is called once the header has passed the size
    checks, before any pixel is decoded.

    With `on_rows`, an 8-bit RGB JPEG reports its rows while libjpeg decodes
    them: `on_rows` receives runs of finished rows, each once, so that work
    on the pixels can overlap the decode (the stats function histograms
    bands meanwhile). Such an image comes back in mode RGBX (RGB plus the
    padding byte Pillow stores anyway). Runs may arrive out of order and from
    two threads (a sequential JPEG is decoded on two cores, see
    `_decode_in_parallel`), and if that decode fails part-way the image is
    decoded again without reporting the rest: callers count the rows they
    were given and use the runs only when they cover the image.
    Any other image never calls `on_rows` and comes back as usual.

    Raises `NotAnImage` when Pillow cannot identify or decode the bytes and
    `TooManyPixels` when width*height > max_pixels (`TooWideForStatistics`
    when a 32-bit integer or float image is over `max_wide_pixels`). The size check uses the
    header only (`Image.open` is lazy), so a tiny file claiming huge
    dimensions never allocates its pixel buffer.

    Pillow's own global guard (`Image.MAX_IMAGE_PIXELS`) is left in place as
    a second line of defence for plugin-internal sizes (TIFF tiles, GIF
    frames); when it fires (above 2 * MAX_IMAGE_PIXELS) the error is reported
    as `TooManyPixels` too, with the effective limit.
    """
    stream: BinaryIO = io.BytesIO(bytes(data)) if isinstance(data, (bytes, bytearray, memoryview)) else data
    watcher = _RowWatcher(stream, on_rows) if on_rows is not None else None
    try:
        image = Image.open(watcher or stream)
    except Image.DecompressionBombError as exc:
        raise _bomb_to_too_many(exc, max_pixels) from None
    except Image.UnidentifiedImageError:
        raise NotAnImage("not a recognised image format") from None
    except DECODE_ERRORS as exc:
        raise NotAnImage(f"cannot read image header: {error_reason(exc)}") from None

    _check_size(image.size, max_pixels)
    if max_wide_pixels is not None and image.mode in WIDE_MODES and image.width * image.height > max_wide_pixels:
        raise TooWideForStatistics(image.width * image.height, max_wide_pixels, image.mode)
    if on_header is not None:
        on_header(image.width, image.height)
    if on_rows is not None and decodes_in_parallel(image):
        decoded = _decode_in_parallel(image, stream, on_rows)
        if decoded is not None:
            return decoded
        stream.seek(0)  # refused by the row decoder (corrupt data, ...): Pillow's answer, whatever it is
        image, watcher = Image.open(stream), None
    if watcher is not None:
        watcher.watch(image)
    try:
        image.load()
        if watcher is not None:
            watcher.finish()
    except Image.DecompressionBombError as exc:
        raise _bomb_to_too_many(exc, max_pixels) from None
    except DECODE_ERRORS as exc:
        raise NotAnImage(f"cannot decode image data: {error_reason(exc)}") from None
    # Some formats (ICO, ICNS) pick their size while loading: check again.
    _check_size(image.size, max_pixels)
    return image


def decodes_in_parallel(image: Image.Image) -> bool:
    """Whether `open_image(on_rows=...)` decodes this (header-only) image on two
    cores: an 8-bit YCbCr baseline JPEG large enough to be worth it, when the
    jpegrows extension is built. Progressive JPEGs are not: both halves
    would have to entropy-decode every scan."""
    return (
        jpegrows is not None
        and _PARALLEL is not None
        and _is_rgb_jpeg(image, ("JPEG",))
        and image.height >= PARALLEL_MIN_ROWS
        and not image.info.get("progressive")
    )


def _is_rgb_jpeg(image: Image.Image, formats: tuple[str, ...]) -> bool:
    """A header-only image that libjpeg will decode into 8-bit RGB in one tile."""
    tiles: list = getattr(image, "tile", [])  # ImageFile's: what a header-only open will decode
    tile = tiles[0] if len(tiles) == 1 else None
    return (
        image.format in formats
        and image.mode == "RGB"
        and tile is not None
        and tile.codec_name == "jpeg"
        and tile.args[0] == "RGB"
    )


# The top part gets more rows than the bottom one: the bottom decoder first
# entropy-decodes (skips) the top rows, which costs about half their full
# decode; these shares finish both parts at about the same time.
TOP_SHARE = 0.62
PARALLEL_MIN_ROWS = 512
ROWS_PER_RUN = 128
_PARALLEL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jpeg-top") if (os.cpu_count() or 1) > 1 else None


def _decode_in_parallel(
    header: Image.Image, stream: BinaryIO, on_rows: Callable[[RowBand], None]
) -> Image.Image | None:
    """Decode `header`'s JPEG as RGBX with two jpegrows decoders, the top rows on
    a pool thread and the rest on this one, reporting runs as they finish.
    None if libjpeg refused the data (an error or a warning, such as
    corrupt or truncated data) in either part."""
    width, height = header.size
    stream.seek(0)
    data = stream.read()  # every byte: the bottom decoder entropy-decodes from the start
    pixels = _rgbx_buffers.take(width, height)
    split = max(16, int(height * TOP_SHARE) // 16 * 16)  # a multiple of the largest MCU height
    assert _PARALLEL is not None, "decodes_in_parallel() is false on one core"
    top = _PARALLEL.submit(_decode_rows, data, pixels, width, height, 0, split, on_rows)
    refused = False
    try:
        _decode_rows(data, pixels, width, height, split, height, on_rows)
    except ValueError:
        refused = True
    try:
        top.result()  # waited for even after a refusal: the top part writes into `pixels`
    except ValueError:
        refused = True
    if refused:
        return None
    image = Image.frombuffer("RGBX", (width, height), pixels, "raw", "RGBX", 0, 1)  # type: ignore[arg-type]
    image.format = header.format
    image.info = dict(header.info)
    return image


def _decode_rows(
    data: bytes, pixels: memoryview, width: int, height: int, first: int, stop: int, on_rows: Callable[[RowBand], None]
) -> None:
    decoder = jpegrows.RowDecoder(data, width, height, first, stop)
    stride = width * 4
    row = first
    while row < stop:
        counts = np.zeros(768, np.int64)
        done = decoder.read(pixels[row * stride : stop * stride], ROWS_PER_RUN, counts)
        on_rows(RowBand(row, done, pixels[row * stride : (row + done) * stride], width, counts))
        row += done


class _RowWatcher:
    """The stream Pillow decodes from, reporting finished rows between its reads.

    Pillow feeds libjpeg 64 KB at a time, reading the stream before each
    chunk, so `read` runs while the decoder is idle. The decoder writes RGBX
    rows, in order, into a zero-filled buffer of ours (`Image.core.map_buffer`)
    with the padding byte 255, so the rows whose last pixel has a non-zero
    padding byte are exactly the finished ones, and a run of them is handed
    out as a view of that buffer: nothing is copied. Switching the decoder to
    RGBX and handing it our buffer uses Pillow internals (`_mode`, `im`
    before `load`); tests/unit/domain/imaging/test_pixels.py pins the behaviour against a
    plain decode.
    """

    MIN_ROWS = 64  # fewer rows per band cost more in hand-offs than they overlap

    def __init__(self, stream: BinaryIO, on_rows: Callable[[RowBand], None]):
        self._stream = stream
        self._on_rows = on_rows
        self._pixels: memoryview | None = None
        self._size = (0, 0)
        self._done = 0

    def watch(self, image: Image.Image) -> None:
        if _is_rgb_jpeg(image, ("JPEG", "MPO")):
            tile = image.tile[0]  # type: ignore[attr-defined]  # an ImageFile, as _is_rgb_jpeg checked
            width, height = self._size = image.size
            self._pixels = _rgbx_buffers.take(width, height)
            image._mode = "RGBX"
            image.tile = [tile._replace(args=("RGBX", *tile.args[1:]))]  # type: ignore[attr-defined]
            # `load` decodes into an image memory that is already there.
            image.im = Image.core.map_buffer(self._pixels, image.size, "raw", 0, ("RGBX", 0, 1))

    def finish(self) -> None:
        if self._pixels is not None:
            self._report(self._size[1])

    def read(self, size: int = -1) -> bytes:
        if self._pixels is not None:
            self._report(self._finished_rows())
        return self._stream.read(size)

    def _finished_rows(self) -> int:
        pixels, stride = self._pixels, self._size[0] * 4
        assert pixels is not None
        low, high = self._done, self._size[1]
        while low < high:  # rows finish in order: bisect for the first unfinished one
            middle = (low + high) // 2
            if pixels[(middle + 1) * stride - 1]:  # the padding byte of the row's last pixel
                low = middle + 1
            else:
                high = middle
        return low

    def _report(self, rows: int) -> None:
        width, height = self._size
        if rows - self._done < (1 if rows == height else self.MIN_ROWS) or self._pixels is None:
            return
        band = RowBand(self._done, rows - self._done, self._pixels[self._done * width * 4 : rows * width * 4], width)
        self._done = rows
        self._on_rows(band)

    def __getattr__(self, name: str):  # seek, tell, ...: the stream's own
        return getattr(self._stream, name)


class _RgbxBuffers:
    """Reusable memory for the RGBX images `_RowWatcher` decodes into.

    Fresh memory costs a page fault per 4 KB the first time it is written:
    for a 12 MP image about 12,000 faults and 25-30 ms, half as long as the
    decode. A buffer whose image has died is handed out again instead; only
    the padding byte of each row's last pixel must start at zero (that is how
    finished rows are found), so reuse costs one byte per row.
    """

    def __init__(self, slots: int = 2, max_bytes: int = 128 << 20):
        self._slots = slots
        self._max_bytes = max_bytes  # larger images get memory of their own, not kept
        self._buffers: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self, width: int, height: int) -> memoryview:
        size, stride = width * height * 4, width * 4
        with self._lock:
            unused = [i for i in range(len(self._buffers)) if self._unused(i)]
            for i in unused:
                if len(self._buffers[i]) >= size:
                    view = memoryview(self._buffers[i])[:size]
                    view[stride - 1 :: stride] = bytes(height)
                    return view
            buffer = bytearray(size)  # zero-filled
            if size <= self._max_bytes:
                if len(self._buffers) < self._slots:
                    self._buffers.append(buffer)
                elif unused:  # one nobody uses (too small) makes room
                    self._buffers[unused[0]] = buffer
            return memoryview(buffer)

    def _unused(self, index: int) -> bool:
        # Every image core or view over a buffer holds a reference to it, so a
        # buffer referenced only by this list (and getrefcount's argument) is
        # free. Exact in CPython; tests/unit/domain/imaging/test_pixels.py pins it.
        return sys.getrefcount(self._buffers[index]) == 2


_rgbx_buffers = _RgbxBuffers()


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    pixels = width * height
    if pixels <= 0:
        raise NotAnImage(f"image has no pixels ({width}x{height})")
    if pixels > max_pixels:
        raise TooManyPixels(pixels, max_pixels)


def _bomb_to_too_many(exc: Exception, max_pixels: int) -> TooManyPixels:
    match = _BOMB_PIXELS.search(str(exc))
    pixels = int(match.group(1)) if match else None
    limit = max_pixels
    if Image.MAX_IMAGE_PIXELS is not None:
        limit = min(limit, 2 * Image.MAX_IMAGE_PIXELS)
    return TooManyPixels(pixels, limit)


def error_reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def normalized_mode(image: Image.Image) -> str:
    """The mode `normalize` would give `image`, without converting anything."""
    if image.mode == "P":
        return "RGBA" if "transparency" in image.info else "RGB"
    if image.mode == "PA":
        return "RGBA"
    if image.mode == "1":
        return "L"
    if image.mode == "RGBX":  # RGB with Pillow's padding byte showing (open_image's on_rows)
        return "RGB"
    return image.mode


def normalize(image: Image.Image) -> Image.Image:
    """Make `image` hold the samples that statistics are defined over.

    P becomes RGBA when the palette has transparency information
    (``"transparency" in image.info``) and RGB otherwise; PA becomes RGBA;
    1 becomes L (0 and 255). RGBX is RGB as Pillow stores it, padding
    included: it is returned as is and counted as RGB. Every other mode (L,
    LA, RGB, RGBA, CMYK, YCbCr, I;16*, I, F, ...) is returned unchanged, as the
    same object.
    """
    mode = normalized_mode(image)
    if mode == image.mode or image.mode == "RGBX":
        return image
    return image.convert(mode)


def band_names(image: Image.Image) -> tuple[str, ...]:
    """Lower-case band names of the normalized image, as ``?channel=`` spells them.

    Single-band images (L, I;16*, I, F) have the one band ``'l'``; other modes
    use Pillow's band names lower-cased: RGB -> ('r', 'g', 'b'),
    LA -> ('l', 'a'), CMYK -> ('c', 'm', 'y', 'k'), YCbCr -> ('y', 'cb', 'cr').
    """
    bands = ImageMode.getmode(normalized_mode(image)).bands
    if len(bands) == 1:
        return ("l",)
    return tuple(name.lower() for name in bands)
