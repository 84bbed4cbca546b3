"""EXIF extraction (S7): camera make and model, capture time, orientation, lens,
exposure and GPS, read from real EXIF and checked against an independent reader.

Sources: EXIF written by `piexif` and by Pillow's `Image.Exif`, hand-built
malformed blocks, and real camera photographs shipped in the `exif==0.12.0`
wheel. The independent reader is `exifread` (pure Python, no code shared with
Pillow); see tests/support/exif_samples.py.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import warnings

import exifread
import piexif
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from aperture.domain.imaging import metadata
from tests.support import exif_samples as xs

SYNTHETIC = xs.synthetic_samples()
CORE_FIELDS = ("make", "model", "captured", "orientation")
OTHER_FIELDS = ("lens", "exposure_time", "f_number", "iso", "focal_length")


def read(data: bytes, *, include_gps: bool = True) -> dict:
    """metadata.exif on the decoded-lazily image, with Pillow's corrupt-data warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metadata.exif(xs.open_jpeg(data), include_gps=include_gps)


def reference(data: bytes) -> dict:
    logging.disable(logging.CRITICAL)  # exifread logs "possibly corrupted" for odd tags
    try:
        return xs.reference(data)
    finally:
        logging.disable(logging.NOTSET)


# ---------------------------------------------------------------- EXIF written by piexif


def test_piexif_fields_are_extracted():
    data = xs.piexif_jpeg(**xs.CANON)

    result = read(data, include_gps=False)

    assert result == {
        "make": "Canon",
        "model": "Canon EOS 5D Mark IV",
        "camera": "Canon EOS 5D Mark IV",
        "captured": "2021:07:04 12:34:56",
        "captured_at": dt.datetime(2021, 7, 4, 12, 34, 56),
        "orientation": 1,
        "lens": "EF24-105mm f/4L IS II USM",
        "exposure_time": pytest.approx(1 / 250),
        "f_number": pytest.approx(5.6),
        "iso": 400,
        "focal_length": pytest.approx(50.0),
        "software": "Firmware Version 1.2.0",
    }


def test_piexif_gps_south_west_below_sea_level_is_negative():
    data = xs.piexif_jpeg(**xs.CANON)

    result = read(data, include_gps=True)

    assert result["gps"] == {
        "latitude": pytest.approx(-(33 + 51 / 60 + 35.64 / 3600)),
        "longitude": pytest.approx(-(70 + 39 / 60 + 30 / 3600)),
        "altitude": pytest.approx(-12.5),
    }


def test_gps_is_left_out_unless_enabled():
    data = xs.piexif_jpeg(**xs.CANON)

    result = read(data, include_gps=False)

    assert "gps" not in result


@pytest.mark.parametrize("orientation", range(1, 9))
def test_piexif_orientation_each_value(orientation):
    data = xs.piexif_jpeg(zeroth={piexif.ImageIFD.Orientation: orientation})

    result = read(data)

    assert result["orientation"] == orientation


def test_date_time_original_wins_over_date_time():
    data = xs.piexif_jpeg(**xs.CANON)  # DateTime 2021:07:05 08:00:00, DateTimeOriginal a day earlier

    result = read(data)

    assert result["captured"] == "2021:07:04 12:34:56"


def test_date_time_is_used_without_date_time_original():
    data = SYNTHETIC["piexif-no-exif-ifd"]

    result = read(data)

    assert result["captured"] == "2019:12:31 23:59:59"
    assert result["captured_at"] == dt.datetime(2019, 12, 31, 23, 59, 59)


def test_no_exif_gives_empty_result():
    data = xs.jpeg_with_exif(None)

    result = read(data)

    assert result == {}


# ---------------------------------------------------------------- EXIF written by Pillow


def test_pillow_exif_fields_are_extracted():
    data = xs.jpeg_with_exif(xs.pillow_exif(**xs.NIKON))

    result = read(data, include_gps=True)

    assert result == {
        "make": "NIKON CORPORATION",
        "model": "NIKON D750",
        "camera": "NIKON CORPORATION - NIKON D750",
        "captured": "2020:01:02 03:04:05",
        "captured_at": dt.datetime(2020, 1, 2, 3, 4, 5),
        "orientation": 8,
        "lens": "AF-S NIKKOR 24-120mm f/4G ED VR",
        "exposure_time": pytest.approx(1 / 60),
        "f_number": pytest.approx(4.0),
        "iso": 800,
        "focal_length": pytest.approx(35.0),
        "gps": {
            "latitude": pytest.approx(48 + 51 / 60 + 29.52 / 3600),
            "longitude": pytest.approx(2 + 17 / 60 + 40.2 / 3600),
            "altitude": pytest.approx(35.0),
        },
    }


