"""Decoding untrusted bytes: refuse non-images and pixel bombs, normalize modes."""

from __future__ import annotations

import io
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from aperture.domain.imaging.pixels import (
    ImageError,
    NotAnImage,
    TooManyPixels,
    UnsupportedChannel,
    _RgbxBuffers,
    band_names,
    decodes_in_parallel,
    normalize,
    normalized_mode,
    open_image,
)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A ~60-byte PNG claiming width x height RGB, whose pixel data is garbage.

    Decoding it would fail, so an answer of TooManyPixels proves the size was
    checked before decoding.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", b"not really deflate")
        + png_chunk(b"IEND", b"")
    )


def photo_jpeg() -> bytes:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=85)


# -- open_image ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, world\n",
        b"<!DOCTYPE html><html><body>Not found</body></html>",
        b"\x89PNG\r\n\x1a\n",  # a signature and nothing else
        b"\xff\xd8\xff",  # a JPEG start and nothing else
    ],
)
def test_open_image_rejects_non_images(data: bytes) -> None:
    with pytest.raises(NotAnImage) as info:
        open_image(data, max_pixels=10_000)

    assert str(info.value)  # says why
    assert isinstance(info.value, ImageError) and isinstance(info.value, ValueError)


def test_open_image_rejects_truncated_jpeg() -> None:
    # Arrange
    data = photo_jpeg()

    # Act / Assert
    with pytest.raises(NotAnImage, match="decode"):
        open_image(data[: len(data) // 2], max_pixels=10_000)


def test_open_image_rejects_png_with_corrupt_pixel_data() -> None:
    with pytest.raises(NotAnImage):
        open_image(png_header_only(4, 4), max_pixels=10_000)


def test_open_image_checks_pixel_limit_before_decoding() -> None:
    # Arrange: the header claims 6000x5000 = 30 MP; the pixel data is garbage.
    data = png_header_only(6000, 5000)

    # Act
    with pytest.raises(TooManyPixels) as info:
        open_image(data, max_pixels=25_000_000)

    # Assert
    assert str(info.value) == "image has 30000000 pixels; the limit is 25000000"
    assert (info.value.pixels, info.value.limit) == (30_000_000, 25_000_000)


def test_open_image_reports_huge_headers_as_too_many_pixels() -> None:
    # Arrange: 100000 x 100000 is past Pillow's own bomb error threshold too.
    data = png_header_only(100_000, 100_000)

    # Act
    with pytest.raises(TooManyPixels) as info:
        open_image(data, max_pixels=100_000_000)

    # Assert
    assert info.value.pixels == 10_000_000_000
    assert "10000000000 pixels" in str(info.value)
    assert "the limit is 100000000" in str(info.value)


def test_open_image_accepts_exactly_the_limit() -> None:
    # Arrange
    data = encode(Image.new("RGB", (10, 10), (1, 2, 3)), "PNG")

    # Act
    image = open_image(data, max_pixels=100)

    # Assert
    assert image.size == (10, 10)
    with pytest.raises(TooManyPixels, match="the limit is 99"):
        open_image(data, max_pixels=99)


def test_open_image_decodes_bytes_and_streams() -> None:
    # Arrange
    data = photo_jpeg()

    # Act
    from_bytes = open_image(data, max_pixels=10_000)
    from_stream = open_image(io.BytesIO(data), max_pixels=10_000)

    # Assert: decoded already (no file access needed afterwards).
    assert from_bytes.mode == "RGB" and from_bytes.size == (96, 64)
    assert np.array_equal(np.asarray(from_bytes), np.asarray(from_stream))


def test_open_image_takes_the_first_frame_of_an_animation() -> None:
    # Arrange
    frames = [Image.new("L", (4, 4), value) for value in (10, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])

    # Act
    image = open_image(buffer.getvalue(), max_pixels=100)

    # Assert
    assert np.asarray(normalize(image)).max() == 10


# -- open_image(on_rows=...): rows reported while the decoder runs ---------------------------


def smooth_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Gradients plus noise: compresses like a photo, so the scan spans many 64 KB reads."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], axis=-1)
    noisy = base + rng.normal(0, 12, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def decode_by_rows(data: bytes) -> tuple[Image.Image, list[Image.Image]]:
    """The image and its reported runs, top to bottom; asserts each row was reported exactly once."""
    bands: list = []
    image = open_image(io.BytesIO(data), max_pixels=10**9, on_rows=bands.append)
    bands.sort(key=lambda band: band.top)
    assert [band.top for band in bands] == [sum(b.height for b in bands[:i]) for i in range(len(bands))]
    runs = [band() for band in bands]
    assert [run.height for run in runs] == [band.height for band in bands]
    return image, runs


JPEG_VARIANTS = {
    "baseline 4:2:0": dict(quality=90),
    "4:4:4": dict(quality=95, subsampling=0),
    "4:2:2": dict(quality=80, subsampling=1),
    "progressive": dict(quality=90, progressive=True),
    "optimized": dict(quality=75, optimize=True),
    "restart markers": dict(quality=90, restart_marker_rows=1),
}


@pytest.mark.parametrize("options", JPEG_VARIANTS.values(), ids=JPEG_VARIANTS.keys())
@pytest.mark.parametrize("size", [(1, 1), (17, 9), (640, 480), (1500, 1100), (1001, 777), (333, 2050)])
def test_rows_of_an_rgb_jpeg_are_reported_once_and_match_a_plain_decode(size, options) -> None:
    # Arrange
    data = encode(smooth_photo(*size), "JPEG", **options)
    plain = Image.open(io.BytesIO(data))
    plain.load()

    # Act
    image, runs = decode_by_rows(data)

    # Assert
    assert image.mode == "RGBX" and normalized_mode(image) == "RGB" and band_names(image) == ("r", "g", "b")
    assert np.array_equal(np.asarray(image)[..., :3], np.asarray(plain))
    assert sum(run.height for run in runs) == plain.height
    stacked = np.concatenate([np.asarray(run)[..., :3] for run in runs])
    assert np.array_equal(stacked, np.asarray(plain))


def test_large_baseline_jpeg_reports_rows_before_the_decode_ends() -> None:
    # Arrange: 4 MP, several hundred KB of scan data
    data = encode(smooth_photo(2400, 1700, seed=4), "JPEG", quality=92)

    # Act
    _, runs = decode_by_rows(data)

    # Assert: many runs, so counting overlapped decoding; short ones only at
    # the end of a part (two parts when decoded on two cores)
    assert len(runs) > 4
    assert sum(run.height < 64 for run in runs) <= 2


def test_a_large_baseline_jpeg_is_decoded_on_two_threads() -> None:
    # Arrange
    data = encode(smooth_photo(1600, 1200, seed=6), "JPEG", quality=90)
    threads: set[str] = set()

    # Act
    image = open_image(
        io.BytesIO(data), max_pixels=10**9, on_rows=lambda band: threads.add(threading.current_thread().name)
    )

    # Assert
    assert decodes_in_parallel(Image.open(io.BytesIO(data)))
    assert len(threads) == 2
    assert np.array_equal(np.asarray(image)[..., :3], np.asarray(Image.open(io.BytesIO(data))))


@pytest.mark.parametrize(
    ("image", "options"),
    [
        (smooth_photo(1600, 1200), dict(progressive=True)),
        (smooth_photo(1600, 300), {}),
        (Image.new("L", (1600, 1200)), {}),
    ],
    ids=["progressive", "few rows", "grey"],
)
def test_other_jpegs_are_decoded_on_one_thread(image: Image.Image, options: dict) -> None:
    assert not decodes_in_parallel(Image.open(io.BytesIO(encode(image, "JPEG", **options))))


def corrupt_jpeg(width: int, height: int, seed: int, at: float) -> bytes:
    """A JPEG whose restart marker `at` of the way through has the wrong number:
    libjpeg warns ("found marker ... instead of RST") and resyncs, and Pillow
    decodes it anyway."""
    data = bytearray(encode(smooth_photo(width, height, seed), "JPEG", quality=90, restart_marker_rows=1))
    position = data.index(b"\xff", int(len(data) * at))
    while not 0xD0 <= data[position + 1] <= 0xD7:
        position = data.index(b"\xff", position + 1)
    data[position + 1] = 0xD0 + (data[position + 1] - 0xD0 + 3) % 8
    return bytes(data)


@pytest.mark.parametrize("at", [0.2, 0.9], ids=["in the top part", "in the bottom part"])
def test_corrupt_data_gives_pillows_pixels_and_the_runs_do_not_cover_the_image(at: float) -> None:
    # Arrange: libjpeg only warns about such data and Pillow decodes it anyway
    data = corrupt_jpeg(1600, 1200, seed=7, at=at)
    expected = Image.open(io.BytesIO(data))
    expected.load()
    bands: list = []

    # Act
    image = open_image(io.BytesIO(data), max_pixels=10**9, on_rows=bands.append)

    # Assert
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(expected))
    assert sum(band.height for band in bands) < image.height


def test_rows_stay_exact_when_a_freed_buffer_is_reused_at_another_width() -> None:
    # Arrange: each image dies before the next decode, so its memory (padding
    # bytes 255 from the last decode) is handed out again, at a new row stride.
    sizes = [(900, 700), (900, 700), (640, 480), (1000, 500), (300, 1300)]
    datas = [encode(smooth_photo(w, h, seed=i), "JPEG", quality=85) for i, (w, h) in enumerate(sizes)]
    for data in datas:
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

        # Act
        image, runs = decode_by_rows(data)

        # Assert
        assert np.array_equal(np.concatenate([np.asarray(r)[..., :3] for r in runs]), expected)
        assert np.array_equal(np.asarray(image)[..., :3], expected)
        del image, runs


def test_buffer_pool_reuses_memory_only_once_nothing_refers_to_it() -> None:
    # Arrange
    pool = _RgbxBuffers(slots=2)
    first = pool.take(100, 50)
    core = Image.core.map_buffer(first, (100, 50), "raw", 0, ("RGBX", 0, 1))
    run = first[400:800]
    owner = id(first.obj)  # an id: holding the object would keep it in use
    first[:] = b"\xff" * len(first)
    del first

    # Act / Assert: the image core and a run still refer to it
    assert id(pool.take(100, 50).obj) != owner
    del core
    assert id(pool.take(100, 50).obj) != owner
    del run
    again = pool.take(80, 40)  # smaller: fits, at another stride

    assert id(again.obj) == owner
    assert all(again[(row + 1) * 320 - 1] == 0 for row in range(40))


def test_buffer_pool_keeps_no_memory_for_images_over_its_limit() -> None:
    pool = _RgbxBuffers(slots=2, max_bytes=1000)
    big = pool.take(100, 100)
    kept = pool._buffers[:]
    del big

    assert kept == []


@pytest.mark.parametrize(
    ("image", "fmt"),
    [
        (Image.new("L", (300, 200), 90), "JPEG"),
        (Image.new("CMYK", (300, 200), (10, 20, 30, 40)), "JPEG"),
        (Image.new("RGB", (300, 200), (1, 2, 3)), "PNG"),
        (Image.new("RGB", (300, 200), (1, 2, 3)), "WEBP"),
    ],
    ids=["grey jpeg", "cmyk jpeg", "png", "webp"],
)
def test_other_images_report_no_rows_and_decode_as_usual(image: Image.Image, fmt: str) -> None:
    data = encode(image, fmt)

    decoded, runs = decode_by_rows(data)

    assert runs == []
    assert decoded.mode == Image.open(io.BytesIO(data)).mode


def test_truncated_jpeg_with_on_rows_is_still_not_an_image() -> None:
    data = encode(smooth_photo(800, 600), "JPEG", quality=90)

    with pytest.raises(NotAnImage, match="truncated|decode"):
        decode_by_rows(data[: len(data) // 2])


# -- normalize -------------------------------------------------------------------------------


def palette_image(transparency: int | bytes | None) -> Image.Image:
    image = Image.frombytes("P", (3, 1), bytes([0, 1, 2]))
    image.putpalette(bytes([10, 20, 30, 40, 50, 60, 70, 80, 90]))
    if transparency is not None:
        image.info["transparency"] = transparency
    return image


def test_normalize_palette_without_transparency_gives_rgb_colours() -> None:
    # Act
    image = normalize(palette_image(None))

    # Assert
    assert image.mode == "RGB"
    assert np.asarray(image).tolist() == [[[10, 20, 30], [40, 50, 60], [70, 80, 90]]]


def test_normalize_palette_with_transparency_gives_rgba() -> None:
    # Act
    image = normalize(palette_image(1))

    # Assert
    assert image.mode == "RGBA"
    assert np.asarray(image)[0, :, 3].tolist() == [255, 0, 255]


def test_normalize_palette_png_with_trns_chunk_round_trip() -> None:
    # Arrange: transparency as a real PNG tRNS chunk, read back by open_image.
    data = encode(palette_image(bytes([255, 128, 0])), "PNG")

    # Act
    image = normalize(open_image(data, max_pixels=100))

    # Assert
    assert image.mode == "RGBA"
    assert np.asarray(image)[0, :, 3].tolist() == [255, 128, 0]


def test_normalize_pa_gives_rgba() -> None:
    # Arrange
    image = Image.frombytes("PA", (2, 1), bytes([0, 7, 2, 9]))
    image.putpalette(bytes([10, 20, 30, 40, 50, 60, 70, 80, 90]))

    # Act
    normalized = normalize(image)

    # Assert
    assert normalized.mode == "RGBA"
    assert np.asarray(normalized).tolist() == [[[10, 20, 30, 7], [70, 80, 90, 9]]]


def test_normalize_bilevel_gives_l_with_0_and_255() -> None:
    # Arrange
    image = Image.fromarray(np.array([[True, False, True]]))
    assert image.mode == "1"

    # Act
    normalized = normalize(image)

    # Assert
    assert normalized.mode == "L"
    assert np.asarray(normalized).tolist() == [[255, 0, 255]]


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBX", "RGBA", "CMYK", "YCbCr", "I;16", "I;16B", "I", "F"])
def test_normalize_leaves_other_modes_alone(mode: str) -> None:
    image = Image.new(mode, (2, 2))

    assert normalize(image) is image


# -- band_names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "names"),
    [
        ("L", ("l",)),
        ("1", ("l",)),
        ("LA", ("l", "a")),
        ("RGB", ("r", "g", "b")),
        ("RGBX", ("r", "g", "b")),
        ("RGBA", ("r", "g", "b", "a")),
        ("PA", ("r", "g", "b", "a")),
        ("CMYK", ("c", "m", "y", "k")),
        ("YCbCr", ("y", "cb", "cr")),
        ("I;16", ("l",)),
        ("I;16B", ("l",)),
        ("I", ("l",)),
        ("F", ("l",)),
    ],
)
def test_band_names(mode: str, names: tuple[str, ...]) -> None:
    assert band_names(Image.new(mode, (1, 1))) == names


def test_band_names_of_palette_image_follow_normalization() -> None:
    assert band_names(palette_image(None)) == ("r", "g", "b")
    assert band_names(palette_image(0)) == ("r", "g", "b", "a")


def test_unsupported_channel_message_names_channel_and_alternatives() -> None:
    error = UnsupportedChannel("a", ("r", "g", "b", "luma"))

    assert str(error) == "channel 'a' is not available; available channels: r, g, b, luma"
    assert isinstance(error, ImageError)
