"""blur:K[,SIGMA] — OpenCV's GaussianBlur, checked against an independent reference.

The reference is scipy.ndimage.correlate1d along each axis with mode="mirror"
(OpenCV's BORDER_REFLECT_101) and the sampled Gaussian, with OpenCV's sigma
for a kernel size when none is given.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from aperture.domain.transforms import InvalidOperation, Limits, blur, parse_job_ops, parse_ops, render

from .helpers import MAX_PIXELS, decode, encode, photo, render_one, same_pixels


def opencv_sigma(kernel: int) -> float:
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


def reference_blur(image: Image.Image, kernel: int, sigma: float | None = None) -> np.ndarray:
    """The image's bands blurred with a separable sampled Gaussian and reflect-101 borders."""
    sigma = opencv_sigma(kernel) if sigma is None else sigma
    offsets = np.arange(kernel) - kernel // 2
    weights = np.exp(-(offsets**2) / (2.0 * sigma**2))
    weights /= weights.sum()
    pixels = np.asarray(image).astype(np.float64)
    for axis in (0, 1):
        pixels = ndimage.correlate1d(pixels, weights, axis=axis, mode="mirror")
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def differs_by_at_most_one_level(image: Image.Image, expected: np.ndarray) -> bool:
    actual = np.asarray(image).astype(np.int16)
    return actual.shape == expected.shape and int(np.abs(actual - expected.astype(np.int16)).max()) <= 1


def blurred(image: Image.Image, ops: str) -> Image.Image:
    return decode(render_one(encode(image), ops).data)


def only(ops: str, limits: Limits | None = None):
    pipeline = parse_ops(ops) if limits is None else parse_ops(ops, limits)
    [op] = pipeline.ops
    return op


# -- the reference -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("kernel", [3, 5, 9])
def test_matches_opencvs_gaussian_blur_for_a_kernel_size(kernel, mode):
    image = photo((64, 48), mode)

    out = blurred(image, f"blur:{kernel}")

    assert differs_by_at_most_one_level(out, reference_blur(image, kernel))


@pytest.mark.parametrize(("kernel", "sigma"), [(5, 2), (7, 3), (9, 0.8), (3, 0.5), (15, 1.25)])
def test_matches_opencvs_gaussian_blur_for_a_kernel_size_and_sigma(kernel, sigma):
    image = photo((64, 48))

    out = blurred(image, f"blur:{kernel},{sigma}")

    assert differs_by_at_most_one_level(out, reference_blur(image, kernel, sigma))


def test_the_job_grammar_means_the_same_blur():
    image = photo((40, 30))

    [out] = render(encode(image), parse_job_ops(["blur=5"]), "png", max_pixels=MAX_PIXELS)

    assert differs_by_at_most_one_level(decode(out.data), reference_blur(image, 5))


def test_blurs_at_all():
    image = photo((64, 48))

    assert not same_pixels(blurred(image, "blur:5"), image)


# -- kernel sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", [2, 4, 8])
def test_an_even_kernel_size_is_the_next_odd_one(kernel):
    image = photo((64, 48))

    assert str(parse_ops(f"blur:{kernel}")) == f"blur:{kernel + 1}"
    assert same_pixels(blurred(image, f"blur:{kernel}"), blurred(image, f"blur:{kernel + 1}"))


@pytest.mark.parametrize("ops", ["blur:0", "blur:1", "blur:0,0", "blur:1,3"])
def test_kernel_zero_alone_and_kernel_one_are_no_blur(ops):
    image = photo((64, 48))

    assert same_pixels(blurred(image, ops), image)


@pytest.mark.parametrize("sigma", [0.1, 0.25, 0.5, 1, 1.5, 2, 3.3])
def test_kernel_zero_derives_the_kernel_from_sigma_as_opencv_does(sigma):
    expected_kernel = int(np.rint(6 * sigma + 1)) | 1
    image = photo((64, 48))

    op = only(f"blur:0,{sigma}")
    out = blurred(image, f"blur:0,{sigma}")

    assert (op.kernel, op.sigma) == (expected_kernel, sigma)
    assert differs_by_at_most_one_level(out, reference_blur(image, expected_kernel, sigma))


def test_the_kernel_is_clamped_to_the_limit():
    assert str(parse_ops("blur:500")) == "blur:301"
    assert str(parse_ops("blur:999999999")) == "blur:301"
    assert str(parse_ops("blur:0,100")) == "blur:301,100"
    assert str(parse_ops("blur:30", Limits(max_blur=11))) == "blur:11"
    assert str(parse_job_ops(["blur=500"])) == "blur:301"