@pytest.mark.parametrize("orientation", range(1, 9))
def test_pillow_orientation_each_value(orientation):
    data = xs.jpeg_with_exif(xs.pillow_exif(zeroth={piexif.ImageIFD.Orientation: orientation}))

    result = read(data)

    assert result["orientation"] == orientation


def test_pillow_exif_in_png_is_read_too():
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(
        buffer,
        "PNG",
        exif=xs.pillow_exif(
            zeroth={
                piexif.ImageIFD.Make: "Canon",
                piexif.ImageIFD.Model: "Canon EOS R5",
                piexif.ImageIFD.Orientation: 6,
            }
        ),
    )

    result = metadata.exif(Image.open(io.BytesIO(buffer.getvalue())), include_gps=False)

    assert (result["camera"], result["orientation"]) == ("Canon EOS R5", 6)


def test_little_endian_exif_is_read():
    data = SYNTHETIC["raw-little-endian"]

    result = read(data)

    assert (result["make"], result["model"], result["orientation"], result["captured"]) == (
        "FUJIFILM",
        "X-T4",
        5,
        "2022:02:22 22:22:22",
    )


# ---------------------------------------------------------------- against exifread


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_core_fields_equal_exifread_on_synthetic(name):
    data = SYNTHETIC[name]

    ours, theirs = read(data), reference(data)

    assert theirs, "exifread found no EXIF: the sample would prove nothing"
    assert {k: ours.get(k) for k in CORE_FIELDS} == {k: theirs.get(k) for k in CORE_FIELDS}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_other_fields_equal_exifread_on_synthetic(name):
    data = SYNTHETIC[name]

    ours, theirs = read(data), reference(data)

    assert {k: ours.get(k) for k in OTHER_FIELDS} == pytest.approx({k: theirs.get(k) for k in OTHER_FIELDS})
    assert ours.get("gps") == (pytest.approx(theirs["gps"]) if "gps" in theirs else None)


# ---------------------------------------------------------------- real camera photographs


PHOTO_FACTS = {  # what the photographs say, as exifread and exiftool report them
    "florida_beach.jpg": ("Apple", "iPhone 7", "2019:03:26 19:33:47", 1),
    "github_issue_12.jpg": ("HUAWEI", "CLT-L09", "2019:03:17 10:47:06", None),  # Orientation 0 in the file
    "grand_canyon.jpg": ("Apple", "iPhone 7", "2018:03:12 10:12:07", 1),
    "grayson_highlands.jpg": ("Apple", "iPhone 7", "2018:07:19 14:45:42", 1),  # DateTime says 2019:01:09
}


def test_package_ships_the_camera_photographs():
    names = xs.shipped_jpeg_names()

    assert set(xs.CAMERA_PHOTOS) <= set(names)
    assert set(PHOTO_FACTS) == set(xs.CAMERA_PHOTOS)


@pytest.mark.parametrize("name", xs.CAMERA_PHOTOS)
def test_camera_photo_core_fields_equal_exifread(name):
    data = xs.shipped_photo(name)

    ours, theirs = read(data), reference(data)

    assert theirs["make"] and theirs["model"], "not a camera photograph"
    assert {k: ours.get(k) for k in CORE_FIELDS} == {k: theirs.get(k) for k in CORE_FIELDS}
    assert tuple(ours.get(k) for k in CORE_FIELDS) == PHOTO_FACTS[name]


@pytest.mark.parametrize("name", xs.CAMERA_PHOTOS + xs.OTHER_SHIPPED_JPEGS)
def test_shipped_jpeg_all_fields_equal_exifread(name):
    data = xs.shipped_photo(name)

    ours, theirs = read(data), reference(data)

    assert {k: ours.get(k) for k in CORE_FIELDS + OTHER_FIELDS} == pytest.approx(
        {k: theirs.get(k) for k in CORE_FIELDS + OTHER_FIELDS}
    )
    assert ours.get("gps") == (pytest.approx(theirs["gps"]) if "gps" in theirs else None)


