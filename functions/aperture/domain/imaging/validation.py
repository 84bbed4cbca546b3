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
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from aperture.domain.imaging import structure
from aperture.domain.imaging.limits import Budget, Limits, Rejected, only_padding, refuse_trailing
from aperture.domain.imaging.metadata import PNG_SIGNATURE, header_orientation, png_chunks
from aperture.domain.imaging.pixels import DECODE_ERRORS, error_reason
from aperture.domain.transforms.formats import FORMATS as OUTPUT_FORMATS

# Pillow format -> (extension, MIME type): uploads accept the formats we write
# (one table, domain.transforms.formats), plus MPO, Pillow's name for many camera JPEGs.
FORMATS = {name: (fmt.extension, fmt.mime_type) for name, fmt in OUTPUT_FORMATS.items()}
FORMATS["MPO"] = FORMATS["JPEG"]

__all__ = ["FORMATS", "Limits", "Rejected", "ValidImage", "validate"]


@dataclass(frozen=True)
class ValidImage:
    format: str  # canonical: JPEG, PNG, GIF, WEBP, TIFF, BMP
    extension: str
    mime_type: str
    width: int
    height: int
    frames: int
    mode: str
    orientation: int = 1  # EXIF orientation, 1..8: 5-8 show the image with its sides swapped


def validate(data: bytes, limits: Limits) -> ValidImage:
    if not data:
        raise Rejected(422, "empty file")
    if len(data) > limits.max_file_bytes:
        raise Rejected(413, f"file is {len(data)} bytes; the limit is {limits.max_file_bytes}")
    if data.startswith(PNG_SIGNATURE):
        _count_png_chunks(data, limits)  # before Pillow's open, which parses every chunk before the pixels
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
        scan = _check_structure(image, data, limits)
        orientation = header_orientation(image, data)
        frames = _decode_frames(image, limits, data, scan)
    fmt = "JPEG" if image.format == "MPO" else image.format
    extension, mime = FORMATS[image.format]
    return ValidImage(fmt, extension, mime, width, height, frames, image.mode, orientation)


