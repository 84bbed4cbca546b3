"""flip / flop — mirror the image (ImageMagick's words).

``flip`` mirrors top to bottom (vertical), ``flop`` left to right
(horizontal). ``flip:h``, ``flip:v`` and ``flip:hv`` say the direction outright.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from aperture.domain.transforms.base import InvalidOperation, Limits, Operation, parse_flag, show

_DIRECTIONS = {
    "h": (True, False),
    "horizontal": (True, False),
    "x": (True, False),
    "v": (False, True),
    "vertical": (False, True),
    "y": (False, True),
    "hv": (True, True),
    "vh": (True, True),
    "both": (True, True),
    "xy": (True, True),
}


@dataclass(frozen=True)
class Flip(Operation):
    horizontal: bool
    vertical: bool

    names = ("flip", "flop")

    @classmethod
    def parse(cls, name: str, value: str | None, limits: Limits) -> Flip | None:
        if name == "flop":
            return cls(True, False) if parse_flag("flop", value) else None
        direction = (value or "").strip().lower()
        if direction in _DIRECTIONS:
            return cls(*_DIRECTIONS[direction])
        try:
            return cls(False, True) if parse_flag("flip", value) else None
        except InvalidOperation:
            raise InvalidOperation(
                f"flip: direction must be h, v or hv (or none: vertical), got {show(value or '')}"
            ) from None

    def apply(self, image: Image.Image) -> Image.Image:
        if self.horizontal and self.vertical:
            return image.transpose(Image.Transpose.ROTATE_180)
        if self.horizontal:
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)

    def __str__(self) -> str:
        return "flip:" + ("h" if self.horizontal else "") + ("v" if self.vertical else "")
