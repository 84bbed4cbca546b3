import pytest

from aperture.domain.transforms import InvalidOperation, parse_ops
from aperture.domain.transforms.crop import Crop

from .helpers import decode, encode, photo, render_one, same_pixels


def test_parses_x_y_width_height():
    assert parse_ops("crop:10,10,200,200").ops == (Crop(10, 10, 200, 200),)
    assert str(parse_ops(" crop : 1, 2 ,3,4 ")) == "crop:1,2,3,4"


def test_matches_pillow_crop():
    image = photo((64, 48))
    out = render_one(encode(image), "crop:5,7,20,30")
    assert (out.width, out.height) == (20, 30)
    assert same_pixels(decode(out.data), image.crop((5, 7, 25, 37)))


def test_box_touching_the_edges_is_allowed():
    image = photo((64, 48))
    out = render_one(encode(image), "crop:0,0,64,48")
    assert same_pixels(decode(out.data), image)
    assert render_one(encode(image), "crop:63,47,1,1").width == 1


@pytest.mark.parametrize(
    "ops, reason",
    [
        ("crop:-10,0,20,20", "0 or more"),
        ("crop:0,-1,20,20", "0 or more"),
        ("crop:0,0,0,20", "at least 1"),
        ("crop:0,0,20,-5", "at least 1"),
        ("crop:0,0,20", "four whole numbers"),
        ("crop:0,0,20,20,20", "four whole numbers"),
        ("crop:a,0,20,20", "whole number"),
        ("crop:0.5,0,20,20", "whole number"),
        ("crop:0,0,1e9,20", "whole number"),
        ("crop:0,0,999999999,999999999", "65500"),
        ("crop:99999999999999999999,0,1,1", "whole number"),
        ("crop", "needs a value"),
        ("crop:", "needs a value"),
    ],
)
def test_hostile_crops_are_rejected_when_parsed(ops, reason):
    with pytest.raises(InvalidOperation, match=reason) as caught:
        parse_ops(ops)
    assert "crop" in str(caught.value)


@pytest.mark.parametrize("ops", ["crop:0,0,65,48", "crop:60,0,5,5", "crop:64,0,1,1", "crop:0,0,1000,1000"])
def test_box_outside_the_image_is_rejected_with_the_image_size(ops):
    with pytest.raises(InvalidOperation, match="does not fit in the 64x48 image"):
        render_one(encode(photo((64, 48))), ops)


def test_crop_applies_to_the_image_at_that_step():
    # After a 50% resize the image is 32x24: a 30x20 box fits, a 40x20 one does not.
    data = encode(photo((64, 48)))
    assert render_one(data, "resize:50%|crop:2,2,30,20").width == 30
    with pytest.raises(InvalidOperation, match="32x24"):
        render_one(data, "resize:50%|crop:0,0,40,20")
