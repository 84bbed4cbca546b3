import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from aperture.domain.transforms import InvalidOperation, parse_ops
from aperture.domain.transforms.rotate import Rotate

from .helpers import decode, encode, photo, pixels, render_one, same_pixels


def reference(image: Image.Image, clockwise: float) -> Image.Image:
    """Pillow's rotate, clockwise, canvas expanded, in premultiplied alpha with transparent corners."""
    with_alpha = image.convert("RGBA" if image.mode in ("RGB", "RGBA") else "LA")
    premultiplied = with_alpha.convert("RGBa" if with_alpha.mode == "RGBA" else "La")
    return premultiplied.rotate(-clockwise, Image.Resampling.BICUBIC, expand=True).convert(with_alpha.mode)


@pytest.mark.parametrize(
    "ops, transpose",
    [
        ("rotate:90", Image.Transpose.ROTATE_270),
        ("rotate:-270", Image.Transpose.ROTATE_270),
        ("rotate:180", Image.Transpose.ROTATE_180),
        ("rotate:270", Image.Transpose.ROTATE_90),
        ("rotate:-90", Image.Transpose.ROTATE_90),
    ],
)
def test_right_angles_are_exact_clockwise_transposes(ops, transpose):
    image = photo((64, 48))
    out = decode(render_one(encode(image), ops).data)
    assert same_pixels(out, image.transpose(transpose))


@pytest.mark.parametrize("ops", ["rotate:0", "rotate:360", "rotate:-360"])
def test_full_turns_change_nothing(ops):
    image = photo((64, 48))
    assert same_pixels(decode(render_one(encode(image), ops).data), image)


@pytest.mark.parametrize("angle", [33, -12.5, 45, 137.25, 359.5])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_any_angle_matches_pillow_with_the_canvas_expanded(angle, mode):
    image = photo((64, 48), mode)
    out = decode(render_one(encode(image), f"rotate:{angle}").data)
    expected = reference(image, angle)
    assert out.size == expected.size
    assert out.size[0] > 64 or out.size[1] > 48
    assert same_pixels(out, expected)


def test_uncovered_corners_are_transparent_in_png_and_white_in_jpeg():
    image = Image.new("RGB", (80, 60), (200, 30, 30))
    png = decode(render_one(encode(image), "rotate:30").data)
    assert png.mode == "RGBA" and png.getpixel((0, 0))[3] == 0
    jpeg = decode(render_one(encode(image), "rotate:30", "jpg").data)
    assert jpeg.mode == "RGB" and min(jpeg.getpixel((0, 0))) > 245
    centre = jpeg.getpixel((jpeg.width // 2, jpeg.height // 2))
    assert abs(centre[0] - 200) < 8 and centre[1] < 45


@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    angle=st.floats(-360, 360, allow_nan=False).map(lambda a: round(a, 3)),
)
@settings(max_examples=150, deadline=None)
def test_planned_size_is_the_size_pillow_makes(width, height, angle):
    op = parse_ops(f"rotate:{angle}").ops[0]
    actual = op.apply(Image.new("RGB", (width, height))).size
    assert op.output_size((width, height)) == actual


def test_angles_are_normalized_to_clockwise_0_to_360():
    assert parse_ops("rotate:-90").ops == (Rotate(270.0),)
    assert str(parse_ops("rotate:+33.50")) == "rotate:33.5"
    assert str(parse_ops("rotate:-0.25")) == "rotate:359.75"


@pytest.mark.parametrize(
    "value", ["1e309", "1e3", "inf", "-inf", "nan", "NaN", "ninety", "", "90deg", "0x10", "361", "-360.5", "9" * 400]
)
def test_hostile_angles_are_rejected(value):
    with pytest.raises(InvalidOperation, match="rotate"):
        parse_ops(f"rotate:{value}")


def test_rotation_that_would_exceed_the_pixel_limit_is_rejected_before_decoding():
    from aperture.domain.transforms import Limits, Pipeline

    limits = Limits(max_output_pixels=64 * 48)
    pipeline = Pipeline(parse_ops("rotate:45").ops, limits)
    from aperture.domain.transforms import render

    with pytest.raises(InvalidOperation, match=r"rotate:45: output would be \d+ pixels"):
        render(encode(photo((64, 48))), pipeline, "png", max_pixels=10**6)


def test_expanded_size_formula():
    width, height = Rotate(30).output_size((100, 50))
    expected_w = 100 * math.cos(math.radians(30)) + 50 * math.sin(math.radians(30))
    assert abs(width - expected_w) <= 2
    assert pixels(reference(photo((10, 10)), 30)).shape[:2] == Rotate(30).output_size((10, 10))[::-1]
