"""crop:x,y,width,height — keep a box of the image, in pixels of the image at that step.

Not clamped: a box that does not lie wholly inside the image is a 400 that
names the image's size (a client cropping after a resize learns the size it got).
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from aperture.domain.transforms.base import InvalidOperation, Limits, Operation, Size, parse_int, require, show

FORM = "crop:x,y,width,height (e.g. crop:10,10,200,200)"


@dataclass(frozen=True)
class Crop(Operation):
    x: int
    y: int
    width: int
    height: int

    names = ("crop",)

    @classmethod
    def parse(cls, name: str, value: str | None, limits: Limits) -> Crop:
        text = require("crop", value, FORM)
        parts = text.split(",")
        if len(parts) != 4:
            raise InvalidOperation(f"crop: needs four whole numbers x,y,width,height, got {show(text)}")
        x, y, width, height = (
            parse_int("crop", field, part) for field, part in zip(("x", "y", "width", "height"), parts)
        )
        if x < 0 or y < 0:
            raise InvalidOperation(f"crop: x and y must be 0 or more, got x={x}, y={y}")
        if width < 1 or height < 1:
            raise InvalidOperation(f"crop: width and height must be at least 1, got {width}x{height}")
        if x + width > limits.max_dimension or y + height > limits.max_dimension:
            raise InvalidOperation(
                f"crop: the box {width}x{height} at ({x},{y}) reaches past {limits.max_dimension} pixels, "
                "the largest image size"
            )
        return cls(x, y, width, height)

    def output_size(self, size: Size) -> Size:
        width, height = size
        if self.x + self.width > width or self.y + self.height > height:
            raise InvalidOperation(
                f"{self}: the box {self.width}x{self.height} at ({self.x},{self.y}) does not fit "
                f"in the {width}x{height} image"
            )
        return self.width, self.height

    def apply(self, image: Image.Image) -> Image.Image:
        self.output_size(image.size)
        return image.crop((self.x, self.y, self.x + self.width, self.y + self.height))

    def __str__(self) -> str:
        return f"crop:{self.x},{self.y},{self.width},{self.height}"
