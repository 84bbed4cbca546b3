"""Upload validation by content (S6), and its fast path for whole sequential JPEG scans."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from aperture.domain.imaging import validation as image_validation
from aperture.domain.imaging.validation import Limits, Rejected, validate

LIMITS = Limits(
    max_file_bytes=10**8, max_pixels=10**8, max_frames=100, max_animation_pixels=10**9, max_metadata_bytes=10**6
)


def photo(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x * y) % 256], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def full_decode_refuses(data: bytes) -> bool:
    """What validation did before the fast path: decode every entropy-coded byte."""
    try:
        image = Image.open(io.BytesIO(data))
        image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()
    except Exception:
        return True
    return False


def refused(data: bytes) -> bool:
    try:
        validate(data, LIMITS)
    except Rejected:
        return True
    return False


ENCODINGS = {
    "baseline": dict(quality=90),
    "4:4:4": dict(quality=95, subsampling=0),
    "restart markers": dict(quality=85, restart_marker_rows=1),
    "progressive": dict(quality=90, progressive=True),
}


def damaged(data: bytes, rng: random.Random) -> bytes:
    scan = data.find(b"\xff\xda")
    at = rng.randrange(scan + 20, len(data) - 4)
    copy = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:
        copy[at] ^= 1 << rng.randrange(8)
    elif kind == 1:
        copy[at : at + 300] = bytes(len(copy[at : at + 300]))
    elif kind == 2:
        del copy[at : at + 700]
    elif kind == 3:
        copy = copy[:at] + b"\xff\xd9"
    elif kind == 4:
        copy[at : at + 64] = bytes(rng.randrange(256) for _ in range(64))
    else:  # a marker dropped into the scan
        copy[at : at + 2] = bytes([0xFF, rng.choice([0xC0, 0xC4, 0xD8, 0xDA, 0xDB, 0xE1, 0x01])])
    return bytes(copy)


@pytest.mark.parametrize("options", ENCODINGS.values(), ids=ENCODINGS.keys())
def test_validation_refuses_every_damaged_jpeg_a_full_decode_refuses(options) -> None:
    # Arrange
    data = jpeg(photo(seed=len(options)), **options)
    rng = random.Random(7)
    cases = [damaged(data, rng) for _ in range(150)]

    # Act
    missed = [i for i, case in enumerate(cases) if full_decode_refuses(case) and not refused(case)]

    # Assert
    assert missed == []


def test_whole_sequential_scans_take_the_fast_path_and_others_do_not() -> None:
    image = photo()

    def scan_start(data: bytes) -> int | None:
        scan = image_validation._check_jpeg(data, LIMITS, allow_trailing_images=False)
        return None if scan is None else scan.start

    baseline = jpeg(image, quality=90)
    assert scan_start(baseline) == baseline.find(b"\xff\xda") + 2 + int.from_bytes(
        baseline[baseline.find(b"\xff\xda") + 2 : baseline.find(b"\xff\xda") + 4], "big"
    )
    assert scan_start(jpeg(image, quality=90, restart_marker_rows=2)) is not None
    assert scan_start(jpeg(image, quality=90, progressive=True)) is None
    truncated = baseline[: len(baseline) // 2]
    assert scan_start(truncated) is None
    with_marker = bytearray(baseline)
    with_marker[len(baseline) // 2 : len(baseline) // 2 + 2] = b"\xff\xc4"
    assert scan_start(bytes(with_marker)) is None
    with_marker[len(baseline) // 2 : len(baseline) // 2 + 2] = b"\xff\xc0"  # a frame header after a scan
    assert refused(bytes(with_marker))
    unstuffed_last_byte = bytearray(baseline)
    unstuffed_last_byte[-3] = 0xFF  # a fill byte right before the end marker
    assert scan_start(bytes(unstuffed_last_byte)) is not None


@pytest.mark.parametrize(("subsampling", "mcu_rows"), [(0, 8), (1, 8), (2, 16)], ids=["4:4:4", "4:2:2", "4:2:0"])
def test_fast_path_decodes_one_row_of_mcus(subsampling: int, mcu_rows: int) -> None:
    data = jpeg(photo(), quality=90, subsampling=subsampling)
    scan = image_validation._check_jpeg(data, LIMITS, allow_trailing_images=False)

    prefix = image_validation._scan_prefix(data, scan)

    assert scan.mcu_height == mcu_rows
    assert prefix.size == (photo().width, mcu_rows)
    prefix.load()


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("options", ENCODINGS.values(), ids=ENCODINGS.keys())
def test_truncated_jpegs_are_refused(options, cut: float) -> None:
    data = jpeg(photo(seed=3), **options)

    with pytest.raises(Rejected) as refusal:
        validate(data[: int(len(data) * cut)], LIMITS)

    assert refusal.value.status == 422


def test_bogus_huffman_table_is_refused_on_the_fast_path() -> None:
    # Arrange: a DHT whose code counts claim more codes than the table can hold
    data = bytearray(jpeg(photo(seed=4), quality=90))
    dht = data.find(b"\xff\xc4")
    data[dht + 5 : dht + 5 + 16] = bytes([255] * 16)

    # Act / Assert: libjpeg reads the tables from the prefix and refuses them
    assert full_decode_refuses(bytes(data))
    with pytest.raises(Rejected, match="corrupt|truncated|header"):
        validate(bytes(data), LIMITS)


def test_valid_jpegs_pass_with_their_facts() -> None:
    for options in ENCODINGS.values():
        data = jpeg(photo(321, 123, seed=5), **options)

        checked = validate(data, LIMITS)

        assert (checked.format, checked.width, checked.height, checked.frames) == ("JPEG", 321, 123, 1)


def test_mpo_frames_are_all_decoded() -> None:
    # Arrange: a two-frame MPO, whole and with its second frame truncated
    first, second = photo(200, 100, seed=6), photo(200, 100, seed=7)
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second], quality=90)
    data = buffer.getvalue()

    # Act / Assert
    assert validate(data, LIMITS).frames == 2
    with pytest.raises(Rejected, match="truncated"):
        validate(data[: len(data) - 2000], LIMITS)


# -- the EXIF orientation, read from the header --------------------------------------------------


def with_orientation(fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    photo(40, 20).save(buffer, fmt, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_the_exif_orientation_is_part_of_a_valid_image(fmt: str, orientation: int) -> None:
    valid = validate(with_orientation(fmt, orientation), LIMITS)

    assert (valid.width, valid.height, valid.orientation) == (40, 20, orientation)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_tiff_is_upright_already_pillow_turns_it_itself(orientation: int) -> None:
    valid = validate(with_orientation("TIFF", orientation), LIMITS)

    upright = (20, 40) if orientation in (5, 6, 7, 8) else (40, 20)
    assert (valid.width, valid.height, valid.orientation) == (*upright, 1)


def test_a_png_exif_chunk_after_the_pixel_data_is_found() -> None:
    data = with_orientation("PNG", 6)
    start = data.index(b"eXIf") - 4
    end = start + 12 + int.from_bytes(data[start : start + 4], "big")
    chunk, rest = data[start:end], data[:start] + data[end:]
    iend = rest.index(b"IEND") - 4
    moved = rest[:iend] + chunk + rest[iend:]  # after IDAT, before IEND

    assert moved.index(b"eXIf") > moved.index(b"IDAT")
    assert validate(moved, LIMITS).orientation == 6


@pytest.mark.parametrize("data", [jpeg(photo(40, 20)), jpeg(photo(40, 20), exif=b"Exif\x00\x00garbage, not a TIFF")])
def test_no_or_an_unreadable_exif_block_is_orientation_1(data: bytes) -> None:
    assert validate(data, LIMITS).orientation == 1
