"""The render budget: output pixels and estimated memory, decided from the header and the plan alone."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from aperture.domain.imaging.pixels import NotAnImage
from aperture.domain.transforms import (
    InvalidOperation,
    Limits,
    budget,
    check_render,
    output_format,
    parse_job_ops,
    parse_ops,
    render,
)

from .helpers import MAX_PIXELS, encode, photo

ISSUE_OPS = "resize:10000x10000!"


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Every pixel decode (`ImageFile.load`, which `convert`, `seek` + `convert` and `load` all reach)."""
    calls: list[str] = []
    original = ImageFile.ImageFile.load

    def counted(self):
        calls.append(type(self).__name__)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    return calls


def png_with_corrupt_pixels(size: tuple[int, int]) -> bytes:
    """A PNG whose header (IHDR) is valid and whose pixel data (IDAT) is garbage: decoding it fails."""
    width, height = size

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"\xde\xad" * 8) + chunk(b"IEND", b"")


def gif(frames: int, size: tuple[int, int] = (16, 16)) -> bytes:
    images = [Image.new("P", size, index % 4) for index in range(frames)]
    for image in images:
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 744)
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=50, loop=0)
    return buffer.getvalue()


def refusal(data: bytes, ops: str, fmt: str, limits: Limits | None = None) -> str:
    with pytest.raises(InvalidOperation) as error:
        render(data, parse_ops(ops), fmt, max_pixels=MAX_PIXELS, limits=limits)
    return str(error.value)


def estimate(size, mode, ops, fmt, frames=1, animated=False) -> int:
    pipeline = parse_ops(ops)
    steps = pipeline.steps(size)
    return budget.estimate(size, mode, steps, pipeline.plan(size), fmt, frames=frames, animated=animated)


# ---------------------------------------------------------------- the issue's case


def test_the_issue_case_is_a_400_with_the_reason(decodes):
    source = encode(Image.new("RGB", (8, 8), "red"))

    reason = refusal(source, ISSUE_OPS, "gif")

    assert "the render would need about" in reason
    assert "8x8 source, gif output 10000x10000" in reason
    assert "the limit is 1024 MiB" in reason
    assert decodes == []


def test_the_refusal_needs_no_pixels_a_source_with_corrupt_pixel_data_is_refused_alike(decodes):
    source = png_with_corrupt_pixels((8, 8))

    reason = refusal(source, ISSUE_OPS, "gif")

    assert "the render would need about" in reason
    assert decodes == []


def test_a_corrupt_source_within_the_budget_is_decoded_and_fails_as_a_bad_image():
    from aperture.domain.imaging.pixels import NotAnImage

    with pytest.raises(NotAnImage):
        render(png_with_corrupt_pixels((8, 8)), parse_ops("resize:16x16!"), "gif", max_pixels=MAX_PIXELS)


def test_the_budget_comes_from_the_limits_passed_to_render_not_those_the_pipeline_was_parsed_with(decodes):
    source = encode(photo((64, 48)))
    pipeline = parse_ops("resize:200%")  # DEFAULT_LIMITS: 1 GiB
    needed = estimate((64, 48), "RGB", "resize:200%", "PNG")

    with pytest.raises(InvalidOperation, match=r"the limit is 1 MiB"):
        render(source, pipeline, "png", max_pixels=MAX_PIXELS, limits=Limits(max_render_bytes=needed - 1))

    assert decodes == []
    [out] = render(source, pipeline, "png", max_pixels=MAX_PIXELS, limits=Limits(max_render_bytes=needed))
    assert (out.width, out.height) == (128, 96)


def test_output_pixels_are_capped_by_the_limits_passed_to_render(decodes):
    source = png_with_corrupt_pixels((100, 100))

    reason = refusal(source, "resize:101x100!", "png", Limits(max_output_pixels=10_000))

    assert reason == "resize:101x100!: output would be 10100 pixels (101x100); the limit is 10000"
    assert decodes == []


