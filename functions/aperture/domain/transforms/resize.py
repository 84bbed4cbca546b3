"""resize — to fit a box, to an exact size, or by a percentage.

    resize:512x512    fit inside 512x512, keeping the aspect ratio; never enlarges
    resize:512x       512 wide, height in proportion   (resize:x512: 512 high); never enlarges
    resize:512x512!   exactly 512x512 (aspect ratio not kept): may enlarge, as asked
    resize:50%        half the width and half the height (resize:50 is the same);
                      above 100% enlarges, as asked

Enlarging is only done when the client spells a size or a scale that asks
for it (``!`` or a percentage over 100), as imgproxy's ``enlarge`` defaults to
off: a fit box larger than the image leaves it as it is. Every size is still
capped by `Limits` (pixels, sides, and the render's memory budget).

Lanczos resampling (Pillow premultiplies alpha). Sizes round half up and are
never below 1 pixel. When a pipeline starts with a JPEG downscale, the
decoder already shrinks by 1/2, 1/4 or 1/8 (libjpeg DCT scaling, never below
the target) and this step resizes from there to the exact size planned from
the full-size image, reading only the part of the smaller frame that the
picture fills (see `pipeline.render` and `source.first_frame`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

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
    show,
)
from aperture.domain.transforms.source import Box

FORM = "resize:512x512 (fit), resize:512x512! (exact), resize:512x, resize:x512 or resize:50%"
_BOX = re.compile(r"\s*([^xX]*?)\s*[xX]\s*([^xX!]*?)\s*(!?)\s*")


@dataclass(frozen=True)
class Resize(Operation):
    mode: Literal["fit", "exact", "percent"]
    width: int | None = None
    height: int | None = None
    percent: float | None = None

    names = ("resize",)

    @classmethod
    def parse(cls, name: str, value: str | None, limits: Limits) -> Resize:
        text = require("resize", value, FORM)
        if "x" in text.lower():
            return cls._parse_box(text, limits)
        percent = parse_decimal("resize", "the percentage", text[:-1] if text.endswith("%") else text)
        if percent <= 0:
            raise InvalidOperation(f"resize: {number(percent)}% would leave no pixels; give a percentage above 0")
        return cls("percent", percent=percent)

    @classmethod
    def _parse_box(cls, text: str, limits: Limits) -> Resize:
        match = _BOX.fullmatch(text)
        if not match:
            raise InvalidOperation(f"resize: expected {FORM}, got {show(text)}")
        width_text, height_text, exact = match.groups()
        width = parse_int("resize", "width", width_text) if width_text else None
        height = parse_int("resize", "height", height_text) if height_text else None
        if width is None and height is None:
            raise InvalidOperation(f"resize: give a width, a height or both, as in {FORM}")
        for field, value in (("width", width), ("height", height)):
            if value is not None and value < 1:
                raise InvalidOperation(f"resize: {field} must be at least 1 pixel, got {value}")
        if exact:
            if width is None or height is None:
                raise InvalidOperation("resize: an exact size (!) needs both width and height, as in resize:512x512!")
            limits.check_size((width, height), "resize")
            return cls("exact", width, height)
        # A fitted result has the box's width or its height: both over the limit can never fit.
        sides = [side for side in (width, height) if side is not None]
        if min(sides) > limits.max_dimension:
            raise InvalidOperation(
                f"resize: an image fitted to {width or ''}x{height or ''} would be over "
                f"the limit of {limits.max_dimension} pixels on a side"
            )
        return cls("fit", width, height)

    def output_size(self, size: Size) -> Size:
        width, height = size
        if self.mode == "exact":
            return self.width, self.height  # type: ignore[return-value]
        if self.mode == "percent":
            scale = self.percent / 100  # type: ignore[operator]
            return max(1, int(width * scale + 0.5)), max(1, int(height * scale + 0.5))
        box_w, box_h = self.width, self.height
        if box_w is not None and (box_h is None or box_w * height <= box_h * width):
            if box_w >= width:
                return size  # fitting never enlarges
            return box_w, max(1, (2 * height * box_w + width) // (2 * width))
        assert box_h is not None, "a box has a width, a height or both"
        if box_h >= height:
            return size
        return max(1, (2 * width * box_h + height) // (2 * height)), box_h

    def scratch_bytes(self, size: Size, out: Size) -> int:
        # Pillow resamples horizontally into an (output width x input height) image, then vertically.
        return 4 * out[0] * size[1] if out != size else 0

    def apply(self, image: Image.Image) -> Image.Image:
        return self.resize_to(image, self.output_size(image.size))

    @staticmethod
    def resize_to(image: Image.Image, size: Size, box: Box | None = None) -> Image.Image:
        """`image`, or its `box` when given (fractional pixels), resized to `size`."""
        if image.size == size and box is None:
            return image
        return image.resize(size, Image.Resampling.LANCZOS, box=box)

    def __str__(self) -> str:
        if self.mode == "percent":
            return f"resize:{number(self.percent)}%"  # type: ignore[arg-type]
        box = f"{self.width or ''}x{self.height or ''}"
        return f"resize:{box}!" if self.mode == "exact" else f"resize:{box}"
