"""quality:N — encoder quality 1..100 for the lossy outputs (JPEG, WebP).

It changes no pixels and may stand anywhere in the pipeline; the last one
wins. Lossless outputs (PNG, GIF, TIFF, BMP) ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from aperture.domain.transforms.base import InvalidOperation, Limits, Operation, parse_int, require

FORM = "quality:80"


@dataclass(frozen=True)
class Quality(Operation):
    value: int

    names = ("quality",)

    @classmethod
    def parse(cls, name: str, value: str | None, limits: Limits) -> Quality:
        quality = parse_int("quality", "quality", require("quality", value, FORM))
        if not 1 <= quality <= 100:
            raise InvalidOperation(f"quality: must be from 1 to 100, got {quality}")
        return cls(quality)

    def apply(self, image: Image.Image) -> Image.Image:
        return image

    def __str__(self) -> str:
        return f"quality:{self.value}"
