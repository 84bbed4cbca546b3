"""grayscale — luma only (ITU-R 601-2, Pillow's ``convert("L")``); alpha is kept."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from aperture.domain.transforms.base import Limits, Operation, parse_flag


@dataclass(frozen=True)
class Grayscale(Operation):
    names = ("grayscale", "greyscale")

    @classmethod
    def parse(cls, name: str, value: str | None, limits: Limits) -> Grayscale | None:
        return cls() if parse_flag("grayscale", value) else None

    def apply(self, image: Image.Image) -> Image.Image:
        if image.mode in ("L", "LA"):
            return image
        return image.convert("LA" if image.mode == "RGBA" else "L")

    def __str__(self) -> str:
        return "grayscale"
