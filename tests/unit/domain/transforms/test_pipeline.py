"""The three spellings of a pipeline, its limits, and running operations in order."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from aperture.domain.transforms import (
    InvalidOperation,
    Limits,
    Pipeline,
    parse_job_ops,
    parse_ops,
    parse_query,
    render,
)
from aperture.domain.transforms.blur import Blur, sigma_for
from aperture.domain.transforms.crop import Crop
from aperture.domain.transforms.resize import Resize
from aperture.domain.transforms.rotate import Rotate

from .helpers import MAX_PIXELS, decode, encode, photo, render_one, same_pixels

ISSUE_EXAMPLE = "crop:10,10,200,200|rotate:33|resize:50%|blur:2"


def test_the_issue_example_parses():
    pipeline = parse_ops(ISSUE_EXAMPLE)
    # blur:2 is a kernel size: OpenCV refuses even sizes, we round up to 3 (docs/transforms.md).
    blur = Blur(3, sigma_for(3))
    assert pipeline.ops == (Crop(10, 10, 200, 200), Rotate(33.0), Resize("percent", percent=50.0), blur)
    assert str(pipeline) == ISSUE_EXAMPLE.replace("blur:2", "blur:3")


def test_the_issue_example_matches_pillow_step_by_step():
    image = photo((320, 240))
    out = render_one(encode(image), ISSUE_EXAMPLE, "png")
    expected = image.crop((10, 10, 210, 210)).convert("RGBA").convert("RGBa")
    expected = expected.rotate(-33, Image.Resampling.BICUBIC, expand=True).convert("RGBA")
    expected = expected.resize(((expected.width + 1) // 2, (expected.height + 1) // 2), Image.Resampling.LANCZOS)
    expected = Blur(3, sigma_for(3)).apply(expected)  # its own reference is in test_blur.py
    assert (out.width, out.height) == expected.size
    assert same_pixels(decode(out.data), expected)


def test_operations_run_in_the_order_given():
    data = encode(photo((64, 48)))
    crop_then_rotate = decode(render_one(data, "crop:0,0,20,10|rotate:90").data)
    rotate_then_crop = decode(render_one(data, "rotate:90|crop:0,0,20,10").data)
    assert crop_then_rotate.size == (10, 20) and rotate_then_crop.size == (20, 10)


def test_job_and_query_spellings_give_the_same_pipeline():
    ops = parse_ops("resize:50%|split|blur:5|grayscale|quality:80")
    assert parse_job_ops(["resize=50", "split=true", "blur=5", "grayscale=1", "quality=80"]) == ops
    query = [("resize", "50%"), ("split", "1"), ("blur", "5"), ("grayscale", ""), ("quality", "80")]
    assert parse_query(query) == ops


def test_query_keeps_the_order_of_parameters():
    pipeline = parse_query({"resize": "512x512", "rotate": "90", "grayscale": "1", "quality": "80"})
    assert str(pipeline) == "resize:512x512|rotate:90|grayscale|quality:80"
    assert str(parse_query({"rotate": "90", "resize": "512x512"})) == "rotate:90|resize:512x512"


def test_query_ops_parameter_is_spliced_in_place_and_ignored_names_skipped():
    pipeline = parse_query(
        [("flop", "1"), ("ops", "crop:0,0,5,5|rotate:90"), ("key", "abc"), ("quality", "70")], ignore=["key"]
    )
    assert str(pipeline) == "flip:h|crop:0,0,5,5|rotate:90|quality:70"
    assert str(parse_query({"rotate": ["90", "90"]})) == "rotate:90|rotate:90"


def test_query_unknown_parameter_is_an_error():
    with pytest.raises(InvalidOperation, match="unknown operation 'sharpen'"):
        parse_query({"resize": "50", "sharpen": "2"})


def test_names_are_case_insensitive_and_whitespace_is_ignored():
    assert str(parse_ops("  RESIZE : 50% | Rotate:90 ")) == "resize:50%|rotate:90"
    assert str(parse_job_ops([" Blur = 3 "])) == "blur:3"


def test_empty_pipelines():
    for text in ("", "   ", None):
        assert parse_ops(text) == Pipeline()
    assert parse_job_ops([]) == Pipeline() == parse_query({})
    assert str(Pipeline()) == ""


@given(
    st.lists(
        st.sampled_from(
            [
                "crop:1,2,3,4",
                "rotate:12.5",
                "rotate:-90",
                "flip",
                "flop",
                "flip:hv",
                "resize:50%",
                "resize:10x20",
                "resize:x5",
                "resize:7x8!",
                "blur:5",
                "blur:0,1.5",
                "grayscale",
                "quadrant:br",
                "quality:55",
            ]
        ),
        max_size=20,
    )
)
def test_canonical_spelling_round_trips(items):
    pipeline = parse_ops("|".join(items))
    assert parse_ops(str(pipeline)) == pipeline
    assert parse_job_ops([item.replace(":", "=", 1) for item in str(pipeline).split("|") if item]) == pipeline


# ---------------------------------------------------------------- hostile input


def test_a_thousand_operations_is_rejected_with_the_count():
    with pytest.raises(InvalidOperation, match="1000 operations; the limit is 20"):
        parse_ops("|".join(["blur:1"] * 1000))
    with pytest.raises(InvalidOperation, match="1000 operations; the limit is 20"):
        parse_job_ops(["blur=1"] * 1000)
    with pytest.raises(InvalidOperation, match="the limit is 20"):
        parse_query([("flop", "1")] * 1000)
    with pytest.raises(InvalidOperation, match="the limit is 20"):
        parse_query(
            {
                "ops": "|".join(["flop"] * 15),
                "flip": "1",
                "blur": "1",
                "rotate": "1",
                "resize": "5",
                "quality": "5",
                "grayscale": "1",
            }
        )
    assert len(parse_ops("|".join(["flop"] * 20))) == 20
    assert len(parse_ops("|".join(["flop"] * 30), Limits(max_ops=30))) == 30


def test_overlong_text_is_rejected():
    with pytest.raises(InvalidOperation, match="characters"):
        parse_ops("blur:" + "1" * 5000)
    with pytest.raises(InvalidOperation, match="characters"):
        parse_job_ops(["blur=" + "1" * 5000])


@pytest.mark.parametrize(
    "text, reason",
    [
        ("sharpen:2", "unknown operation 'sharpen'"),
        ("resize:50%|explode", "unknown operation 'explode' \\(operation 2\\)"),
        ("resize:50%||blur:2", "operation 2 is empty"),
        ("resize=50", "not name:value"),
        ("rotate:1e309", "operation 1: rotate"),
        ("resize:0", "no pixels"),
        ("resize:100000x100000", "65500"),
        ("crop:-5,-5,10,10", "crop"),
        ("re size:50", "not name:value"),
        ("résumé:1", "not name:value"),
        ("blur:2|", "operation 2 is empty"),
    ],
)
def test_bad_pipelines_name_the_operation_and_the_reason(text, reason):
    with pytest.raises(InvalidOperation, match=reason):
        parse_ops(text)


@pytest.mark.parametrize(
    "items, reason",
    [
        ("resize=50", "must be a list"),
        ({"resize": 50}, "must be a list"),
        ([50], "must be a string"),
        (["resize:50"], "not name=value"),
        (["split=sometimes"], "split"),
        (["unknown=1"], "unknown operation"),
    ],
)
def test_bad_job_operations(items, reason):
    with pytest.raises(InvalidOperation, match=reason):
        parse_job_ops(items)


@given(st.text(max_size=60))
@settings(max_examples=300)
def test_any_text_parses_or_is_an_invalid_operation(text):
    for parse in (parse_ops, lambda t: parse_job_ops([t]), lambda t: parse_query({"resize": t, "crop": t})):
        try:
            parse(text)
        except InvalidOperation as exc:
            assert str(exc)


def test_parameter_errors_come_before_decoding():
    # A pipeline that cannot apply is refused from the header alone (the data below holds no pixels).
    from tests.support.images import png_header_only

    with pytest.raises(InvalidOperation, match="does not fit in the 5000x5000 image"):
        render(png_header_only(5000, 5000), parse_ops("crop:0,0,6000,10"), "png", max_pixels=MAX_PIXELS)
    with pytest.raises(InvalidOperation, match="unsupported output format"):
        render(b"not even an image", parse_ops(""), "svg", max_pixels=MAX_PIXELS)


def test_rendered_fields():
    [out] = render(encode(photo((64, 48))), parse_ops("resize:32x32"), "jpeg", max_pixels=MAX_PIXELS)
    assert (out.format, out.mime_type, out.extension, out.width, out.height, out.frames, out.suffix) == (
        "JPEG",
        "image/jpeg",
        "jpg",
        32,
        24,
        1,
        "",
    )
    assert decode(out.data).size == (32, 24)


OPERATION_TEXT = st.one_of(
    st.builds(
        lambda x, y, w, h: f"crop:{x},{y},{w},{h}",
        st.integers(0, 40),
        st.integers(0, 40),
        st.integers(1, 40),
        st.integers(1, 40),
    ),
    st.builds(lambda a: f"rotate:{a}", st.sampled_from([0, 90, 180, 270, -90, 33, 12.5, 359.9])),
    st.sampled_from(["flip", "flop", "flip:hv", "grayscale", "split", "quadrant:tl", "quadrant:br", "quality:40"]),
    st.builds(lambda w, h: f"resize:{w}x{h}", st.integers(1, 80), st.integers(1, 80)),
    st.builds(lambda w, h: f"resize:{w}x{h}!", st.integers(1, 80), st.integers(1, 80)),
    st.builds(lambda p: f"resize:{p}%", st.sampled_from([1, 10, 33.3, 50, 100, 150])),
    st.builds(lambda s: f"blur:{s}", st.sampled_from([0, 0.5, 3])),
)


@given(
    items=st.lists(OPERATION_TEXT, max_size=5),
    mode=st.sampled_from(["RGB", "RGBA", "L", "LA"]),
    fmt=st.sampled_from(["png", "jpg", "gif", "webp", "tiff", "bmp"]),
)
@settings(max_examples=120, deadline=None)
def test_rendered_sizes_are_the_planned_sizes(items, mode, fmt):
    text = "|".join(items)
    try:
        pipeline = parse_ops(text)
    except InvalidOperation:
        return  # two splits
    data = encode(photo((48, 36), mode))
    try:
        planned = pipeline.plan((48, 36))
    except InvalidOperation:
        with pytest.raises(InvalidOperation):
            render(data, pipeline, fmt, max_pixels=MAX_PIXELS)
        return
    outputs = render(data, pipeline, fmt, max_pixels=MAX_PIXELS)
    assert [(out.width, out.height) for out in outputs] == planned
    assert all(decode(out.data).size == (out.width, out.height) for out in outputs)
