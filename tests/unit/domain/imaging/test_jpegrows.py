"""The jpegrows extension (functions/native/jpegrows): rows of a JPEG, exactly as Pillow decodes them.

`make test` builds it (it needs gcc and libjpeg-turbo's headers, which
`make prereqs` looks for); these tests fail, rather than skip, where it is missing.
"""

from __future__ import annotations

import io
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.unit.domain.imaging.test_pixels import encode, smooth_photo

try:
    import jpegrows
except ImportError:  # pragma: no cover - reported by the first test
    jpegrows = None


def rows_of(data: bytes, first: int, stop: int, per_read: int = 100) -> np.ndarray:
    width, height = Image.open(io.BytesIO(data)).size
    decoder = jpegrows.RowDecoder(data, width, height, first, stop)
    out = bytearray((stop - first) * width * 4)
    view, done = memoryview(out), 0
    while decoder.remaining:
        done += decoder.read(view[done * width * 4 :], per_read)
    assert done == stop - first
    return np.frombuffer(out, np.uint8).reshape(stop - first, width, 4)


def test_the_extension_is_built() -> None:
    assert jpegrows is not None, (
        "jpegrows is not built: it needs a C compiler and libjpeg-turbo's headers "
        "(Debian: gcc, libjpeg62-turbo-dev); `make test` installs functions/native/jpegrows"
    )


SUBSAMPLINGS = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


@pytest.mark.parametrize("subsampling", SUBSAMPLINGS.values(), ids=SUBSAMPLINGS.keys())
@pytest.mark.parametrize("first, stop", [(0, 301), (0, 16), (7, 8), (16, 301), (150, 151), (299, 301), (37, 250)])
def test_any_range_of_rows_equals_those_rows_of_a_pillow_decode(subsampling: int, first: int, stop: int) -> None:
    # Arrange: 301 rows, not a multiple of any MCU height
    data = encode(smooth_photo(203, 301, seed=first), "JPEG", quality=88, subsampling=subsampling)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[first:stop]

    # Act
    rows = rows_of(data, first, stop, per_read=13)

    # Assert
    assert np.array_equal(rows[..., :3], expected)


