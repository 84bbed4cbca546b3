import pytest

from aperture.domain.transforms import InvalidOperation, parse_job_ops, parse_ops, parse_query

from .helpers import decode, encode, photo, render_one, same_pixels


def test_matches_pillow_luma():
    image = photo((64, 48))
    out = decode(render_one(encode(image), "grayscale").data)
    assert same_pixels(out, image.convert("L"))


def test_keeps_alpha():
    image = photo((64, 48), "RGBA")
    out = decode(render_one(encode(image), "grayscale").data)
    assert same_pixels(out, image.convert("LA"))


def test_grey_images_are_unchanged():
    image = photo((64, 48), "L")
    assert same_pixels(decode(render_one(encode(image), "greyscale").data), image)


def test_flag_spellings():
    assert str(parse_ops("grayscale|grayscale:true|greyscale:1")) == "grayscale|grayscale|grayscale"
    assert len(parse_ops("grayscale:false|grayscale:0|grayscale:no|grayscale:off")) == 0
    assert str(parse_query({"grayscale": "1"})) == "grayscale"
    assert str(parse_query({"grayscale": ""})) == "grayscale"
    assert str(parse_job_ops(["grayscale=true", "grayscale"])) == "grayscale|grayscale"


@pytest.mark.parametrize("ops", ["grayscale:2", "grayscale:sepia"])
def test_bad_values_are_rejected(ops):
    with pytest.raises(InvalidOperation, match="grayscale"):
        parse_ops(ops)


def test_jpeg_output_is_single_channel():
    out = render_one(encode(photo((64, 48))), "grayscale", "jpg")
    assert decode(out.data).mode == "L"
