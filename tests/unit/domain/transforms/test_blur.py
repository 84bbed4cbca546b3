import pytest
from PIL import Image, ImageFilter

from aperture.domain.transforms import InvalidOperation, Limits, parse_job_ops, parse_ops

from .helpers import decode, encode, photo, render_one, same_pixels


@pytest.mark.parametrize("sigma", [0.5, 2, 7.25])
def test_matches_pillow_gaussian_blur(sigma):
    image = photo((64, 48))
    out = decode(render_one(encode(image), f"blur:{sigma}").data)
    assert same_pixels(out, image.filter(ImageFilter.GaussianBlur(sigma)))


def test_alpha_is_premultiplied_so_transparent_colour_does_not_bleed():
    image = Image.new("RGBA", (40, 40), (0, 255, 0, 0))  # invisible green
    image.paste((255, 0, 0, 255), (10, 10, 30, 30))
    out = decode(render_one(encode(image), "blur:3").data)
    expected = image.convert("RGBa").filter(ImageFilter.GaussianBlur(3)).convert("RGBA")
    assert same_pixels(out, expected)
    edge = out.getpixel((8, 20))
    assert 0 < edge[3] < 255 and edge[1] == 0  # fading red, no green fringe


def test_zero_is_no_blur():
    image = photo((64, 48))
    assert same_pixels(decode(render_one(encode(image), "blur:0").data), image)


def test_sigma_is_clamped():
    assert str(parse_ops("blur:500")) == "blur:50"
    assert str(parse_job_ops(["blur=5"])) == "blur:5"
    assert str(parse_ops("blur:30", Limits(max_blur=10))) == "blur:10"


@pytest.mark.parametrize("value", ["-1", "1e3", "nan", "inf", "soft", "", "2,3"])
def test_bad_sigma_is_rejected(value):
    with pytest.raises(InvalidOperation, match="blur"):
        parse_ops(f"blur:{value}")