def _decode_frames(image: Image.Image, limits: Limits, data: bytes, whole_scan: _WholeScan | None) -> int:
    """Decode every frame (bounded by the limits); returns the frame count.

    The structure walk has already counted the frames it can see; this loop
    counts them again at the size the decoder gives each one (a GIF's canvas
    grows with a larger frame), so a format without a walk is bounded too.
    `whole_scan` is the single sequential scan `_check_jpeg` proved complete:
    the first frame is then decoded from the headers and a prefix of the scan only.
    """
    budget = Budget(limits)
    try:
        while True:
            budget.frame(*image.size)
            # The prefix stands in for a whole first scan; later MPO frames decode in full.
            frame = _scan_prefix(data, whole_scan) if whole_scan is not None and budget.frames == 1 else image
            if frame.format == "JPEG" and budget.frames == 1:
                # 1/8-scale decoding still reads every entropy-coded byte, so it
                # finds truncation and corruption at a fraction of the cost.
                frame.draft(frame.mode, (max(1, frame.width // 8), max(1, frame.height // 8)))
            frame.load()
            try:
                image.seek(image.tell() + 1)
            except EOFError:
                return budget.frames
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


def _check_structure(image: Image.Image, data: bytes, limits: Limits) -> _WholeScan | None:
    """Refuse bad structure, too many frames, pixels or metadata, and polyglots, all
    before decoding; for a JPEG with one whole sequential scan, where its data begins."""
    fmt, budget = image.format, Budget(limits)
    if fmt in ("JPEG", "MPO"):
        return _check_jpeg(data, limits, allow_trailing_images=fmt == "MPO", budget=budget)
    if fmt == "PNG":
        _check_png(data, budget, image.size)
    elif fmt == "GIF":
        structure.check_gif(data, budget)
    elif fmt == "WEBP":
        structure.check_webp(data, budget, image.size)
    elif fmt == "TIFF":
        structure.check_tiff(data, budget)
    elif fmt == "BMP":
        structure.check_bmp(data, budget)
    return None


# Sequential Huffman-coded frames (baseline, extended): one pass, no later tables.
_SEQUENTIAL_FRAMES = (0xC0, 0xC1)
_PROGRESSIVE_FRAMES = (0xC2, 0xC6, 0xCA, 0xCE)
# Markers libjpeg reads between and after scans: tables, restart interval, DNL, APPn, comments, SOS.
_BETWEEN_SCANS = frozenset({0xC4, 0xCC, 0xDA, 0xDB, 0xDC, 0xDD, 0xFE} | set(range(0xE0, 0xF0)))
SCAN_PREFIX = 4096  # bytes of entropy-coded data decoded on the fast path
MAX_JPEG_SEGMENTS = 4096  # marker segments walked per image, far above any real file


@dataclass(frozen=True)
class _WholeScan:
    """A JPEG's one sequential scan, proven to run to the end marker."""

    start: int  # where the entropy-coded data begins
    frame_header: int  # where the SOF marker is
    mcu_height: int  # pixel rows per row of MCUs


@dataclass
class _JpegImage:
    """What the walk of one JPEG image (of a file that may hold several, MPO) found."""

    end: int = -1  # where its EOI is; -1 when it has none (cut short: the decoder judges)
    frame: int | None = None  # the SOF marker
    frame_header: int | None = None
    first_scan: int | None = None  # where the first scan's entropy-coded data begins
    scans: int = 0
    whole_first_scan: bool = False  # the first scan's data runs straight to the EOI


def _check_jpeg(
    data: bytes, limits: Limits, allow_trailing_images: bool, budget: Budget | None = None
) -> _WholeScan | None:
    """Walk every marker segment and scan of the file: metadata size, scan count and
    progression, frames; then refuse what follows the image's real end (its first EOI
    reached by the walk, not the last FFD9 in the file: a second image or archive
    hidden after an EOI is found however it ends). MPO files may continue with
    further whole JPEG images, each walked the same way.

    Returns the scan when the image is one sequential scan that runs
    straight to its end marker, else None.
    """
    budget = budget or Budget(limits)
    markers = _marker_positions(data)
    first = _walk_jpeg(data, 0, markers, limits, budget)
    end = first.end
    while end >= 0:
        tail = data[end + 2 :]
        if not tail or only_padding(tail):
            break
        if not (allow_trailing_images and tail.startswith(b"\xff\xd8")):
            raise Rejected(422, f"{len(tail)} bytes after the end of the JPEG image (polyglot or appended data)")
        end = _walk_jpeg(data, end + 2, markers, limits, budget).end
    if first.frame not in _SEQUENTIAL_FRAMES or first.frame_header is None or first.first_scan is None:
        return None
    if first.scans != 1 or not first.whole_first_scan or first.end < 0:
        return None  # more scans, tables between them, or cut short: decode everything
    mcu_height = _mcu_height(data, first.frame_header)
    return None if mcu_height is None else _WholeScan(first.first_scan, first.frame_header, mcu_height)


def _marker_positions(data: bytes) -> np.ndarray:
    """Where every 0xFF that begins a marker is, as entropy-coded data sees it:
    not stuffed (0xFF00), not a restart (0xFFD0-D7), not a fill byte before
    another 0xFF. Exact inside scans; inside marker segments (which the walk
    skips by their length) it also finds bytes that only look like markers."""
    window = np.frombuffer(data, np.uint8)
    at = np.flatnonzero(window[:-1] == 0xFF)
    following = window[at + 1]
    real = (following != 0) & (following != 0xFF) & ((following < 0xD0) | (following > 0xD7))
    return at[real]


def _walk_jpeg(data: bytes, start: int, markers: np.ndarray, limits: Limits, budget: Budget) -> _JpegImage:
    found = _JpegImage()
    if data[start : start + 2] != b"\xff\xd8":
        raise Rejected(422, "corrupt JPEG marker structure (an image after the first does not start with SOI)")
    pos, segments = start + 2, 0
    components: dict[int, list[int]] = {}  # component id -> each coefficient's last successive-approximation bit
    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            if not found.scans:
                raise Rejected(422, "corrupt JPEG marker structure")
            # After a scan libjpeg skips stray bytes to the next marker (a warning): so does the walk.
            following = int(np.searchsorted(markers, pos))
            if following == len(markers):
                break
            pos = int(markers[following])
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # end of image
            found.end = pos
            return found
        if pos + 4 > len(data):
            break
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise Rejected(422, f"JPEG has more than {MAX_JPEG_SEGMENTS} marker segments")
        if found.scans and marker not in _BETWEEN_SCANS:
            # libjpeg refuses a frame header, SOI or unknown marker once scans began (a marker
            # inside a scan's data, or a second image glued on): so does the walk.
            raise Rejected(422, f"corrupt JPEG marker structure (marker 0x{marker:02x} after a scan)")
        length = struct.unpack_from(">H", data, pos + 2)[0]
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:  # APPn (EXIF, XMP, ICC profile…) and comments
            budget.add_metadata(length)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            found.frame, found.frame_header = marker, pos
            components = _frame_components(data, pos, budget)
        pos += 2 + length
        if marker != 0xDA:
            continue
        # Start of scan: count it, check its progression, then skip its entropy-coded data.
        found.scans += 1
        if found.scans > limits.max_jpeg_scans:
            raise Rejected(
                422,
                f"JPEG has more than {limits.max_jpeg_scans} scans; the limit is {limits.max_jpeg_scans} "
                "(progressive JPEGs have about 10)",
            )
        if found.frame in _PROGRESSIVE_FRAMES:
            _check_progression(data, pos - 2 - length, components)
        following = int(np.searchsorted(markers, pos))
        if following == len(markers):
            break  # no marker after the scan: cut short, the decoder judges
        if found.scans == 1:
            found.first_scan = pos
            found.whole_first_scan = data[markers[following] + 1] == 0xD9
        pos = int(markers[following])
    return found


def _frame_components(data: bytes, sof: int, budget: Budget) -> dict[int, list[int]]:
    """Count the frame into the budget; its components, none of their coefficients sent yet."""
    if sof + 10 > len(data):
        return {}
    height, width, count = struct.unpack_from(">HHB", data, sof + 5)
    if height and width:  # a zero height (set later by DNL) is left to the decoder
        budget.frame(width, height)
    ids = data[sof + 10 : sof + 10 + 3 * count : 3]
    return {component: [-1] * 64 for component in ids}


def _check_progression(data: bytes, sos: int, components: dict[int, list[int]]) -> None:
    """libjpeg's checks of a progressive scan (jdphuff.c, start_pass_phuff_decoder).

    What libjpeg refuses (a bad spectral band or approximation) it refuses with an
    error; what it only warns about (JWRN_BOGUS_PROGRESSION: a coefficient refined
    before it was first sent, sent twice, or refined out of order) Pillow ignores
    silently, and each such scan costs a whole pass for nothing: both are refused here.
    """
    count = data[sos + 4] if sos + 5 <= len(data) else 0
    params = sos + 5 + 2 * count
    if count == 0 or params + 3 > len(data):
        raise Rejected(422, "corrupt JPEG scan header")
    first, last, approximation = data[params], data[params + 1], data[params + 2]
    high, low = approximation >> 4, approximation & 0x0F
    dc = first == 0
    bad = (last != 0) if dc else (first > last or last > 63 or count != 1)
    if (high != 0 and low != high - 1) or low > 13 or bad:
        raise Rejected(422, f"corrupt JPEG progression (scan of coefficients {first}-{last}, bits {high}/{low})")
    for component in data[sos + 5 : params : 2]:
        bits = components.get(component)
        if bits is None:
            raise Rejected(422, f"corrupt JPEG scan (component {component} is not in the frame)")
        if not dc and bits[0] < 0:
            raise Rejected(422, "bogus JPEG progression (AC coefficients sent before DC)")
        for k in range(first, last + 1):
            if high != max(bits[k], 0):
                raise Rejected(
                    422, f"bogus JPEG progression (coefficient {k} of component {component} sent out of order)"
                )
            bits[k] = low


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


def _inflated_size(compressed: bytes, budget: Budget) -> int:
    """The size of zlib data once decompressed, inflating no further than the metadata limit allows."""
    room = budget.limits.max_metadata_bytes - budget.metadata + 1
    try:
        return len(zlib.decompressobj().decompress(compressed, max(room, 1)))
    except zlib.error:
        return 0  # the decoder reports broken data


def _png_metadata_size(kind: bytes, body: bytes, budget: Budget) -> int:
    """What a PNG metadata chunk holds: compressed text and profiles at their decompressed size."""
    if kind in (b"iCCP", b"zTXt"):  # name, NUL, method byte, zlib data
        return max(len(body), _inflated_size(body[body.find(b"\x00") + 2 :], budget))
    if kind == b"iTXt":  # keyword, NUL, compressed flag, method, language, NUL, translated keyword, NUL, text
        keyword = body.find(b"\x00")
        language = body.find(b"\x00", keyword + 3)
        translated = body.find(b"\x00", language + 1)
        if keyword >= 0 and body[keyword + 1 : keyword + 2] == b"\x01" and language >= 0 and translated >= 0:
            return max(len(body), _inflated_size(body[translated + 1 :], budget))
    return len(body)


def _count_png_chunks(data: bytes, limits: Limits) -> None:
    """At most `max_png_chunks` chunks: each costs its parse however small (2 million empty
    chunks in 23 MiB took 12 s to open)."""
    limit = limits.max_png_chunks
    for count, _ in enumerate(png_chunks(data), 1):
        if count > limit:
            raise Rejected(422, f"PNG has more than {limit} chunks; the limit is {limit}")


def _check_png(data: bytes, budget: Budget, canvas: tuple[int, int]) -> None:
    """Text, EXIF and ICC chunks are metadata (compressed text and profiles at their decompressed
    size); every fcTL is a frame of the canvas's size (APNG frames must fit in it); the image ends at IEND."""
    frames = 0
    for kind, start, length in png_chunks(data):
        if kind in (b"iCCP", b"tEXt", b"zTXt", b"iTXt", b"eXIf"):
            budget.add_metadata(_png_metadata_size(kind, data[start : start + length], budget))
        elif kind == b"fcTL":
            frames += 1
            budget.frame(*canvas)
        elif kind == b"IEND":
            refuse_trailing("PNG", data, start + length + 4)  # after its CRC
    if frames == 0:
        budget.frame(*canvas)
