import pytest

from aperture.domain.transforms import InvalidOperation, parse_job_ops, parse_ops, render

from .helpers import MAX_PIXELS, decode, encode, photo, render_one, same_pixels

BOXES = {
    "-top-left": (0, 0, 32, 24),
    "-top-right": (32, 0, 64, 24),
    "-bottom-left": (0, 24, 32, 48),
    "-bottom-right": (32, 24, 64, 48),
}


def test_split_makes_four_outputs_in_reading_order():
    image = photo((64, 48))
    outputs = render(encode(image), parse_job_ops(["split=true"]), "png", max_pixels=MAX_PIXELS)
    assert [out.suffix for out in outputs] == list(BOXES)
    for out in outputs:
        assert same_pixels(decode(out.data), image.crop(BOXES[out.suffix]))


def test_odd_sizes_give_the_odd_pixel_to_the_right_and_bottom():
    outputs = render(encode(photo((5, 3))), parse_ops("split"), "png", max_pixels=MAX_PIXELS)
    assert [(out.width, out.height) for out in outputs] == [(2, 1), (3, 1), (2, 2), (3, 2)]


def test_later_operations_apply_to_each_quadrant():
    image = photo((64, 48))
    pipeline = parse_job_ops(["resize=50", "split=true", "blur=5", "grayscale=true"])
    outputs = render(encode(image), pipeline, "jpg", max_pixels=MAX_PIXELS)
    assert len(outputs) == 4
    assert {(out.width, out.height, out.mime_type) for out in outputs} == {(16, 12, "image/jpeg")}
    assert all(decode(out.data).mode == "L" for out in outputs)


@pytest.mark.parametrize(
    "ops, suffix",
    [
        ("quadrant:tl", "-top-left"),
        ("quadrant:br", "-bottom-right"),
        ("split:top-right", "-top-right"),
        ("quadrant:BottomLeft", "-bottom-left"),
    ],
)
def test_one_quadrant(ops, suffix):
    image = photo((64, 48))
    out = render_one(encode(image), ops)
    assert out.suffix == ""
    assert same_pixels(decode(out.data), image.crop(BOXES[suffix]))


def test_canonical_spelling_and_outputs():
    pipeline = parse_ops("split:true|quadrant:top-left")
    assert str(pipeline) == "split|quadrant:tl"
    assert pipeline.splits and pipeline.suffixes == tuple(BOXES)
    assert not parse_ops("quadrant:tl").splits
    assert len(parse_job_ops(["split=false"])) == 0


def test_split_only_once():
    with pytest.raises(InvalidOperation, match="only once"):
        parse_job_ops(["split=true", "resize=50", "split=true"])


@pytest.mark.parametrize("ops", ["quadrant", "quadrant:centre", "quadrant:5", "split:maybe", "quadrant:true"])
def test_bad_quadrants_are_rejected(ops):
    with pytest.raises(InvalidOperation, match="quadrant|split"):
        parse_ops(ops)


@pytest.mark.parametrize("size", [(1, 1), (1, 10), (10, 1)])
def test_images_too_small_to_split_are_rejected(size):
    with pytest.raises(InvalidOperation, match=f"at least 2x2 pixels, this one is {size[0]}x{size[1]}"):
        render_one(encode(photo(size)), "split")