def test_the_kernel_never_exceeds_an_even_limit():
    assert only("blur:30", Limits(max_blur=10)).kernel <= 10


# -- canonical spelling --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ops", "canonical"),
    [
        ("blur:5", "blur:5"),
        ("blur:5,2", "blur:5,2"),
        ("blur:5,1.1", "blur:5"),  # OpenCV's own sigma for K = 5
        ("blur: 7 , 2.50 ", "blur:7,2.5"),
        ("blur:0,2", "blur:13,2"),
        ("blur:4", "blur:5"),
        ("blur:0", "blur:1"),
    ],
)
def test_canonical_spelling(ops, canonical):
    assert str(parse_ops(ops)) == canonical
    assert parse_ops(canonical) == parse_ops(ops)


def test_the_default_sigma_is_opencvs_for_the_kernel():
    assert only("blur:9").sigma == pytest.approx(opencv_sigma(9))


# -- alpha ---------------------------------------------------------------------------------------


def test_alpha_is_premultiplied_so_transparent_colour_does_not_bleed():
    image = Image.new("RGBA", (40, 40), (0, 255, 0, 0))  # invisible green
    image.paste((255, 0, 0, 255), (10, 10, 30, 30))

    out = blurred(image, "blur:7")

    rgba = np.asarray(out).astype(np.int16)
    visible = rgba[..., 3] > 0
    assert differs_by_at_most_one_level(out.getchannel("A"), reference_blur(image.getchannel("A"), 7))
    assert 0 < out.getpixel((8, 20))[3] < 255  # the red square's edge fades out...
    assert (rgba[visible][:, 0] >= 254).all()  # ...still red
    assert (rgba[..., 1] == 0).all()  # and no green fringe anywhere


def test_grey_with_alpha_is_premultiplied_too():
    image = Image.new("LA", (30, 30), (255, 0))  # invisible white
    image.paste((0, 255), (8, 8, 22, 22))

    out = blurred(image, "blur:5")

    la = np.asarray(out)
    assert out.mode == "LA"
    assert (la[..., 0][la[..., 1] > 0] <= 1).all()  # black fading out, not greyed by the white


# -- bad values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "1e3", "nan", "inf", "soft", "", " ", "2,x", "2.5", "5,-1", "5,nan", "5,2,1"])
def test_bad_values_are_refused(value):
    with pytest.raises(InvalidOperation, match="blur"):
        parse_ops(f"blur:{value}")
    with pytest.raises(InvalidOperation, match="blur"):
        parse_job_ops([f"blur={value}"])


def test_blur_needs_a_value():
    with pytest.raises(InvalidOperation, match="blur"):
        parse_ops("blur")


# -- small images --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 9), (9, 1), (1, 1), (2, 2), (3, 5), (7, 4)])
@pytest.mark.parametrize("kernel", [3, 9, 21])
def test_images_smaller_than_the_kernel_reflect_again(size, kernel):
    image = photo(size, seed=3)

    out = blurred(image, f"blur:{kernel}")

    assert out.size == size
    assert differs_by_at_most_one_level(out, reference_blur(image, kernel))


def test_a_single_pixel_is_unchanged():
    image = Image.new("RGB", (1, 1), (12, 34, 56))

    assert blurred(image, "blur:9").getpixel((0, 0)) == (12, 34, 56)


# -- strips --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA"])
@pytest.mark.parametrize(("size", "kernel"), [((40, 90), 5), ((33, 61), 21), ((20, 7), 9), ((25, 3), 31)])
def test_blurring_in_strips_gives_the_whole_images_result_to_the_bit(monkeypatch, mode, size, kernel):
    image = photo(size, mode, seed=5)
    op = only(f"blur:{kernel}")
    whole = op.apply(image)
    monkeypatch.setattr(blur, "STRIP_PIXELS", 4 * size[0])  # strips of 4 rows, halos past both neighbours

    in_strips = op.apply(image)

    assert in_strips.tobytes() == whole.tobytes()
    if mode in ("L", "RGB"):
        assert differs_by_at_most_one_level(in_strips, reference_blur(image, kernel))


def test_the_float_planes_are_those_of_one_strip_not_of_the_image():
    op = only("blur:5")
    canvas = (4990, 4696)  # a 12 MP photo rotated by 33 degrees
    rows = blur.STRIP_PIXELS // canvas[0] + 4  # a strip and its halo

    assert op.scratch_bytes(canvas, canvas) == 12 * canvas[0] * canvas[1] + 64 * canvas[0] * rows
    assert op.scratch_bytes(canvas, canvas) < 20 * canvas[0] * canvas[1]
