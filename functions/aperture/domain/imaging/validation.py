"""Is an uploaded file an image we accept? Decided by content alone (spec S6).

Name and Content-Type are never trusted. A file passes when Pillow identifies
it as an allowed format, its dimensions, frame count and metadata are within
the limits (checked from headers before anything large is decoded), its
structure has nothing after the end of the image (polyglots), and every frame
decodes without error (truncated or corrupt data).

One exception to decoding everything, for speed: a sequential single-scan JPEG
(what cameras and most encoders write) whose scan is proven whole by its
structure. libjpeg treats damage inside entropy-coded data as a warning, not
an error, so decoding such a scan finds nothing the structure walk does not;
decoding a prefix still lets libjpeg check every table and header.
`tests/unit/domain/imaging/test_validation.py` checks that this path refuses at least
everything a full decode refuses.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from aperture.domain.imaging.pixels import DECODE_ERRORS, error_reason
from aperture.domain.transforms.formats import FORMATS as OUTPUT_FORMATS

# Pillow format -> (extension, MIME type): uploads accept the formats we write
# (one table, domain.transforms.formats), plus MPO, Pillow's name for many camera JPEGs.
FORMATS = {name: (fmt.extension, fmt.mime_type) for name, fmt in OUTPUT_FORMATS.items()}
FORMATS["MPO"] = FORMATS["JPEG"]


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
        scan = _check_structure(image.format, data, limits)
        frames = _decode_frames(image, width * height, limits, data, scan)
    fmt = "JPEG" if image.format == "MPO" else image.format
    extension, mime = FORMATS[image.format]
    return ValidImage(fmt, extension, mime, width, height, frames, image.mode)


def _decode_frames(
    image: Image.Image, frame_pixels: int, limits: Limits, data: bytes, whole_scan: _WholeScan | None
) -> int:
    """Decode every frame (bounded by the limits); returns the frame count.

    `whole_scan` is the single sequential scan `_check_jpeg` proved complete:
    the first frame is then decoded from the headers and a prefix of the scan only.
    """
    frames = 0
    try:
        while True:
            frames += 1
            if frames > limits.max_frames:
                raise Rejected(422, f"image has more than {limits.max_frames} frames; the limit is {limits.max_frames}")
            if frames * frame_pixels > limits.max_animation_pixels:
                raise Rejected(422, f"animation has more than {limits.max_animation_pixels} pixels over all frames")
            # The prefix stands in for a whole first scan; later MPO frames decode in full.
            frame = _scan_prefix(data, whole_scan) if whole_scan is not None and frames == 1 else image
            if frame.format == "JPEG" and frames == 1:
                # 1/8-scale decoding still reads every entropy-coded byte, so it
                # finds truncation and corruption at a fraction of the cost.
                frame.draft(frame.mode, (max(1, frame.width // 8), max(1, frame.height // 8)))
            frame.load()
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


def _scan_prefix(data: bytes, scan: _WholeScan) -> Image.Image:
    """The image made of the headers, the first bytes of the scan and an end marker,
    its height cut to one row of MCUs.

    libjpeg reads and checks every table and header and decodes the first
    MCUs; the cut height spares it producing (and, at the early end marker,
    filling) every other row, which found nothing more.
    """
    prefix = bytearray(data[: scan.start + SCAN_PREFIX] + b"\xff\xd9")
    height = data[scan.frame_header + 5] << 8 | data[scan.frame_header + 6]
    prefix[scan.frame_header + 5 : scan.frame_header + 7] = min(height, scan.mcu_height).to_bytes(2, "big")
    return Image.open(io.BytesIO(prefix))


def _check_structure(fmt: str, data: bytes, limits: Limits) -> _WholeScan | None:
    """Refuse bad structure; for a JPEG with one whole sequential scan, where its data begins."""
    if fmt in ("JPEG", "MPO"):
        return _check_jpeg(data, limits, allow_trailing_images=fmt == "MPO")
    if fmt == "PNG":
        _check_png(data, limits)
    return None


def _only_padding(tail: bytes) -> bool:
    return tail.strip(b"\x00\xff\r\n") == b""


# Sequential Huffman-coded frames (baseline, extended): one pass, no later tables.
_SEQUENTIAL_FRAMES = (0xC0, 0xC1)
_RESTARTS_AND_FILL = frozenset(range(0xD0, 0xD8)) | {0xFF}
SCAN_PREFIX = 4096  # bytes of entropy-coded data decoded on the fast path


@dataclass(frozen=True)
class _WholeScan:
    """A JPEG's one sequential scan, proven to run to the end marker."""

    start: int  # where the entropy-coded data begins
    frame_header: int  # where the SOF marker is
    mcu_height: int  # pixel rows per row of MCUs


def _check_jpeg(data: bytes, limits: Limits, allow_trailing_images: bool) -> _WholeScan | None:
    """Walk the markers up to the scan: metadata size; then find the end (EOI).

    Returns the scan when the image is one sequential scan that runs
    straight to its end marker, else None.
    """
    pos, metadata, frame, frame_header, scan = 2, 0, None, None, None
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
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            frame, frame_header = marker, pos
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            scan = pos + 2 + length
            break
        pos += 2 + length
    end = data.rfind(b"\xff\xd9")
    if end < 0:
        return None  # no end marker: the decoder reports the truncation
    tail = data[end + 2 :]
    if tail and not _only_padding(tail) and not (allow_trailing_images and tail.startswith(b"\xff\xd8")):
        raise Rejected(422, f"{len(tail)} bytes after the end of the JPEG image (polyglot or appended data)")
    if frame not in _SEQUENTIAL_FRAMES or frame_header is None or scan is None or scan > end:
        return None
    if not _all_stuffed(data, scan, end) and _first_marker_after(data, scan) != end:
        return None  # more scans, tables between them, MPO frames, or damage: decode everything
    mcu_height = _mcu_height(data, frame_header)
    return None if mcu_height is None else _WholeScan(scan, frame_header, mcu_height)


def _all_stuffed(data: bytes, start: int, end: int) -> bool:
    """Is every 0xFF in data[start:end] followed by 0x00? (numpy: a sixth of
    the time of comparing `bytes.count` of 0xFF and 0xFF00.)"""
    window = np.frombuffer(data, np.uint8, count=end + 1 - start, offset=start)  # data[end] is the EOI's 0xFF
    return not window[np.flatnonzero(window[:-1] == 0xFF) + 1].any()


def _mcu_height(data: bytes, frame_header: int) -> int | None:
    """8 times the largest vertical sampling factor in the frame header; None if it is cut short."""
    components_at = frame_header + 10
    if components_at > len(data):
        return None
    count = data[frame_header + 9]
    sampling = data[components_at + 1 : components_at + 3 * count : 3]
    if len(sampling) != count or count == 0:
        return None
    return 8 * max(max(factor & 0x0F for factor in sampling), 1)


def _first_marker_after(data: bytes, start: int) -> int:
    """Where the first marker at or after `start` begins, skipping stuffed bytes
    (0xFF00), restart markers and fill bytes; -1 if there is none.

    (The caller first compares counts of 0xFF and 0xFF00, in C: when every
    0xFF in the scan is stuffed, the scan runs to the end marker without this loop.)"""
    pos = data.find(b"\xff", start)
    while 0 <= pos < len(data) - 1:
        following = data[pos + 1]
        if following and following not in _RESTARTS_AND_FILL:
            return pos
        pos = data.find(b"\xff", pos + 1)
    return -1


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
