"""Shared pieces of the benchmarks: a local stack, photo-like test images, timing."""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources

import numpy as np
from PIL import Image

from devstack.stack import Ports, Stack


@contextmanager
def local_stack(*, events: bool = True, workers: int = 2, **extra_env: str) -> Iterator[Stack]:
    import os

    stack = Stack(Ports.free(), extra_env=dict(extra_env), events=events, transform_workers=workers)
    stack.start()
    os.environ.update(stack.client_env())
    try:
        yield stack
    finally:
        stack.stop()


def photo_jpeg(megapixels: float, seed: int = 0, quality: int = 90) -> bytes:
    """A photograph (scikit-image's astronaut) scaled to the size, with sensor-like
    noise so each seed is a distinct object and the JPEG has realistic entropy."""
    base = Image.open(resources.files("skimage") / "data" / "astronaut.png").convert("RGB")
    height = int(round((megapixels * 1e6 * 3 / 4) ** 0.5))
    width = int(round(height * 4 / 3))
    image = np.asarray(base.resize((width, height), Image.BICUBIC)).astype(np.int16)
    noise = np.random.default_rng(seed).normal(0, 6, image.shape).astype(np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image + noise, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall times in seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"
