"""Labels and embeddings for images (spec S7) and text queries (spec S10).

A *vision provider* turns an image into score-sorted labels plus a unit-norm
embedding, and a text query into a unit-norm embedding in the same space, so
that the cosine of a query and an image ranks images for search.

Two providers implement the interface:

* ``local`` (default, `aperture.vision.local`): offline models that pip
  packages ship (EfficientNet-Lite0 ImageNet classifier + MiniLM sentence
  encoder), 384 dimensions.
* ``cloud`` (`aperture.vision.cloud`): Cloud Vision label detection and
  Vertex AI multimodal embeddings, 512 dimensions.

This module is import-cheap: it imports neither torch nor any Google client
library; `provider_for` imports the chosen implementation on demand, and the
implementations load their models or clients on first use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

__all__ = [
    "Label",
    "VisionProvider",
    "VisionError",
    "VisionUnavailable",
    "PROVIDERS",
    "MAX_LABELS",
    "MIN_LABEL_SCORE",
    "provider_for",
    "rgb_image",
    "select_labels",
    "unit_vector",
]

#: An image keeps at most this many labels ...
MAX_LABELS = 10
#: ... and drops those scoring below this, but always keeps its best one.
MIN_LABEL_SCORE = 0.05

PROVIDERS = ("local", "cloud")


class VisionError(RuntimeError):
    """A provider could not label or embed (bad answer from a model or an API)."""


class VisionUnavailable(VisionError):
    """A transient failure (quota, 5xx, timeout, connection): the same call may work later."""


@dataclass(frozen=True)
class Label:
    name: str
    score: float  # in [0, 1]


@runtime_checkable
class VisionProvider(Protocol):
    name: str  # "local" | "cloud"
    dimensions: int  # length of every embedding this provider returns

    @property
    def model(self) -> str:
        """Names the model (and recipe) behind the embeddings; search compares only equal ones."""
        ...

    def analyze(self, image: Image.Image) -> tuple[list[Label], list[float]]:
        """Top labels (score-sorted, see `select_labels`) and a unit-norm embedding."""
        ...

    def embed_text(self, text: str) -> list[float]:
        """A unit-norm embedding of `text`, in the same space as `analyze`'s."""
        ...


def select_labels(
    scored: Iterable[tuple[str, float]],
    *,
    max_labels: int = MAX_LABELS,
    min_score: float = MIN_LABEL_SCORE,
) -> list[Label]:
    """The labels an image keeps: merged by name, best first, at most `max_labels`.

    Names are compared after stripping; a name seen twice keeps the sum of
    its scores (capped at 1). Labels scoring below `min_score` are dropped,
    but the best label is kept whatever its score, so an image that has any
    candidate has at least one label. Ties keep the order they came in.
    """
    merged: dict[str, float] = {}
    for name, score in scored:
        name = str(name).strip()
        score = float(score)
        if not name or not math.isfinite(score):
            continue
        merged[name] = min(1.0, merged.get(name, 0.0) + max(0.0, score))
    ranked = sorted(merged.items(), key=lambda item: -item[1])
    kept = [Label(name, score) for name, score in ranked[:max_labels] if score >= min_score]
    if not kept and ranked:
        kept = [Label(*ranked[0])]
    return kept


def unit_vector(values: Sequence[float] | Any, *, dimensions: int | None = None) -> list[float]:
    """`values` as a list of Python floats scaled to unit L2 norm.

    Raises `VisionError` for an empty, all-zero or non-finite vector, or one
    whose length is not `dimensions` (when given): storing such a vector
    would silently break cosine search.
    """
    floats = [float(v) for v in values]
    if dimensions is not None and len(floats) != dimensions:
        raise VisionError(f"embedding has {len(floats)} dimensions, expected {dimensions}")
    norm = math.sqrt(math.fsum(v * v for v in floats))
    if not floats or not math.isfinite(norm) or norm == 0.0:
        raise VisionError("embedding is empty, zero or not finite")
    return [v / norm for v in floats]


def rgb_image(image: Image.Image) -> Image.Image:
    """8-bit RGB for any Pillow mode: alpha composited over white, wide ints and floats stretched.

    RGB images are returned as they are (the same object); others are
    converted into a new image. 16/32-bit integer and float images are
    stretched linearly from their minimum to their maximum (a model sees
    the picture, not the sensor range).
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        values = np.asarray(image.convert("F") if mode != "F" else image, dtype=np.float32)
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        span = high - low if high > low else 1.0
        stretched = np.nan_to_num((values - low) * (255.0 / span), nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(stretched, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        if image.mode == "RGB":
            return image
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def provider_for(kind: str = "local", **options: Any) -> VisionProvider:
    """The provider named `kind` ("local" or "cloud"; empty means local).

    Options go to the implementation's constructor; a ``None`` option means
    "use the default" (so callers can pass settings through unconditionally).
    Building a provider is cheap: models and API clients load on first use.
    """
    kind = (kind or "local").strip().lower()
    options = {key: value for key, value in options.items() if value is not None}
    if kind == "local":
        from aperture.vision.local import LocalVisionProvider

        return LocalVisionProvider(**options)
    if kind == "cloud":
        from aperture.vision.cloud import CloudVisionProvider

        return CloudVisionProvider(**options)
    raise ValueError(f"unknown vision provider {kind!r}: expected one of {', '.join(PROVIDERS)}")
