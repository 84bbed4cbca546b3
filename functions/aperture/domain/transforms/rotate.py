"""rotate:degrees — clockwise, any angle, the canvas expanded to hold the result.

Multiples of 90° are exact transposes. Other angles use bicubic resampling
in premultiplied alpha; the uncovered corners are transparent (white once
flattened for JPEG and BMP). Angles are plain decimals from -360 to 360.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from aperture.domain.transforms.base import (
    InvalidOperation,
    Limits,
    Operation,
    Size,
    number,
    parse_decimal,
    require,
)

FORM = "rotate:90 or rotate:-12.5 (degrees clockwise)"
_RIGHT_ANGLES = {
    90.0: Image.Transpose.ROTATE_270,  # Pillow's ROTATE_n turn counter-clockwise
    180.0: Image.Transpose.ROTATE_180,
    270.0: Image.Transpose.ROTATE_90,
}
_WITH_ALPHA = {"L": "LA", "LA": "LA", "RGB": "RGBA", "RGBA": "RGBA"}
_PREMULTIPLIED = {"LA": "La", "RGBA": "RGBa"}


@dataclass(frozen=True)
class Rotate(Operation):
    degrees: float  # clockwise, normalized to [0, 360)

    names = ("rotate",)

    @classmethod
    def parse(cls, name: str, value: str | None, limits: Limits) -> Rotate:
        degrees = parse_decimal("rotate", "the angle", require("rotate", value, FORM))
        if not -360 <= degrees <= 360:
            raise InvalidOperation(f"rotate: the angle must be from -360 to 360 degrees, got {number(degrees)}")
        return cls(degrees % 360.0)

    def output_size(self, size: Size) -> Size:
        if self.degrees in (0.0, 180.0):
            return size
        if self.degrees in (90.0, 270.0):
            return size[1], size[0]
        return _expanded_size(size, self._counter_clockwise)

    def scratch_bytes(self, size: Size, out: Size) -> int:
        # Any angle but a right one: with-alpha and premultiplied copies in and out (measured ~12 B/px).
        return 12 * out[0] * out[1] if self.adds_alpha() else 0

    def adds_alpha(self) -> bool:
        # Any angle but a right one resamples onto a larger canvas with transparent corners.
        return self.degrees != 0.0 and self.degrees not in _RIGHT_ANGLES

    @property
    def _counter_clockwise(self) -> float:
        return (-self.degrees) % 360.0

    def apply(self, image: Image.Image) -> Image.Image:
        if self.degrees == 0.0:
            return image
        if self.degrees in _RIGHT_ANGLES:
            return image.transpose(_RIGHT_ANGLES[self.degrees])
        mode = _WITH_ALPHA[image.mode]
        working = image.convert(mode).convert(_PREMULTIPLIED[mode])
        rotated = working.rotate(self._counter_clockwise, resample=Image.Resampling.BICUBIC, expand=True)
        return rotated.convert(mode)

    def __str__(self) -> str:
        return f"rotate:{number(self.degrees)}"


def _expanded_size(size: Size, angle: float) -> Size:
    """The size ``Image.rotate(angle, expand=True)`` gives, computed as Pillow does."""
    width, height = size
    radians = -math.radians(angle)
    a, b = round(math.cos(radians), 15), round(math.sin(radians), 15)
    d, e = round(-math.sin(radians), 15), round(math.cos(radians), 15)
    cx, cy = width / 2, height / 2
    c = a * -cx + b * -cy + cx
    f = d * -cx + e * -cy + cy
    xs, ys = [], []
    for x, y in ((0, 0), (width, 0), (width, height), (0, height)):
        xs.append(a * x + b * y + c)
        ys.append(d * x + e * y + f)
    return math.ceil(max(xs)) - math.floor(min(xs)), math.ceil(max(ys)) - math.floor(min(ys))