def test_camera_photo_exposure_and_gps():
    data = xs.shipped_photo("grand_canyon.jpg")

    result = read(data)

    assert result["camera"] == "Apple - iPhone 7"
    assert result["captured_at"] == dt.datetime(2018, 3, 12, 10, 12, 7)
    assert result["lens"] == "iPhone 7 back camera 3.99mm f/1.8"
    assert (result["exposure_time"], result["f_number"], result["iso"], result["focal_length"]) == pytest.approx(
        (1 / 3690, 1.8, 20, 3.99)
    )
    assert result["gps"] == pytest.approx(
        {"latitude": 36 + 3 / 60 + 11.08 / 3600, "longitude": -(112 + 5 / 60 + 4.18 / 3600), "altitude": 212429 / 97}
    )


def test_camera_photo_with_orientation_zero_leaves_it_out():
    """The HUAWEI photo really carries the invalid Orientation 0 (raw exifread value)."""
    data = xs.shipped_photo("github_issue_12.jpg")

    raw = exifread.process_file(io.BytesIO(data), details=False)["Image Orientation"].values

    assert raw == [0]
    assert "orientation" not in read(data)


# ---------------------------------------------------------------- malformed EXIF never raises


def _gps(lat, lon, *, refs=("N", "E"), extra=()):
    return [xs.ascii_entry(1, refs[0]), lat, xs.ascii_entry(3, refs[1]), lon, *extra]


_ONE = xs.rational_entry(2, (1, 1), (30, 1), (0, 1))
_ONE_LON = xs.rational_entry(4, (1, 1), (30, 1), (0, 1))

