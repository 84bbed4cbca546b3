"""Decoding: EXIF orientation first, colour profiles, modes, unreadable and oversized sources."""

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from aperture.domain.imaging.pixels import NotAnImage, TooManyPixels
from aperture.domain.transforms import parse_ops, render
from aperture.domain.transforms.source import first_frame, open_source
from tests.support.images import png_header_only

from .helpers import MAX_PIXELS, decode, encode, photo, psnr, render_one, same_pixels

# The stored pixels for each orientation: what a camera writes for an upright scene.
STORED = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def oriented(upright: Image.Image, orientation: int, fmt: str) -> bytes:
    stored = upright if STORED[orientation] is None else upright.transpose(STORED[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Camera"
    return encode(stored, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientations_come_out_upright_exactly_once(orientation):
    # Pillow turns a TIFF upright itself (its header size is already the upright one): render must not turn it again.
    upright = photo((60, 40))

    out = render_one(oriented(upright, orientation, "TIFF"), "", "png")

    assert (out.width, out.height) == (60, 40)
    assert same_pixels(decode(out.data), upright)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_png_orientations_come_out_upright_exactly(orientation):
    upright = photo((60, 40))
    data = oriented(upright, orientation, "PNG")
    assert same_pixels(ImageOps.exif_transpose(decode(data)).convert("RGB"), upright)  # the test image is right
    out = render_one(data, "", "png")
    assert (out.width, out.height) == (60, 40)
    assert same_pixels(decode(out.data), upright)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_orientations_come_out_upright(orientation):
    upright = photo((64, 48))
    out = render_one(oriented(upright, orientation, "JPEG"), "", "png")
    assert (out.width, out.height) == (64, 48)
    assert psnr(decode(out.data), upright) > 35


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_is_applied_before_the_operations(orientation):
    upright = photo((64, 48))
    out = render_one(oriented(upright, orientation, "PNG"), "crop:0,0,20,10|rotate:90", "png")
    expected = upright.crop((0, 0, 20, 10)).transpose(Image.Transpose.ROTATE_270)
    assert same_pixels(decode(out.data), expected)


def test_output_carries_no_orientation():
    out = render_one(oriented(photo((64, 48)), 6, "JPEG"), "", "jpg")
    assert 0x0112 not in decode(out.data).getexif()


def test_srgb_profile_is_dropped_without_changing_pixels():
    image = photo((32, 24))
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = decode(render_one(encode(image, icc_profile=icc), "", "png").data)
    assert "icc_profile" not in out.info
    assert same_pixels(out, image)


def test_broken_profile_is_ignored():
    image = photo((32, 24))
    out = decode(render_one(encode(image, icc_profile=b"not a profile at all"), "", "png").data)
    assert same_pixels(out, image) and "icc_profile" not in out.info


def test_sixteen_bit_samples_are_scaled_to_eight():
    samples = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    out = decode(render_one(encode(Image.fromarray(samples)), "", "png").data)
    assert out.mode == "L"
    assert np.asarray(out).tolist() == [[0, 1, 128, 255]]


def test_palette_transparency_becomes_alpha():
    image = Image.new("P", (10, 10), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(0, (0, 0, 5, 5))
    out = decode(render_one(encode(image, transparency=0), "", "png").data)
    assert out.mode == "RGBA"
    assert out.getpixel((0, 0))[3] == 0 and out.getpixel((9, 9)) == (255, 0, 0, 255)


def test_bilevel_and_cmyk_sources():
    bilevel = Image.new("1", (16, 8), 1)
    assert decode(render_one(encode(bilevel), "", "png").data).mode == "L"
    cmyk = Image.new("CMYK", (16, 8), (0, 255, 255, 0))  # red
    out = decode(render_one(encode(cmyk, "JPEG"), "", "png").data)
    assert out.mode == "RGB" and out.getpixel((4, 4))[0] > 240


@pytest.mark.parametrize("data", [b"", b"hello", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_not_an_image(data):
    with pytest.raises(NotAnImage):
        render(data, parse_ops(""), "png", max_pixels=MAX_PIXELS)


def test_truncated_image():
    data = encode(photo((200, 150)), "PNG")
    with pytest.raises(NotAnImage):
        render(data[: len(data) // 2], parse_ops(""), "png", max_pixels=MAX_PIXELS)


def test_over_max_pixels_is_refused_from_the_header():
    bomb = png_header_only(50_000, 50_000)  # 2.5 gigapixels declared, a few bytes of data
    with pytest.raises(TooManyPixels, match="2500000000 pixels; the limit is 100000000"):
        render(bomb, parse_ops("resize:10x10"), "png", max_pixels=MAX_PIXELS)
    with pytest.raises(TooManyPixels):
        render(encode(photo((64, 48))), parse_ops(""), "png", max_pixels=64 * 48 - 1)


# 1605x1201 upright at 1/8 is a 201x151 frame that the picture fills 200.625x150.125 of: the
# padding is at the stored image's right and bottom, which orientation moves to other edges.
@pytest.mark.parametrize(
    "orientation, box",
    [
        (1, (0, 0, 200.625, 150.125)),
        (2, (0.375, 0, 201, 150.125)),  # stored right = upright left
        (3, (0.375, 0.875, 201, 151)),
        (4, (0, 0.875, 200.625, 151)),
        (5, (0, 0, 200.625, 150.125)),  # stored right = upright bottom, stored bottom = upright right
        (6, (0.375, 0, 201, 150.125)),
        (7, (0.375, 0.875, 201, 151)),
        (8, (0, 0.875, 200.625, 151)),
    ],
)
def test_a_jpeg_draft_says_which_part_of_the_upright_frame_the_picture_fills(orientation, box):
    source = open_source(oriented(photo((1605, 1201)), orientation, "JPEG"), max_pixels=MAX_PIXELS)
    frame, got = first_frame(source, (200, 150))
    assert frame.size == (201, 151)
    assert got == pytest.approx(box)


def test_no_box_when_the_picture_fills_the_frame():
    data = encode(photo((1600, 1200)), "JPEG")
    frame, box = first_frame(open_source(data, max_pixels=MAX_PIXELS), (200, 150))
    assert (frame.size, box) == ((200, 150), None)  # 1/8 exactly
    frame, box = first_frame(open_source(encode(photo((1605, 1201))), max_pixels=MAX_PIXELS), (200, 150))
    assert (frame.size, box) == ((1605, 1201), None)  # PNG: no draft
