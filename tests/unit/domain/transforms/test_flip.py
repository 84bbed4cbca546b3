import pytest
from PIL import Image

from aperture.domain.transforms import InvalidOperation, parse_job_ops, parse_ops, parse_query

from .helpers import decode, encode, photo, render_one, same_pixels

FLIP_LR = Image.Transpose.FLIP_LEFT_RIGHT
FLIP_TB = Image.Transpose.FLIP_TOP_BOTTOM


@pytest.mark.parametrize(
    "ops, transpose",
    [
        ("flip", FLIP_TB),
        ("flip:v", FLIP_TB),
        ("flip:vertical", FLIP_TB),
        ("flip:true", FLIP_TB),
        ("flop", FLIP_LR),
        ("flip:h", FLIP_LR),
        ("flip:horizontal", FLIP_LR),
        ("flip:hv", Image.Transpose.ROTATE_180),
        ("flip:both", Image.Transpose.ROTATE_180),
    ],
)
def test_mirrors_like_pillow(ops, transpose):
    image = photo((64, 48), "RGBA")
    assert same_pixels(decode(render_one(encode(image), ops).data), image.transpose(transpose))


def test_canonical_spelling():
    assert str(parse_ops("flip|flop|flip:HV|flop:true")) == "flip:v|flip:h|flip:hv|flip:h"


def test_false_flags_are_no_operation():
    assert len(parse_ops("flip:false|flop:0")) == 0
    assert len(parse_job_ops(["flop=false"])) == 0
    assert str(parse_query({"flip": "h", "flop": "1"})) == "flip:h|flip:h"


def test_flip_twice_is_identity():
    image = photo((31, 17))
    assert same_pixels(decode(render_one(encode(image), "flip|flip|flop|flop").data), image)


@pytest.mark.parametrize("ops", ["flip:diagonal", "flip:2", "flop:h", "flop:maybe"])
def test_bad_directions_are_rejected(ops):
    with pytest.raises(InvalidOperation, match="flip|flop"):
        parse_ops(ops)
