"""split / quadrant — cut the image into its four quadrants.

``split`` (``split=true`` in a job) makes FOUR images, in the order top-left,
top-right, bottom-left, bottom-right; later operations apply to each.
``quadrant:tl`` (or ``split:tl``) keeps just one quadrant: a crop.
The cut is at width//2 and height//2 (the right and bottom quadrants get the
odd pixel); the image must be at least 2x2.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from aperture.domain.transforms.base import InvalidOperation, Limits, Operation, Size, parse_flag, require, show

QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
_SHORT = {"tl": "top-left", "tr": "top-right", "bl": "bottom-left", "br": "bottom-right"}
_NAMES = {**_SHORT, **{name: name for name in QUADRANTS}, **{name.replace("-", ""): name for name in QUADRANTS}}
FORM = "quadrant:tl, quadrant:tr, quadrant:bl or quadrant:br"


@dataclass(frozen=True)
class Quadrant(Operation):
    which: str | None  # one of QUADRANTS, or None: all four (split)

    names = ("split", "quadrant")

    @classmethod
    def parse(cls, name: str, value: str | None, limits: Limits) -> Quadrant | None:
        if name == "quadrant":
            text = require("quadrant", value, FORM).lower()
            if text not in _NAMES:
                raise InvalidOperation(f"quadrant: must be tl, tr, bl or br, got {show(text)}")
            return cls(_NAMES[text])
        text = (value or "").strip().lower()
        if text in _NAMES:
            return cls(_NAMES[text])
        try:
            return cls(None) if parse_flag("split", value) else None
        except InvalidOperation:
            raise InvalidOperation(
                f"split: takes true/false (four images) or one quadrant tl, tr, bl, br; got {show(value or '')}"
            ) from None

    @property
    def splits(self) -> bool:
        return self.which is None

    def plan(self, size: Size) -> list[Size]:
        width, height = size
        if width < 2 or height < 2:
            raise InvalidOperation(f"{self}: needs an image of at least 2x2 pixels, this one is {width}x{height}")
        boxes = _boxes(size)
        chosen = boxes.values() if self.which is None else [boxes[self.which]]
        return [(right - left, bottom - top) for left, top, right, bottom in chosen]

    def output_size(self, size: Size) -> Size:
        return self.plan(size)[0]

    def apply_many(self, image: Image.Image) -> list[Image.Image]:
        self.plan(image.size)
        boxes = _boxes(image.size)
        chosen = boxes.values() if self.which is None else [boxes[self.which]]
        return [image.crop(box) for box in chosen]

    def apply(self, image: Image.Image) -> Image.Image:
        return self.apply_many(image)[0]

    def __str__(self) -> str:
        if self.which is None:
            return "split"
        short = {long: short for short, long in _SHORT.items()}[self.which]
        return f"quadrant:{short}"


def _boxes(size: Size) -> dict[str, tuple[int, int, int, int]]:
    width, height = size
    mid_x, mid_y = width // 2, height // 2
    return {
        "top-left": (0, 0, mid_x, mid_y),
        "top-right": (mid_x, 0, width, mid_y),
        "bottom-left": (0, mid_y, mid_x, height),
        "bottom-right": (mid_x, mid_y, width, height),
    }