# ---------------------------------------------------------------- generated hostile inputs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    width=st.integers(1, 64),
    height=st.integers(1, 64),
    factor=st.integers(20, 5000),
    fmt=st.sampled_from(["png", "gif", "webp", "jpeg", "tiff", "bmp"]),
    extra=st.sampled_from(["", "|blur:5", "|rotate:33", "|grayscale", "|rotate:90"]),
)
def test_generated_enlargements_over_the_budget_are_refused_before_decoding(decodes, width, height, factor, fmt, extra):
    ops = f"resize:{factor}%{extra}"
    pipeline = parse_ops(ops, Limits(max_output_pixels=10**12, max_dimension=10**7))
    steps = pipeline.steps((width, height))
    outputs = pipeline.plan((width, height))
    limits = Limits(max_output_pixels=10**12, max_dimension=10**7, max_render_bytes=64 << 20)
    needed = budget.estimate((width, height), "RGB", steps, outputs, fmt.upper().replace("JPEG", "JPEG"))
    source = png_with_corrupt_pixels((width, height))  # decoding it would fail: a 400 proves it was not
    decodes.clear()

    if needed > limits.max_render_bytes and all(max(size) <= 16383 for size in outputs):
        with pytest.raises(InvalidOperation, match="the render would need about"):
            render(source, pipeline, fmt, max_pixels=MAX_PIXELS, limits=limits)
        assert decodes == []


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "WEBP", "JPEG", "TIFF", "BMP"])
def test_the_estimate_grows_with_the_output_and_bounds_the_issue_case_above_a_gigabyte(fmt):
    small = estimate((8, 8), "RGB", "resize:1000x1000!", fmt)
    large = estimate((8, 8), "RGB", ISSUE_OPS, fmt)

    assert small < large
    assert large >= 100_000_000 * (budget.WORKING_BYTES + budget.ENCODER_BYTES[fmt])


def test_a_full_size_conversion_of_the_largest_accepted_upload_stays_within_the_default_budget():
    # docs/deployment.md "Sizing": a 100 MP JPEG as a full-size PNG must keep converting.
    assert estimate((11547, 8660), "RGB", "", "PNG") <= Limits().max_render_bytes
    assert estimate((11547, 8660), "RGB", "resize:50%", "JPEG") <= Limits().max_render_bytes


def test_a_12_mp_photo_rotated_and_blurred_stays_within_the_default_budget():
    # Blur works in strips of rows: its float planes no longer scale with the 24 MP rotated canvas.
    for fmt in ("JPEG", "PNG", "WEBP"):
        assert estimate((4000, 3000), "RGB", "rotate:33|blur:5", fmt) <= Limits().max_render_bytes


@pytest.mark.parametrize(
    ("mode", "ops", "alpha"),
    [("RGBA", "", True), ("LA", "resize:50%", True), ("P", "", True), ("RGB", "rotate:33", True),
     ("RGB", "", False), ("RGB", "rotate:90", False), ("L", "blur:5", False)],
)  # fmt: skip
def test_webp_is_budgeted_with_its_alpha_encoder_exactly_when_the_output_may_have_alpha(monkeypatch, mode, ops, alpha):
    size = (2000, 1500)
    budgeted = estimate(size, mode, ops, "WEBP")
    monkeypatch.setitem(budget.ALPHA_ENCODER_BYTES, "WEBP", budget.ENCODER_BYTES["WEBP"])

    assert (estimate(size, mode, ops, "WEBP") < budgeted) is alpha


@pytest.mark.parametrize(
    ("size", "ops", "fmt"),
    [((8000, 8000), "blur:301", "png"), ((8, 8), ISSUE_OPS, "gif"), ((3000, 2000), "resize:50%", "webp")],
)
def test_check_render_refuses_from_a_records_header_exactly_what_render_refuses(size, ops, fmt):
    pipeline = parse_ops(ops)
    output = output_format(fmt)
    try:
        render(png_with_corrupt_pixels(size), pipeline, fmt, max_pixels=MAX_PIXELS)
        refused_by_render = None
    except InvalidOperation as error:
        refused_by_render = str(error)
    except NotAnImage:  # the corrupt pixels: render got past its checks and decoded
        refused_by_render = None

    try:
        check_render(pipeline, size, "RGB", output, "PNG", 1)
        refused_by_check = None
    except InvalidOperation as error:
        refused_by_check = str(error)

    assert refused_by_check == refused_by_render
    assert (refused_by_check is None) == (size == (3000, 2000))