def test_restart_markers_decode_exactly() -> None:
    data = encode(smooth_photo(640, 480, seed=3), "JPEG", quality=90, restart_marker_blocks=7)

    assert np.array_equal(rows_of(data, 200, 480)[..., :3], np.asarray(Image.open(io.BytesIO(data)))[200:])


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: encode(smooth_photo(64, 64), "JPEG", progressive=True), "sequential"),
        (lambda: encode(Image.new("L", (64, 64), 9), "JPEG"), "3-component"),
        (lambda: encode(Image.new("CMYK", (64, 64), (1, 2, 3, 4)), "JPEG"), "3-component"),
        (lambda: encode(Image.new("RGB", (64, 64)), "PNG"), "libjpeg"),
        (lambda: b"", "libjpeg"),
        (lambda: b"\xff\xd8\xff" + b"\x00" * 100, "libjpeg"),
    ],
    ids=["progressive", "grey", "cmyk", "png", "empty", "garbage"],
)
def test_what_it_does_not_decode_is_a_value_error(make, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        jpegrows.RowDecoder(make(), 64, 64, 0, 64)


def test_wrong_dimensions_and_row_ranges_are_refused() -> None:
    data = encode(smooth_photo(64, 48), "JPEG")

    with pytest.raises(ValueError, match="64x48, not 48x64"):
        jpegrows.RowDecoder(data, 48, 64, 0, 10)
    for first, stop in [(10, 10), (20, 10), (0, 49)]:
        with pytest.raises(ValueError, match="not within"):
            jpegrows.RowDecoder(data, 64, 48, first, stop)


def test_a_buffer_too_small_for_the_rows_asked_is_refused() -> None:
    decoder = jpegrows.RowDecoder(encode(smooth_photo(64, 48), "JPEG"), 64, 48, 0, 48)

    with pytest.raises(ValueError, match="too small .*buffer holds 100 bytes"):
        decoder.read(bytearray(100), 1)
    with pytest.raises(TypeError):
        decoder.read(bytes(64 * 4), 1)  # read-only
    assert decoder.remaining == 48


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_data_is_a_value_error_not_grey_rows(cut: float) -> None:
    # libjpeg pads a truncated scan with grey and only warns: the decoder refuses instead.
    data = encode(smooth_photo(300, 400, seed=1), "JPEG", quality=90)
    decoder = jpegrows.RowDecoder(data[: int(len(data) * cut)], 300, 400, 0, 400)

    with pytest.raises(ValueError, match="libjpeg"):
        decoder.read(bytearray(300 * 400 * 4), 400)
    assert decoder.remaining == 0
    with pytest.raises(ValueError, match="not ready"):
        decoder.read(bytearray(300 * 4), 1)


def test_two_decoders_on_two_threads_give_the_image() -> None:
    # Arrange
    data = encode(smooth_photo(1200, 900, seed=2), "JPEG", quality=92)
    expected = np.asarray(Image.open(io.BytesIO(data)))
    results: dict[int, np.ndarray] = {}

    def decode(first: int, stop: int) -> None:
        results[first] = rows_of(data, first, stop)[..., :3]

    # Act
    threads = [threading.Thread(target=decode, args=(0, 560)), threading.Thread(target=decode, args=(560, 900))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Assert
    assert np.array_equal(np.concatenate([results[0], results[560]]), expected)


def test_the_gil_is_released_while_rows_decode() -> None:
    # Arrange: with a 10 s switch interval the decoding thread never has to
    # hand over the GIL, so this thread can run during `read` only if `read`
    # releases it.
    data = encode(smooth_photo(2000, 1500, seed=5), "JPEG", quality=92)
    decoder = jpegrows.RowDecoder(data, 2000, 1500, 0, 1500)
    out = bytearray(2000 * 1500 * 4)
    busy, started = threading.Event(), threading.Event()
    ran_meanwhile = 0

    def work() -> None:
        busy.set()
        started.set()
        decoder.read(out, 1500)
        busy.clear()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(10)
    try:
        # Act
        thread = threading.Thread(target=work)
        thread.start()
        started.wait()
        while busy.is_set():
            ran_meanwhile += 1
            time.sleep(0.0002)  # lets the worker take the GIL back once libjpeg is done
        thread.join()
    finally:
        sys.setswitchinterval(interval)

    # Assert
    assert ran_meanwhile > 0
    assert decoder.remaining == 0


@pytest.mark.parametrize("subsampling", SUBSAMPLINGS.values(), ids=SUBSAMPLINGS.keys())
def test_counts_are_pillows_histogram_of_the_rows_read(subsampling: int) -> None:
    # Arrange
    data = encode(smooth_photo(333, 250, seed=9), "JPEG", quality=85, subsampling=subsampling)
    decoder = jpegrows.RowDecoder(data, 333, 250, 40, 250)
    out, counts = bytearray(333 * 210 * 4), np.full(768, 5, np.int64)  # adds to what is there

    # Act
    done = decoder.read(out, 300, counts)

    # Assert
    rows = Image.open(io.BytesIO(data)).crop((0, 40, 333, 250))
    assert done == 210
    assert counts.tolist() == [n + 5 for n in rows.histogram()]


def test_counts_must_be_768_writable_int64() -> None:
    decoder = jpegrows.RowDecoder(encode(smooth_photo(64, 48), "JPEG"), 64, 48, 0, 48)

    for counts in (np.zeros(767, np.int64), np.zeros(768, np.int32)):
        with pytest.raises(ValueError, match="768 int64"):
            decoder.read(bytearray(64 * 48 * 4), 48, counts)
    with pytest.raises(BufferError):
        decoder.read(bytearray(64 * 48 * 4), 48, bytes(768 * 8))
    assert decoder.remaining == 48