MALFORMED = {
    "garbage-app1": (xs.jpeg_with_app1(b"Exif\x00\x00" + bytes(range(256)) * 3), {}),
    "non-exif-app1": (xs.jpeg_with_app1(b"\xde\xad\xbe\xef" * 50), {}),
    "truncated-tiff-header": (xs.jpeg_with_app1(b"Exif\x00\x00II*\x00"), {}),
    "ifd-offset-past-end": (xs.jpeg_with_app1(b"Exif\x00\x00II*\x00\xff\xff\x00\x00"), {}),
    "bad-byte-order": (xs.jpeg_with_app1(b"Exif\x00\x00XX*\x00\x08\x00\x00\x00" + bytes(20)), {}),
    "make-and-model-as-numbers": (
        xs.jpeg_with_app1(xs.raw_exif([xs.short_entry(0x010F, 7), xs.long_entry(0x0110, 1, 2, 3)])),
        {},
    ),
    "orientation-as-text": (xs.jpeg_with_app1(xs.raw_exif([xs.ascii_entry(0x0112, "6")])), {}),
    "orientation-as-rational": (xs.jpeg_with_app1(xs.raw_exif([xs.rational_entry(0x0112, (6, 1))])), {}),
    "orientation-unknown-type": (xs.jpeg_with_app1(xs.raw_exif([xs.Entry(0x0112, 99, 1, b"\x06\x00")])), {}),
    "date-as-rational": (xs.jpeg_with_app1(xs.raw_exif([], [xs.rational_entry(0x9003, (1, 2))])), {}),
    "exposure-as-text": (
        xs.jpeg_with_app1(xs.raw_exif([], [xs.ascii_entry(0x829D, "f/2.8"), xs.ascii_entry(0x829A, "1/250")])),
        {},
    ),
    "zero-denominators": (
        xs.jpeg_with_app1(
            xs.raw_exif(
                [],
                [
                    xs.rational_entry(0x829A, (1, 0)),
                    xs.rational_entry(0x829D, (0, 0)),
                    xs.rational_entry(0x920A, (5, 0)),
                ],
            )
        ),
        {},
    ),
    "gps-zero-denominators": (
        xs.jpeg_with_app1(xs.raw_exif([], None, _gps(xs.rational_entry(2, (1, 0), (2, 0), (3, 0)), _ONE_LON))),
        {"gps": None},
    ),
    "gps-altitude-zero-denominator": (
        xs.jpeg_with_app1(xs.raw_exif([], None, _gps(_ONE, _ONE_LON, extra=[xs.rational_entry(6, (10, 0))]))),
        {"gps": {"latitude": 1.5, "longitude": 1.5}},
    ),
    "gps-two-parts": (
        xs.jpeg_with_app1(xs.raw_exif([], None, _gps(xs.rational_entry(2, (1, 1), (2, 1)), _ONE_LON))),
        {"gps": None},
    ),
    "gps-as-text": (
        xs.jpeg_with_app1(xs.raw_exif([], None, _gps(xs.ascii_entry(2, "123"), xs.ascii_entry(4, "456")))),
        {"gps": None},
    ),
    "gps-latitude-out-of-range": (
        xs.jpeg_with_app1(xs.raw_exif([], None, _gps(xs.rational_entry(2, (100, 1), (0, 1), (0, 1)), _ONE_LON))),
        {"gps": None},
    ),
    "gps-lowercase-refs": (
        xs.jpeg_with_app1(xs.raw_exif([], None, _gps(_ONE, _ONE_LON, refs=("s", "w")))),
        {"gps": {"latitude": -1.5, "longitude": -1.5}},
    ),
    "exif-pointer-past-end": (
        xs.jpeg_with_app1(
            xs.raw_exif(
                [
                    xs.ascii_entry(0x010F, "Canon"),
                    xs.Entry(0x8769, xs.LONG, 1, offset=0xFFFF0000),
                    xs.Entry(0x8825, xs.LONG, 1, offset=0xFFFF0000),
                ]
            )
        ),
        {"make": "Canon", "camera": "Canon"},
    ),
    "exif-pointer-loops-to-ifd0": (
        xs.jpeg_with_app1(xs.raw_exif([xs.ascii_entry(0x010F, "Canon"), xs.Entry(0x8769, xs.LONG, 1, offset=8)])),
        {"make": "Canon", "camera": "Canon"},
    ),
    "exif-pointer-as-text": (
        xs.jpeg_with_app1(xs.raw_exif([xs.ascii_entry(0x010F, "Canon"), xs.ascii_entry(0x8769, "hello world")])),
        {"make": "Canon", "camera": "Canon"},
    ),
    "tag-count-past-end": (
        xs.jpeg_with_app1(
            xs.raw_exif(
                [
                    xs.ascii_entry(0x010F, "Canon"),
                    xs.ascii_entry(0x0110, "EOS R5"),
                    xs.Entry(0x0131, xs.ASCII, 0x7FFFFFFF, offset=100),
                    xs.short_entry(0x0112, 3),
                ]
            )
        ),
        {"make": "Canon", "model": "EOS R5", "camera": "Canon - EOS R5", "orientation": 3},
    ),
    "nul-and-space-padding": (
        xs.jpeg_with_app1(
            xs.raw_exif(
                [xs.ascii_entry(0x010F, b"Canon\x00\x00\x00   "), xs.ascii_entry(0x0110, b"  Canon EOS R5\x00")]
            )
        ),
        {"make": "Canon", "model": "Canon EOS R5", "camera": "Canon EOS R5"},
    ),
    "blank-date-falls-back-to-date-time": (
        xs.jpeg_with_app1(
            xs.raw_exif(
                [xs.ascii_entry(0x0132, "2001:02:03 04:05:06")], [xs.ascii_entry(0x9003, "    :  :     :  :  ")]
            )
        ),
        {"captured": "2001:02:03 04:05:06", "captured_at": dt.datetime(2001, 2, 3, 4, 5, 6)},
    ),
    "zero-date": (xs.jpeg_with_app1(xs.raw_exif([], [xs.ascii_entry(0x9003, "0000:00:00 00:00:00")])), {}),
    "unparseable-date-kept-as-text": (
        xs.jpeg_with_app1(xs.raw_exif([], [xs.ascii_entry(0x9003, "yesterday 9am")])),
        {"captured": "yesterday 9am"},
    ),
    "date-with-offset-suffix": (
        xs.jpeg_with_app1(xs.raw_exif([], [xs.ascii_entry(0x9003, "2020:01:01 10:00:00+02:00")])),
        {"captured": "2020:01:01 10:00:00+02:00", "captured_at": dt.datetime(2020, 1, 1, 10)},
    ),
    "iso-with-two-values": (xs.jpeg_with_app1(xs.raw_exif([], [xs.short_entry(0x8827, 100, 200)])), {"iso": 100}),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_exif_does_not_raise(name):
    data, expected = MALFORMED[name]

    result = read(data, include_gps=True)

    assert {k: v for k, v in result.items() if k != "gps"} == {k: v for k, v in expected.items() if k != "gps"}
    assert result.get("gps") == (pytest.approx(expected["gps"]) if expected.get("gps") else None)


@pytest.mark.parametrize("orientation", [0, 9, 99, 65535])
def test_orientation_outside_one_to_eight_is_left_out(orientation):
    data = xs.jpeg_with_app1(xs.raw_exif([xs.ascii_entry(0x010F, "Canon"), xs.short_entry(0x0112, orientation)]))

    result = read(data)

    assert "orientation" not in result
    assert result["make"] == "Canon"


def test_piexif_orientation_zero_and_ninety_nine_are_left_out():
    samples = [xs.piexif_jpeg(zeroth={piexif.ImageIFD.Orientation: value}) for value in (0, 99)]

    results = [read(data) for data in samples]

    assert results == [{}, {}]


_VALID_BLOCK = piexif.dump(
    {"0th": xs.CANON["zeroth"], "Exif": xs.CANON["exif"], "GPS": xs.CANON["gps"], "1st": {}, "thumbnail": None}
)


@settings(max_examples=150)
@given(st.lists(st.tuples(st.integers(6, len(_VALID_BLOCK) - 1), st.integers(0, 255)), min_size=1, max_size=12))
def test_corrupted_exif_bytes_never_raise(edits):
    block = bytearray(_VALID_BLOCK)
    for position, value in edits:
        block[position] = value

    result = read(xs.jpeg_with_app1(bytes(block)))

    assert isinstance(result, dict)
    assert result.get("orientation") in (None, *range(1, 9))
    assert all(isinstance(v, (str, int, float, dt.datetime, dict)) for v in result.values())


@settings(max_examples=100)
@given(st.binary(max_size=300), st.sampled_from([b"II*\x00\x08\x00\x00\x00", b"MM\x00*\x00\x00\x00\x08"]))
def test_random_tiff_body_never_raises(body, header):
    data = xs.jpeg_with_app1(b"Exif\x00\x00" + header + body)

    result = read(data)

    assert isinstance(result, dict)


# ---------------------------------------------------------------- camera_name


@pytest.mark.parametrize(
    ("make", "model", "expected"),
    [
        ("Canon", "Canon EOS 5D", "Canon EOS 5D"),
        ("Canon", "Canon", "Canon"),
        ("canon", "Canon EOS R5", "Canon EOS R5"),
        ("NIKON CORPORATION", "NIKON D750", "NIKON CORPORATION - NIKON D750"),
        ("Apple", "iPhone 7", "Apple - iPhone 7"),
        ("HUAWEI", "CLT-L09", "HUAWEI - CLT-L09"),
        (None, "Pixel 7", "Pixel 7"),
        ("SONY", None, "SONY"),
        (None, None, None),
        ("", "", None),
    ],
)
def test_camera_name(make, model, expected):
    result = metadata.camera_name(make, model)

    assert result == expected


def test_camera_field_avoids_make_model_duplication():
    data = xs.piexif_jpeg(zeroth={piexif.ImageIFD.Make: b"Canon", piexif.ImageIFD.Model: b"Canon EOS 5D"})

    result = read(data)

    assert result["camera"] == "Canon EOS 5D"


# ---------------------------------------------------------------- describe


def test_describe_jpeg():
    data = xs.piexif_jpeg(**xs.CANON)

    facts = metadata.describe(xs.open_jpeg(data), len(data))

    assert facts == {"format": "JPEG", "mode": "RGB", "width": 16, "height": 12, "frames": 1, "size": len(data)}


def test_describe_reports_mpo_as_jpeg_with_its_frames():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), "red").save(buffer, "MPO", save_all=True, append_images=[Image.new("RGB", (8, 6), "blue")])
    data = buffer.getvalue()

    facts = metadata.describe(Image.open(io.BytesIO(data)), len(data))

    assert (facts["format"], facts["frames"], facts["width"], facts["height"]) == ("JPEG", 2, 8, 6)


def test_describe_grayscale_png():
    buffer = io.BytesIO()
    Image.new("L", (5, 7)).save(buffer, "PNG")
    data = buffer.getvalue()

    facts = metadata.describe(Image.open(io.BytesIO(data)), len(data))

    assert facts == {"format": "PNG", "mode": "L", "width": 5, "height": 7, "frames": 1, "size": len(data)}