def test_check_render_counts_an_animations_frames_only_for_animatable_sources():
    pipeline = parse_ops("resize:2000x2000!")
    gif = output_format("gif")

    with pytest.raises(InvalidOperation, match="over its 200 frames"):
        check_render(pipeline, (100, 100), "P", gif, "GIF", 200)
    check_render(pipeline, (100, 100), "RGB", output_format("jpeg"), "GIF", 200)  # a still output: one frame
    check_render(pipeline, (100, 100), "RGB", gif, "TIFF", 200)  # TIFF pages are not animation


def test_job_operations_are_budgeted_alike(decodes):
    pipeline = parse_job_ops(["resize=100", "split=true", "blur=301"])
    source = png_with_corrupt_pixels((8000, 8000))

    with pytest.raises(InvalidOperation, match="the render would need about"):
        render(source, pipeline, "png", max_pixels=MAX_PIXELS, limits=pipeline.limits)

    assert decodes == []


# ---------------------------------------------------------------- animations


def test_animations_are_budgeted_per_frame_times_the_frame_count(decodes):
    frames = 40
    source = gif(frames)
    ops = "resize:2000x2000!"
    still = estimate((16, 16), "P", ops, "GIF")
    animated = estimate((16, 16), "P", ops, "GIF", frames=frames, animated=True)
    limits = Limits(max_render_bytes=(still + animated) // 2)

    reason = refusal(source, ops, "gif", limits)

    assert animated > frames * 2000 * 2000 * budget.WORKING_BYTES
    assert f"gif output 2000x2000 over {frames} frames" in reason
    assert decodes == []
    # The same pipeline to a still format renders the first frame only: within the budget.
    [out] = render(source, parse_ops(ops), "png", max_pixels=MAX_PIXELS, limits=limits)
    assert (out.width, out.height, out.frames) == (2000, 2000, 1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.integers(2, 12), side=st.integers(4, 32), scale=st.integers(2, 60))
def test_generated_animations_over_the_budget_are_refused_before_decoding(decodes, frames, side, scale):
    source = gif(frames, (side, side))
    ops = f"resize:{scale * 100}%"
    needed = estimate((side, side), "P", ops, "WEBP", frames=frames, animated=True)
    decodes.clear()

    reason = refusal(source, ops, "webp", Limits(max_render_bytes=needed - 1))

    assert f"over {frames} frames" in reason
    assert decodes == []


# ---------------------------------------------------------------- never enlarging unless asked


@pytest.mark.parametrize(
    "ops, size",
    [
        ("resize:10000x10000", (8, 6)),  # a fit box never enlarges
        ("resize:10000x", (8, 6)),
        ("resize:x10000", (8, 6)),
        ("resize:16x12!", (16, 12)),  # an exact size does, as asked
        ("resize:200%", (16, 12)),  # so does a percentage over 100
        ("resize:4x", (4, 3)),  # shrinking is unchanged
    ],
)
def test_enlarging_only_when_asked(ops, size):
    [out] = render(encode(photo((8, 6))), parse_ops(ops), "png", max_pixels=MAX_PIXELS)

    assert (out.width, out.height) == size


def test_a_fit_box_on_a_huge_source_is_not_refused_for_the_box_size(decodes):
    # Before, resize:60000x60000 of a 2x1 image planned a 60000x30000 (1.8 GP) image.
    reason = refusal(png_with_corrupt_pixels((2, 1)), "resize:60000x60000|crop:0,0,3,1", "png")

    assert "does not fit in the 2x1 image" in reason
    assert decodes == []
