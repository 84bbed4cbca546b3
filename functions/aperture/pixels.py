"""Decoding untrusted image bytes into the pixels that statistics are computed over.

"Pixels" (product spec S4) are every sample of every channel as
``numpy.asarray(image)`` gives them after `normalize`: palette images become
RGB or RGBA and 1-bit images become L, so that a statistic is always over the
colours a viewer sees rather than over palette indices.

This module is pure domain code: Pillow only, no web framework, no cloud SDK.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from typing import BinaryIO

from PIL import Image, ImageMode

__all__ = [
    "ImageError",
    "NotAnImage",
    "TooManyPixels",
    "UnsupportedChannel",
    "open_image",
    "normalize",
    "band_names",
    "normalized_mode",
]


class ImageError(ValueError):
    """Base of every reason an upload cannot be turned into pixels."""


class NotAnImage(ImageError):
    """The bytes are not a decodable image; the message says why."""


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


def open_image(data: bytes | bytearray | memoryview | BinaryIO, *, max_pixels: int) -> Image.Image:
    """Decode the first frame of `data`, refusing images over `max_pixels` before decoding.

    Raises `NotAnImage` when Pillow cannot identify or decode the bytes and
    `TooManyPixels` when width*height > max_pixels. The size check uses the
    header only (`Image.open` is lazy), so a tiny file claiming huge
    dimensions never allocates its pixel buffer.

    Pillow's own global guard (`Image.MAX_IMAGE_PIXELS`) is left in place as
    a second line of defence for plugin-internal sizes (TIFF tiles, GIF
    frames); when it fires (above 2 * MAX_IMAGE_PIXELS) the error is reported
    as `TooManyPixels` too, with the effective limit.
    """
    stream: BinaryIO = io.BytesIO(bytes(data)) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        image = Image.open(stream)
    except Image.DecompressionBombError as exc:
        raise _bomb_to_too_many(exc, max_pixels) from None
    except Image.UnidentifiedImageError:
        raise NotAnImage("not a recognised image format") from None
    except DECODE_ERRORS as exc:
        raise NotAnImage(f"cannot read image header: {error_reason(exc)}") from None

    _check_size(image.size, max_pixels)
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise _bomb_to_too_many(exc, max_pixels) from None
    except DECODE_ERRORS as exc:
        raise NotAnImage(f"cannot decode image data: {error_reason(exc)}") from None
    # Some formats (ICO, ICNS) pick their size while loading: check again.
    _check_size(image.size, max_pixels)
    return image


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
    return image.mode


def normalize(image: Image.Image) -> Image.Image:
    """Make `image` hold the samples that statistics are defined over.

    P becomes RGBA when the palette has transparency information
    (``"transparency" in image.info``) and RGB otherwise; PA becomes RGBA;
    1 becomes L (0 and 255). Every other mode (L, LA, RGB, RGBA, CMYK, YCbCr,
    I;16*, I, F, ...) is returned unchanged, as the same object.
    """
    mode = normalized_mode(image)
    if mode == image.mode:
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
