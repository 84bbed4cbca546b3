"""Is an uploaded file an image we accept? Decided by content alone (spec S6).

Name and Content-Type are never trusted. A file passes when Pillow identifies
it as an allowed format, its dimensions, frame count and metadata are within
the limits (checked from headers before anything large is decoded), its
structure has nothing after the end of the image (polyglots), and every frame
decodes without error (truncated or corrupt data).
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image

from aperture.pixels import DECODE_ERRORS, error_reason

# Pillow format -> (extension, MIME type). MPO is what Pillow calls many camera JPEGs.
FORMATS = {
    "JPEG": ("jpg", "image/jpeg"),
    "MPO": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "GIF": ("gif", "image/gif"),
    "WEBP": ("webp", "image/webp"),
    "TIFF": ("tiff", "image/tiff"),
    "BMP": ("bmp", "image/bmp"),
}


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_pixels: int
    max_frames: int
    max_animation_pixels: int
    max_metadata_bytes: int


@dataclass(frozen=True)
class ValidImage:
    format: str  # canonical: JPEG, PNG, GIF, WEBP, TIFF, BMP
    extension: str
    mime_type: str
    width: int
    height: int
    frames: int
    mode: str


class Rejected(ValueError):
    """Why a file is refused, and the HTTP status that reason maps to."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def validate(data: bytes, limits: Limits) -> ValidImage:
    if not data:
        raise Rejected(422, "empty file")
    if len(data) > limits.max_file_bytes:
        raise Rejected(413, f"file is {len(data)} bytes; the limit is {limits.max_file_bytes}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.UnidentifiedImageError:
            raise Rejected(422, "not an image in an accepted format (JPEG, PNG, GIF, WebP, TIFF, BMP)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise Rejected(422, f"image has too many pixels; the limit is {limits.max_pixels}") from None
        except DECODE_ERRORS as exc:
            raise Rejected(422, f"unreadable image header: {error_reason(exc)}") from None
        if image.format not in FORMATS:
            raise Rejected(422, f"format {image.format} is not accepted; use JPEG, PNG, GIF, WebP, TIFF or BMP")
        width, height = image.size
        if width * height <= 0:
            raise Rejected(422, "image has no pixels")
        if width * height > limits.max_pixels:
            raise Rejected(422, f"image has {width * height} pixels; the limit is {limits.max_pixels}")
        _check_structure(image.format, data, limits)
        frames = _decode_frames(image, width * height, limits)
    fmt = "JPEG" if image.format == "MPO" else image.format
    extension, mime = FORMATS[image.format]
    return ValidImage(fmt, extension, mime, width, height, frames, image.mode)


def _decode_frames(image: Image.Image, frame_pixels: int, limits: Limits) -> int:
    """Decode every frame (bounded by the limits); returns the frame count."""
    frames = 0
    try:
        while True:
            frames += 1
            if frames > limits.max_frames:
                raise Rejected(422, f"image has more than {limits.max_frames} frames; the limit is {limits.max_frames}")
            if frames * frame_pixels > limits.max_animation_pixels:
                raise Rejected(
                    422, f"animation has more than {limits.max_animation_pixels} pixels over all frames"
                )
            if image.format == "JPEG" and frames == 1:
                # 1/8-scale decoding still reads every entropy-coded byte, so it
                # finds truncation and corruption at a fraction of the cost.
                image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
            try:
                image.seek(image.tell() + 1)
            except EOFError:
                return frames
    except Rejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Rejected(422, f"image has too many pixels; the limit is {limits.max_pixels}") from None
    except DECODE_ERRORS as exc:
        raise Rejected(422, f"truncated or corrupt image data: {error_reason(exc)}") from None


def _check_structure(fmt: str, data: bytes, limits: Limits) -> None:
    if fmt in ("JPEG", "MPO"):
        _check_jpeg(data, limits, allow_trailing_images=fmt == "MPO")
    elif fmt == "PNG":
        _check_png(data, limits)


def _only_padding(tail: bytes) -> bool:
    return tail.strip(b"\x00\xff\r\n") == b""


def _check_jpeg(data: bytes, limits: Limits, allow_trailing_images: bool) -> None:
    """Walk the markers up to the scan: metadata size; then find the end (EOI)."""
    pos, metadata = 2, 0
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise Rejected(422, "corrupt JPEG marker structure")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:  # APPn (EXIF, XMP, ICC…) and comments
            metadata += length
            if metadata > limits.max_metadata_bytes:
                raise Rejected(422, f"metadata (EXIF/XMP/comments) over {limits.max_metadata_bytes} bytes")
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        pos += 2 + length
    end = data.rfind(b"\xff\xd9")
    if end < 0:
        return  # no end marker: the decoder reports the truncation
    tail = data[end + 2 :]
    if tail and not _only_padding(tail) and not (allow_trailing_images and tail.startswith(b"\xff\xd8")):
        raise Rejected(422, f"{len(tail)} bytes after the end of the JPEG image (polyglot or appended data)")


def _check_png(data: bytes, limits: Limits) -> None:
    pos, metadata = 8, 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP"):
            metadata += length
            if metadata > limits.max_metadata_bytes:
                raise Rejected(422, f"metadata chunks over {limits.max_metadata_bytes} bytes")
        pos += 12 + length
        if kind == b"IEND":
            tail = data[pos:]
            if tail and not _only_padding(tail):
                raise Rejected(422, f"{len(tail)} bytes after the end of the PNG image (polyglot or appended data)")
            return
