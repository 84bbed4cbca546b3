"""blur:K or blur:K,SIGMA — Gaussian blur with a K x K kernel, as OpenCV's GaussianBlur means it.

One meaning in both grammars (``blur:5`` in ``ops=``, ``"blur=5"`` in a job):

* K is the kernel size, a whole number >= 0. SIGMA, when given, is the
  Gaussian's standard deviation in pixels; otherwise it comes from K with
  OpenCV's formula ``sigma = 0.3 * ((K - 1) * 0.5 - 1) + 0.8``.
* K = 0 derives the kernel from SIGMA, as OpenCV does for 8-bit images
  (``K = round(SIGMA * 6 + 1) | 1``); ``blur:0`` alone (no SIGMA) is no blur.
* OpenCV refuses an even K; we round it up to the next odd size, so ``blur:4``
  is ``blur:5``. K = 1 is no blur.
* Borders reflect without repeating the edge pixel (OpenCV's default,
  BORDER_REFLECT_101). The kernel is the sampled Gaussian for every K (OpenCV
  uses fixed binomial kernels for K <= 7 without SIGMA, which differ from it
  by under 1.5% of a weight).
* K is clamped to Limits.max_blur (thumbor clamps its radius the same way).
  Alpha is premultiplied so transparent pixels do not bleed their colour.

Until the batch-jobs issue, ``blur:S`` in ``ops=`` was Pillow's GaussianBlur
with sigma S; docs/transforms.md records the change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from aperture.domain.transforms.base import (
    InvalidOperation,
    Limits,
    Operation,
    Size,
    number,
    parse_decimal,
    parse_int,
    require,
)

FORM = "blur:5 (a 5x5 kernel) or blur:0,2 (kernel from sigma 2)"
_PREMULTIPLIED = {"LA": "La", "RGBA": "RGBa"}


def sigma_for(kernel: int) -> float:
    """OpenCV's sigma for a kernel size when none is given."""
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


def kernel_for(sigma: float) -> int:
    """OpenCV's kernel size for a sigma when the size is 0 (8-bit images)."""
    return int(round(sigma * 6 + 1)) | 1


def gaussian_weights(kernel: int, sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian of `kernel` taps (float64)."""
    offsets = np.arange(kernel, dtype=np.float64) - (kernel - 1) / 2
    weights = np.exp(-(offsets**2) / (2 * sigma * sigma))
    return weights / weights.sum()


@dataclass(frozen=True)
class Blur(Operation):
    kernel: int  # odd, >= 1 (1: no blur)
    sigma: float

    names = ("blur",)

    @classmethod
    def parse(cls, name: str, value: str | None, limits: Limits) -> Blur:
        text = require("blur", value, FORM)
        size_text, comma, sigma_text = text.partition(",")
        kernel = parse_int("blur", "the kernel size", size_text)
        if kernel < 0:
            raise InvalidOperation(f"blur: the kernel size must be 0 or more, got {kernel}")
        sigma = parse_decimal("blur", "sigma", sigma_text) if comma else 0.0
        if sigma < 0:
            raise InvalidOperation(f"blur: sigma must be 0 or more, got {number(sigma)}")
        if kernel == 0:
            kernel = kernel_for(sigma) if sigma > 0 else 1
        largest = limits.max_blur if limits.max_blur % 2 else limits.max_blur - 1  # kernels are odd
        kernel = min(kernel | 1, max(1, largest))
        if sigma == 0:
            sigma = sigma_for(kernel)
        return cls(kernel, sigma)

    def scratch_bytes(self, size: Size, out: Size) -> int:
        # The uint8 result and, with alpha, the premultiplied copies in and out (12 bytes a pixel
        # of the image), and four float32 planes of up to four channels for one strip and its halo.
        if self.kernel == 1:
            return 0
        width, height = out
        strip = min(height, _strip_rows(width)) + 2 * (self.kernel // 2)
        return 12 * width * height + 64 * width * strip

    def apply(self, image: Image.Image) -> Image.Image:
        if self.kernel == 1:
            return image
        if image.mode in _PREMULTIPLIED:
            blurred = self._blur(image.convert(_PREMULTIPLIED[image.mode]))
            return blurred.convert(image.mode)
        return self._blur(image)

    def _blur(self, image: Image.Image) -> Image.Image:
        pixels: np.ndarray = np.asarray(image)
        weights = gaussian_weights(self.kernel, self.sigma).astype(np.float32)
        out = np.empty_like(pixels)
        height = pixels.shape[0]
        radius = self.kernel // 2
        # Source row of each row of the padded image (np.pad's "reflect" is BORDER_REFLECT_101,
        # and reflects again when the image is shorter than the radius).
        rows = np.pad(np.arange(height), (radius, radius), mode="reflect")
        step = _strip_rows(pixels.shape[1])
        for first in range(0, height, step):
            stop = min(height, first + step)
            if height == 1:
                strip = pixels.astype(np.float32)  # a single row: reflection leaves it unchanged
            else:
                strip = _filter(pixels[rows[first : stop + 2 * radius]], weights, 0, stop - first)
            strip = _correlate(strip, weights, 1)
            np.clip(np.rint(strip, out=strip), 0, 255, out=strip)
            out[first:stop] = strip
        return Image.fromarray(out, image.mode)

    def __str__(self) -> str:
        default = math.isclose(self.sigma, sigma_for(self.kernel), rel_tol=1e-9)
        return f"blur:{self.kernel}" if default else f"blur:{self.kernel},{number(round(self.sigma, 6))}"


# Rows blurred at a time: the float32 planes of a whole 24 MP canvas would be over 1 GiB, those of
# a strip of about a megapixel are ~50 MB, and the result is the same to the bit (each output row
# sums the same taps in the same order).
STRIP_PIXELS = 1 << 20


def _strip_rows(width: int) -> int:
    return max(1, STRIP_PIXELS // max(1, width))


def _correlate(pixels: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """`pixels` filtered along `axis` with reflect-101 borders, in float32."""
    radius = len(weights) // 2
    length = pixels.shape[axis]
    if length == 1:
        return pixels.astype(np.float32)  # a single row or column: reflection leaves it unchanged
    padding = [(0, 0)] * pixels.ndim
    padding[axis] = (radius, radius)
    # np.pad's "reflect" is BORDER_REFLECT_101; a side shorter than the radius reflects again.
    return _filter(np.pad(pixels, padding, mode="reflect"), weights, axis, length)


def _filter(padded: np.ndarray, weights: np.ndarray, axis: int, length: int) -> np.ndarray:
    """The `length` values along `axis` that `weights` make of `padded` (padded by the radius on
    both sides), in float32.

    The kernel is symmetric, so each pair of taps at the same distance is added
    first and multiplied once, into preallocated arrays (half the passes over
    memory of the plain sum; a 12 MP job item's blur is most of its CPU).
    """
    radius = len(weights) // 2

    def taps(start: int) -> np.ndarray:
        window = [slice(None)] * padded.ndim
        window[axis] = slice(start, start + length)
        return padded[tuple(window)]

    out = np.multiply(taps(radius), weights[radius], dtype=np.float32)
    pair = np.empty_like(out)
    for tap in range(radius):
        np.add(taps(tap), taps(2 * radius - tap), out=pair, dtype=np.float32)
        pair *= weights[tap]
        out += pair
    return out
