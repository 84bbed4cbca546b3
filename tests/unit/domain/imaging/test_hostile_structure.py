"""Hostile uploads refused from their structure, before any pixel is decoded (issue #18, items 1 and 4).

Each hostile file is generated here (tests/support/hostile.py). "Before decoding" is
shown two ways: the decoder is replaced by one that fails the test if called, and
files whose pixel data is absent or undecodable are still refused for the limit.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFile

from aperture.domain.imaging.validation import Limits, Rejected, validate
from tests.support import hostile
from tests.support.images import encode, random_image

LIMITS = Limits(
    max_file_bytes=25 * 2**20,
    max_pixels=100_000_000,
    max_frames=1000,
    max_animation_pixels=500_000_000,
    max_metadata_bytes=256 * 1024,
    max_jpeg_scans=32,
    max_png_chunks=20_000,
)


@pytest.fixture
def no_decoding(monkeypatch):
    """Any pixel decode fails the test (AssertionError is not a decode error, so it is not swallowed)."""
    calls = []

    def refuse_to_decode(image):
        calls.append(image.format)
        raise AssertionError(f"{image.format} pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_decode)
    return calls


def refusal(data: bytes, limits: Limits = LIMITS) -> Rejected:
    with pytest.raises(Rejected) as refused:
        validate(data, limits)
    return refused.value


def save(frames: list[Image.Image], fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=len(frames) > 1, append_images=frames[1:], **options)
    return buffer.getvalue()


# -- every frame counts at its real size ----------------------------------------------------


def test_gif_frames_larger_than_the_first_count_at_their_size(no_decoding) -> None:
    # Arrange: 1x1 first frame, then 40 frames of 4000x4000 (the canvas grows to hold them)
    data = hostile.gif_small_first_frame(40)

    # Act
    refused = refusal(data)

    # Assert
    assert refused.status == 422
    assert "500000000 pixels" in refused.reason and "4000x4000" in refused.reason
    assert no_decoding == []


def test_gif_frames_are_refused_from_their_descriptors_even_when_undecodable(no_decoding) -> None:
    data = hostile.gif_small_first_frame(40, decodable=False)

    refused = refusal(data)

    assert (refused.status, "the limit is 500000000" in refused.reason) == (422, True)
    assert no_decoding == []


def test_a_gif_frame_over_the_pixel_limit_is_refused(no_decoding) -> None:
    data = hostile.gif_small_first_frame(1, size=(12_000, 10_000), decodable=False)

    refused = refusal(data)

    assert refused.reason == "frame 2 has 120000000 pixels (12000x10000); the limit is 100000000"


def test_gif_canvas_growth_counts_for_every_later_frame() -> None:
    # Arrange: 1 + 3 frames of 2000x2000: 12,000,001 pixels once the canvas has grown
    data = hostile.gif_small_first_frame(3, size=(2000, 2000))
    limits = Limits(10**8, 10**8, 100, 12_000_000, 10**6)

    # Act / Assert
    assert "the limit is 12000000" in refusal(data, limits).reason
    assert validate(data, Limits(10**8, 10**8, 100, 12_000_001, 10**6)).frames == 4


def test_tiff_pages_larger_than_the_first_count_at_their_size(no_decoding) -> None:
    # Arrange: a 1x1 first page and 40 pages of 4000x4000 that have no strips at all
    data = hostile.tiff_small_first_page(40)

    # Act
    refused = refusal(data)

    # Assert
    assert (refused.status, "the limit is 500000000" in refused.reason) == (422, True)
    assert no_decoding == []


def test_tiff_pages_over_the_frame_limit_are_refused(no_decoding) -> None:
    data = hostile.tiff_small_first_page(20, size=(2, 2))

    refused = refusal(data, Limits(10**8, 10**8, 10, 10**9, 10**6))

    assert refused.reason == "image has more than 10 frames; the limit is 10"


def test_a_tiff_directory_loop_is_refused() -> None:
    data = bytearray(hostile.tiff_small_first_page(1, size=(2, 2)))
    data[-4:] = (8).to_bytes(4, "little")  # the last directory points back at the first

    assert "loop" in refusal(bytes(data)).reason


# -- progressive JPEGs ------------------------------------------------------------------------


def test_a_jpeg_with_more_scans_than_the_limit_is_refused_from_its_markers(no_decoding) -> None:
    # Arrange: a legal progression of 64 scans whose entropy-coded data is junk
    data = hostile.jpeg_many_scans(64)

    # Act
    refused = refusal(data)

    # Assert
    assert refused.status == 422
    assert refused.reason.startswith("JPEG has more than 32 scans; the limit is 32")
    assert no_decoding == []


def test_the_scan_limit_is_a_setting() -> None:
    data = hostile.progressive_jpeg()  # libjpeg's default script: 10 scans

    assert validate(data, LIMITS).format == "JPEG"
    assert "more than 9 scans" in refusal(data, Limits(10**8, 10**8, 100, 10**9, 10**6, max_jpeg_scans=9)).reason


def test_a_bogus_progression_that_pillow_decodes_silently_is_refused(no_decoding) -> None:
    # Arrange: the last scan sent five more times; libjpeg only warns and Pillow says nothing
    data = hostile.jpeg_bogus_progression()
    no_decoding_calls = list(no_decoding)

    # Act
    refused = refusal(data)

    # Assert
    assert refused.status == 422
    assert refused.reason.startswith("bogus JPEG progression")
    assert no_decoding == no_decoding_calls == []


def test_pillow_surfaces_no_libjpeg_warning_for_a_bogus_progression(recwarn) -> None:
    # Why the walk checks the progression itself: Pillow's libjpeg error manager drops warnings
    image = Image.open(io.BytesIO(hostile.jpeg_bogus_progression()))

    image.load()

    assert image.size == (320, 240)
    assert len(recwarn) == 0


@pytest.mark.parametrize(
    ("scan", "reason"),
    [
        (bytes([0, 63, 0x00]), "corrupt JPEG progression"),  # DC scan with an AC band
        (bytes([1, 5, 0x31]), "corrupt JPEG progression"),  # refinement Al != Ah - 1
    ],
)
def test_progressions_libjpeg_refuses_are_refused(scan: bytes, reason: str) -> None:
    data = bytearray(hostile.jpeg_many_scans(2))
    second = data.rindex(b"\xff\xda")
    data[second + 7 : second + 10] = scan

    assert refusal(bytes(data)).reason.startswith(reason)


# -- polyglots --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "fmt"),
    [
        (hostile.jpeg_with_hidden_image, "JPEG"),
        (hostile.jpeg_hiding_zip_before_eoi, "JPEG"),
        (hostile.polyglot_gif_zip, "GIF"),
        (hostile.polyglot_webp_html, "WebP"),
        (hostile.polyglot_tiff_zip, "TIFF"),
        (hostile.polyglot_bmp_zip, "BMP"),
    ],
    ids=["jpeg+jpeg", "jpeg+zip+FFD9", "gif+zip", "webp+html", "tiff+zip", "bmp+zip"],
)
def test_data_after_the_real_end_of_the_image_is_refused(no_decoding, build, fmt: str) -> None:
    refused = refusal(build())

    assert refused.status == 422
    assert refused.reason.endswith(f"bytes after the end of the {fmt} image (polyglot or appended data)")
    assert no_decoding == []


@pytest.mark.parametrize("fmt", ["JPEG", "GIF", "WEBP", "TIFF", "BMP", "PNG"])
def test_padding_after_the_end_is_not_a_polyglot(fmt: str) -> None:
    data = encode(random_image("RGB", size=(40, 30), seed=8), fmt) + b"\x00\x00\r\n"

    assert validate(data, LIMITS).width == 40


def test_a_tiff_strip_past_everything_else_is_the_end() -> None:
    # Arrange: Pillow writes the directory after the strips; move nothing, append a zero
    # byte (padding) and then one more byte of data
    data = encode(random_image("RGB", size=(40, 30), seed=9), "TIFF")

    # Act / Assert
    assert validate(data + b"\x00", LIMITS).format == "TIFF"
    assert refusal(data + b"\x00A").reason.startswith("2 bytes after the end of the TIFF image")


# -- ICC profiles are metadata in every format ----------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_an_icc_profile_over_the_metadata_limit_is_refused(no_decoding, fmt: str) -> None:
    refused = refusal(hostile.with_huge_icc(fmt, size=300_000))

    assert refused.status == 422
    assert refused.reason.endswith("is over 262144 bytes; the limit is 262144")
    assert no_decoding == []


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_an_icc_profile_under_the_metadata_limit_is_accepted(fmt: str) -> None:
    assert validate(hostile.with_huge_icc(fmt, size=100_000), LIMITS).frames == 1


# -- PNG chunks: how many, and compressed text at its size ----------------------------------


def test_a_png_with_more_chunks_than_the_limit_is_refused_before_pillow_reads_it(monkeypatch) -> None:
    data = hostile.png_with_chunks(LIMITS.max_png_chunks)  # plus IHDR, IDAT, IEND
    opened = []
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: opened.append(args))

    refused = refusal(data)

    assert refused.status == 422
    assert refused.reason == "PNG has more than 20000 chunks; the limit is 20000"
    assert opened == []


@pytest.mark.parametrize("kind", [b"abCd", b"tEXt", b"IDAT"])
def test_the_chunk_limit_counts_every_kind_of_chunk(no_decoding, kind: bytes) -> None:
    limits = Limits(10**8, 10**8, 100, 10**9, 10**6, max_png_chunks=50)

    assert "more than 50 chunks" in refusal(hostile.png_with_chunks(60, kind), limits).reason
    assert no_decoding == []


@pytest.mark.parametrize("kind", [b"abCd", b"IDAT"])
def test_a_png_with_many_chunks_under_the_limit_is_accepted(kind: bytes) -> None:
    data = hostile.png_with_chunks(5_000, kind)

    assert validate(data, LIMITS).format == "PNG"


@pytest.mark.parametrize("kind", ["zTXt", "iTXt"])
def test_compressed_png_text_counts_at_its_inflated_size(no_decoding, kind: str) -> None:
    data = hostile.png_with_compressed_text(300_000, kind)

    refused = refusal(data)

    assert len(data) < 5_000
    assert refused.status == 422
    assert "262144" in refused.reason
    assert no_decoding == []


@pytest.mark.parametrize("kind", ["zTXt", "iTXt"])
def test_compressed_png_text_under_the_metadata_limit_is_accepted(kind: str) -> None:
    assert validate(hostile.png_with_compressed_text(100_000, kind), LIMITS).format == "PNG"


# -- legitimate files still pass --------------------------------------------------------------


def _legit() -> dict[str, tuple[bytes, int]]:
    def rgb(size=(120, 80), seed=0):
        return random_image("RGB", size=size, seed=seed)

    cases = {
        f"tiff {compression}": (save([rgb(), rgb((300, 200), 1), rgb((20, 20), 2)], "TIFF", compression=compression), 3)
        for compression in ("raw", "tiff_lzw", "tiff_deflate", "packbits", "jpeg", "tiff_adobe_deflate")
    }
    cases["tiff group4"] = (save([rgb().convert("1"), rgb(seed=1).convert("1")], "TIFF", compression="group4"), 2)
    cases["tiff with exif and icc"] = (save([rgb()], "TIFF", icc_profile=b"p" * 5000, exif=Image.Exif()), 1)
    cases["animated gif"] = (save([rgb().convert("P"), rgb((200, 150), 1).convert("P")], "GIF", duration=40), 2)
    cases["animated webp"] = (save([rgb(), rgb(seed=1), rgb(seed=2)], "WEBP", duration=40), 3)
    cases["apng"] = (save([rgb(), rgb(seed=1)], "PNG", duration=40), 2)
    cases["mpo"] = (save([rgb(), rgb(seed=1)], "MPO"), 2)
    cases["progressive jpeg"] = (hostile.progressive_jpeg(), 1)
    cases["progressive greyscale jpeg"] = (encode(rgb().convert("L"), "JPEG", progressive=True), 1)
    cases["progressive cmyk jpeg"] = (encode(rgb().convert("CMYK"), "JPEG", progressive=True), 1)
    for mode in ("RGB", "RGBA", "L", "P", "1"):
        cases[f"bmp {mode}"] = (encode(rgb((101, 7)).convert(mode), "BMP"), 1)
    cases["bmp v5 with a small profile"] = (hostile.bmp_v5_with_profile(b"p" * 1000), 1)
    return cases


LEGIT = _legit()


@pytest.mark.parametrize("name", LEGIT)
def test_legitimate_files_are_accepted_with_their_frames(name: str) -> None:
    data, frames = LEGIT[name]

    assert validate(data, LIMITS).frames == frames
