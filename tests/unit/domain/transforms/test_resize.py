import pytest
from PIL import Image, ImageOps, JpegImagePlugin

from aperture.domain.transforms import InvalidOperation, Limits, Pipeline, parse_job_ops, parse_ops, parse_query, render
from aperture.domain.transforms.resize import Resize

from .helpers import MAX_PIXELS, decode, encode, photo, psnr, render_one, same_pixels
from .test_source import oriented


@pytest.mark.parametrize(
    "ops, size",
    [
        ("resize:100x100", (100, 75)),  # fit, width binds
        ("resize:100x50", (67, 50)),  # fit, height binds
        ("resize:100x", (100, 75)),
        ("resize:x60", (80, 60)),
        ("resize:100x100!", (100, 100)),  # exact
        ("resize:50%", (320, 240)),
        ("resize:50", (320, 240)),  # a bare number is a percentage (S9: resize=50)
        ("resize:12.5%", (80, 60)),
        ("resize:0.01%", (1, 1)),  # never below one pixel
        ("resize:1280x1280", (640, 480)),  # fitting never enlarges
        ("resize:1280x", (640, 480)),
        ("resize:x960", (640, 480)),
        ("resize:640x1000", (640, 480)),  # already fits: unchanged
        ("resize:1280x1280!", (1280, 1280)),  # an exact size enlarges, as asked
        ("resize:150%", (960, 720)),
    ],
)
def test_sizes(ops, size):
    assert parse_ops(ops).plan((640, 480)) == [size]


@pytest.mark.parametrize("ops", ["resize:100x100", "resize:50%", "resize:333x100!", "resize:150%"])
def test_matches_pillow_lanczos_for_lossless_sources(ops):
    image = photo((640, 480), "RGBA")
    out = decode(render_one(encode(image), ops).data)
    [size] = parse_ops(ops).plan(image.size)
    assert same_pixels(out, image.resize(size, Image.Resampling.LANCZOS))


def test_spellings_agree():
    assert parse_ops("resize:50%") == parse_job_ops(["resize=50"]) == parse_query({"resize": "50%"})
    assert parse_ops("resize:512X512").ops == (Resize("fit", 512, 512),)
    assert str(parse_ops("resize: 512 x 384 !")) == "resize:512x384!"
    assert str(parse_ops("resize:x10|resize:10x|resize:25.50")) == "resize:x10|resize:10x|resize:25.5%"


@pytest.mark.parametrize(
    "ops, reason",
    [
        ("resize:0", "0% would leave no pixels"),
        ("resize:0%", "0% would leave no pixels"),
        ("resize:-50%", "above 0"),
        ("resize:0x0", "at least 1"),
        ("resize:0x100", "at least 1"),
        ("resize:-5x10", "at least 1"),
        ("resize:x", "width, a height or both"),
        ("resize:100000x100000", "65500"),
        ("resize:100000x100000!", r"output would be 10000000000 pixels"),
        ("resize:20000x20000!", r"output would be 400000000 pixels \(20000x20000\); the limit is 100000000"),
        ("resize:70000x", "65500"),
        ("resize:100x!", "needs both"),
        ("resize:10x10x10", "expected"),
        ("resize:1e309%", "plain decimal"),
        ("resize:inf", "plain decimal"),
        ("resize:abc", "plain decimal"),
        ("resize:big", "plain decimal"),
        ("resize", "needs a value"),
    ],
)
def test_hostile_sizes_are_rejected_when_parsed(ops, reason):
    with pytest.raises(InvalidOperation, match=reason):
        parse_ops(ops)


@pytest.mark.parametrize("ops", ["resize:100000%", "resize:300%", "rotate:90|resize:300%"])
def test_sizes_over_the_limit_for_this_image_are_rejected_before_decoding(ops):
    with pytest.raises(InvalidOperation, match=r"output would be \d+ pixels .*; the limit is 100000000"):
        parse_ops(ops).plan((4000, 3000))


