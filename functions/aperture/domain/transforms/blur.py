"""blur:sigma — Gaussian blur, sigma in pixels (Pillow's GaussianBlur radius).

Clamped to Limits.max_blur (50 by default): beyond that a photo is a smear
anyway, and thumbor clamps its blur radius the same way (at 150). 0 is no
blur. Alpha is premultiplied so transparent pixels do not bleed their colour.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageFilter

from aperture.domain.transforms.base import InvalidOperation, Limits, Operation, number, parse_decimal, require

FORM = "blur:2 or blur:0.5 (sigma in pixels)"
_PREMULTIPLIED = {"LA": "La", "RGBA": "RGBa"}


@dataclass(frozen=True)
class Blur(Operation):
    sigma: float

    names = ("blur",)

    @classmethod
    def parse(cls, name: str, value: str | None, limits: Limits) -> Blur:
        sigma = parse_decimal("blur", "sigma", require("blur", value, FORM))
        if sigma < 0:
            raise InvalidOperation(f"blur: sigma must be 0 or more, got {number(sigma)}")
        return cls(min(sigma, limits.max_blur))

    def apply(self, image: Image.Image) -> Image.Image:
        if self.sigma == 0:
            return image
        blur = ImageFilter.GaussianBlur(self.sigma)
        if image.mode in _PREMULTIPLIED:
            return image.convert(_PREMULTIPLIED[image.mode]).filter(blur).convert(image.mode)
        return image.filter(blur)

    def __str__(self) -> str:
        return f"blur:{number(self.sigma)}"
