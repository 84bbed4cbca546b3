"""Image metadata: format facts and the EXIF fields people filter and read by.

Pure domain code over a Pillow image (no I/O). Values come out as JSON/Firestore
friendly scalars: strings, ints, floats; rationals as floats; capture time as
the EXIF string and as an ISO 8601 timestamp when it parses.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterator
from typing import Any

from PIL import ExifTags, Image

_IFD = ExifTags.IFD
_TAGS = ExifTags.Base
_GPS = ExifTags.GPS

ORIENTATIONS = range(1, 9)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Each chunk of a PNG as (kind, where its body starts, its length), up to and including
    IEND, walking the chunk headers (no decompression)."""
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        yield kind, pos + 8, length
        if kind == b"IEND":
            return
        pos += 12 + length


def png_chunk(data: bytes, kind: bytes) -> bytes | None:
    """The body of the first `kind` chunk of a PNG."""
    return next((data[start : start + length] for found, start, length in png_chunks(data) if found == kind), None)


def header_orientation(image: Image.Image, data: bytes) -> int:
    """The EXIF orientation (1..8; 1 when absent or unreadable) still to apply to a header-only
    `image` opened from `data` to show it upright, without decoding pixels.

    Pillow's PNG `getexif` decodes the whole image to reach an eXIf chunk after the pixel data,
    so that chunk is found in `data` instead. A TIFF is 1: Pillow turns TIFFs upright itself (the
    header's size is already the upright one, and `load` transposes the pixels)."""
    if image.format == "TIFF":
        return 1
    if image.format == "PNG" and "exif" not in image.info:
        body = png_chunk(data, b"eXIf")
        if body is not None:
            image.info["exif"] = b"Exif\x00\x00" + body
    try:
        # PNG: the base class reads info (the eXIf found above, XMP) without decoding pixels.
        found = Image.Image.getexif(image) if image.format == "PNG" else image.getexif()
        value = found.get(_TAGS.Orientation)
    except Exception:  # a broken EXIF block is ignored, as browsers do
        return 1
    return value if isinstance(value, int) and value in ORIENTATIONS else 1


def _text(value: Any, limit: int = 200) -> str | None:
    """An ASCII field's text; None for anything that is not text (a Make written as a number)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "").strip()
    return text[:limit] or None


def _scalar(value: Any) -> Any:
    """The first value of a multi-valued tag (Pillow gives a tuple when the count is above one)."""
    if isinstance(value, (tuple, list)):
        return value[0] if value else None
    return value


def _number(value: Any) -> float | None:
    value = _scalar(value)
    if isinstance(value, (str, bytes, bool)):  # a wrongly typed tag, not a number
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _integer(value: Any, allowed: range | None = None) -> int | None:
    value = _scalar(value)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return value if allowed is None or value in allowed else None


def _date_text(value: Any) -> str | None:
    """A date field's text, or None for the blank placeholders cameras write for "unknown"
    ("    :  :     :  :  ", "0000:00:00 00:00:00")."""
    text = _text(value)
    if text is None or not any(ch in "123456789" for ch in text):
        return None
    return text


def _capture_time(raw: str | None) -> dt.datetime | None:
    if not raw:
        return None
    for pattern in ("%Y:%m:%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S.%f", "%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        for candidate in (raw[:26], raw[:19]):  # with sub-seconds, then without a trailing suffix
            try:
                return dt.datetime.strptime(candidate, pattern)
            except ValueError:
                continue
    return None


def camera_name(make: str | None, model: str | None) -> str | None:
    """ "Make - Model" as S8 shows it; the model alone when it already starts with the make."""
    if not make and not model:
        return None
    if make and model and model.lower().startswith(make.lower()):
        return model
    return " - ".join(part for part in (make, model) if part)


def exif(image: Image.Image, *, include_gps: bool) -> dict[str, Any]:
    """The EXIF fields Aperture stores (absent ones are left out).

    Malformed EXIF never raises: a field that cannot be read, is of the wrong
    type or is out of range (orientation outside 1..8, a rational with a zero
    denominator) is simply left out.
    """
    try:
        data = image.getexif()
    except Exception:  # malformed EXIF must not fail the image: it simply has none
        return {}
    sub = _ifd(data, _IFD.Exif)
    make, model = _text(_get(data, _TAGS.Make)), _text(_get(data, _TAGS.Model))
    captured_raw = _date_text(_get(sub, _TAGS.DateTimeOriginal)) or _date_text(_get(data, _TAGS.DateTime))
    out: dict[str, Any] = {
        "make": make,
        "model": model,
        "camera": camera_name(make, model),
        "captured": captured_raw,
        "captured_at": _capture_time(captured_raw),
        "orientation": _integer(_get(data, _TAGS.Orientation), ORIENTATIONS),
        "lens": _text(_get(sub, _TAGS.LensModel)),
        "exposure_time": _number(_get(sub, _TAGS.ExposureTime)),
        "f_number": _number(_get(sub, _TAGS.FNumber)),
        "iso": _integer(_get(sub, _TAGS.ISOSpeedRatings)),
        "focal_length": _number(_get(sub, _TAGS.FocalLength)),
        "software": _text(_get(data, _TAGS.Software)),
    }
    if include_gps:
        out["gps"] = _gps(data)
    return {k: v for k, v in out.items() if v is not None}


def _get(ifd: Any, tag: int) -> Any:
    try:
        return ifd.get(tag)
    except Exception:  # Pillow decodes tag values lazily: a bad one must not fail the rest
        return None


def _ifd(data: Image.Exif, tag: int) -> Any:
    try:
        return data.get_ifd(tag)
    except Exception:
        return {}


def _gps(data: Image.Exif) -> dict[str, float] | None:
    gps = _ifd(data, _IFD.GPSInfo)
    lat = _degrees(_get(gps, _GPS.GPSLatitude), _get(gps, _GPS.GPSLatitudeRef), "S")
    lon = _degrees(_get(gps, _GPS.GPSLongitude), _get(gps, _GPS.GPSLongitudeRef), "W")
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    out = {"latitude": lat, "longitude": lon}
    altitude = _number(_get(gps, _GPS.GPSAltitude))
    if altitude is not None:
        below = _get(gps, _GPS.GPSAltitudeRef) in (1, (1,), b"\x01")
        out["altitude"] = -altitude if below else altitude
    return out


def _degrees(value: Any, ref: Any, negative: str) -> float | None:
    """Degrees, minutes, seconds (three rationals) as signed decimal degrees."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        return None
    d, m, s = (_number(x) for x in value)
    if d is None or m is None or s is None:
        return None
    sign = -1 if (_text(ref) or "").upper() == negative else 1
    return sign * (d + m / 60 + s / 3600)


def describe(image: Image.Image, data_size: int) -> dict[str, Any]:
    """Format facts of the file as opened (before any normalisation)."""
    return {
        "format": "JPEG" if image.format == "MPO" else image.format,
        "mode": image.mode,
        "width": image.width,
        "height": image.height,
        "frames": getattr(image, "n_frames", 1),
        "size": data_size,
    }
