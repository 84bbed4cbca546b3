"""Test images made in memory and small helpers shared by the transform tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from aperture.domain.transforms import Rendered, parse_ops, render

MAX_PIXELS = 100_000_000


def photo(size: tuple[int, int] = (64, 48), mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A smooth, asymmetric picture (gradients plus mild noise) that survives lossy codecs."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(seed)
    red = 255 * x / max(1, width - 1)
    green = 255 * y / max(1, height - 1)
    blue = 128 + 100 * np.sin(x / 7.0) * np.cos(y / 5.0)
    rgb = np.stack([red, green, blue], axis=-1) + rng.normal(0, 4, (height, width, 3))
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    if mode in ("RGBA", "LA"):
        alpha = np.clip(255 * (x + y) / max(1, width + height - 2), 0, 255).astype(np.uint8)
        alpha[: height // 4, : width // 4] = 0  # a fully transparent corner
        image = image.convert(mode[:-1] if mode == "LA" else "RGB")
        image.putalpha(Image.fromarray(alpha, "L"))
        return image
    return image.convert(mode)


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def render_one(data: bytes, ops: str = "", fmt: str | None = "png") -> Rendered:
    [out] = render(data, parse_ops(ops), fmt, max_pixels=MAX_PIXELS)
    return out


def pixels(image: Image.Image, mode: str | None = None) -> np.ndarray:
    return np.asarray(image.convert(mode) if mode and image.mode != mode else image).astype(np.int16)


def psnr(a: Image.Image, b: Image.Image, mode: str = "RGB") -> float:
    x, y = pixels(a, mode).astype(np.float64), pixels(b, mode).astype(np.float64)
    assert x.shape == y.shape, (x.shape, y.shape)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.mode == b.mode and a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))