@pytest.mark.parametrize("ops", ["resize:20000x20000", "resize:30000x", "resize:x60000", "resize:4000x3000"])
def test_fit_boxes_larger_than_the_image_leave_its_size(ops):
    assert parse_ops(ops).plan((4000, 3000)) == [(4000, 3000)]


def test_limits_are_configurable():
    limits = Limits(max_output_pixels=10_000)
    with pytest.raises(InvalidOperation, match="the limit is 10000"):
        parse_ops("resize:101x100!", limits)
    pipeline = parse_ops("resize:200%", limits)
    with pytest.raises(InvalidOperation, match="the limit is 10000"):
        render(encode(photo((64, 48))), pipeline, "png", max_pixels=MAX_PIXELS)


# ---------------------------------------------------------------- JPEG draft decoding


@pytest.fixture
def draft_calls(monkeypatch):
    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        calls.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return calls


def test_a_leading_jpeg_downscale_decodes_at_reduced_scale(draft_calls):
    image = photo((1600, 1200))
    data = encode(image, "JPEG", quality=95)
    out = render_one(data, "resize:300x300", "png")
    assert (out.width, out.height) == (300, 225)
    assert draft_calls == [((300, 225), (400, 300))]  # libjpeg decoded at 1/4 scale, not below the target
    reference = decode(data).resize((300, 225), Image.Resampling.LANCZOS)
    assert psnr(decode(out.data), reference) > 35


@pytest.mark.parametrize(
    "ops", ["crop:0,0,800,800|resize:100x100", "resize:200%", "resize:1600x", "resize:1600x1!", "rotate:90"]
)
def test_no_draft_unless_the_first_operation_is_a_downscale(draft_calls, ops):
    render_one(encode(photo((1600, 1200)), "JPEG"), ops)
    assert draft_calls == []


def test_percent_and_exact_resizes_use_the_full_size_plan_after_draft(draft_calls):
    data = encode(photo((1600, 1200)), "JPEG", quality=95)
    percent, exact = render_one(data, "resize:10%"), render_one(data, "resize:300x77!")
    assert (percent.width, percent.height) == (160, 120)
    assert (exact.width, exact.height) == (300, 77)
    assert decode(exact.data).size == (300, 77)
    assert [size for size, _ in draft_calls] == [(160, 120), (300, 77)]


def test_draft_accounts_for_exif_orientation(draft_calls):
    upright = photo((1200, 1600))  # portrait, stored landscape with orientation 6
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", quality=95, exif=exif)
    out = render_one(data, "resize:150x150")
    assert (out.width, out.height) == (113, 150)
    assert draft_calls[0][0] == (150, 113)  # asked in the stored (landscape) orientation
    reference = upright.resize((113, 150), Image.Resampling.LANCZOS)
    assert psnr(decode(out.data), reference) > 30


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_rounded_up_draft_frame_is_resized_from_the_part_the_picture_fills(orientation):
    # 1605x1201 at 1/4 decodes to 402x301, of which the picture fills 401.25x300.25: resizing
    # the whole frame would misalign the far edges (~36 dB here), whichever edges they are once upright.
    data = oriented(photo((1605, 1201), seed=3), orientation, "JPEG")
    out = decode(render_one(data, "resize:300x300").data)
    assert out.size == (300, 224)
    reference = ImageOps.exif_transpose(decode(data)).resize(out.size, Image.Resampling.LANCZOS)
    assert psnr(out, reference) > 45


def test_draft_result_is_close_to_the_full_decode_for_a_large_downscale():
    image = photo((2400, 1800), seed=3)
    data = encode(image, "JPEG", quality=92)
    out = decode(render_one(data, "resize:100x100").data)
    reference = decode(data).resize(out.size, Image.Resampling.LANCZOS)
    assert psnr(out, reference) > 33


def test_empty_pipeline_keeps_the_size():
    data = encode(photo((64, 48)), "JPEG")
    out = render(data, Pipeline(), None, max_pixels=MAX_PIXELS)[0]
    assert (out.format, out.width, out.height) == ("JPEG", 64, 48)
