"""Benchmark of the transform engine (issue: conversion and transforms, S8).

Targets, in process, on a 24-megapixel JPEG resized to fit 512x512 and returned as JPEG:
  * at most 1.2x the time of libvips (pyvips `thumbnail_buffer` + `write_to_buffer('.jpg')`);
  * at least 3x faster than plain Pillow `open -> resize(LANCZOS) -> save`.
Also reported: conversion throughput from a 12-megapixel JPEG to each output format.

Run: PYTHONPATH=functions:scripts .venv/bin/python scripts/bench/transform.py
Needs pyvips (pip install -r requirements-bench.txt); exits 2 without it.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import time

import numpy as np
from PIL import Image

from aperture.domain.transforms import parse_ops, render
from benchlib import photo_jpeg, verdict

BOX = 512
QUALITY = 85  # the same JPEG quality for all three
RUNS = 15
BASELINE_RUNS = 7
CONVERSION_RUNS = 3
MAX_PIXELS = 100_000_000


def load_pyvips():
    try:
        import pyvips  # noqa: PLC0415 - optional, benchmark only
    except Exception as exc:  # ImportError, or OSError/other when libvips itself cannot be loaded
        print(
            "pyvips (with libvips) is needed for this benchmark: "
            "`.venv/bin/pip install -r requirements-bench.txt` "
            f"(pyvips + pyvips-binary, which ships libvips in the wheel). Import failed: {exc}",
            file=sys.stderr,
        )
        return None
    return pyvips


def fit(size: tuple[int, int], box: int) -> tuple[int, int]:
    width, height = size
    scale = min(box / width, box / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def psnr(a: bytes, b: bytes) -> float:
    x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB"), dtype=np.float64)
    y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float64)
    if x.shape != y.shape:
        return float("nan")
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def main() -> int:
    pyvips = load_pyvips()
    if pyvips is None:
        return 2
    print(__doc__.strip().splitlines()[0])
    print(
        f"  Pillow {Image.__version__}, libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}, "
        f"{os.cpu_count()} CPUs (libvips may use them all; Pillow uses one)"
    )

    data = photo_jpeg(24, seed=1, quality=90)
    size = Image.open(io.BytesIO(data)).size
    target = fit(size, BOX)
    pipeline = parse_ops(f"resize:{BOX}x{BOX}|quality:{QUALITY}")

    def ours() -> bytes:
        [out] = render(data, pipeline, "jpg", max_pixels=MAX_PIXELS)
        return out.data

    def libvips() -> bytes:
        return pyvips.Image.thumbnail_buffer(data, BOX).write_to_buffer(".jpg", Q=QUALITY)

    def baseline() -> bytes:
        image = Image.open(io.BytesIO(data))
        buffer = io.BytesIO()
        image.resize(fit(image.size, BOX), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=QUALITY)
        return buffer.getvalue()

    outputs = {"ours": ours(), "libvips": libvips(), "baseline": baseline()}  # warm-up, and results to compare
    for name, blob in outputs.items():
        got = Image.open(io.BytesIO(blob)).size
        assert got == target, f"{name} made {got}, expected {target}"

    # Interleaved runs, so that load on the machine hits every contender alike.
    times: dict[str, list[float]] = {"ours": [], "libvips": [], "baseline": []}
    for run in range(RUNS):
        contenders = [("ours", ours), ("libvips", libvips)]
        if run < BASELINE_RUNS:
            contenders.append(("baseline", baseline))
        for name, fn in contenders:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    ms = {name: statistics.median(values) * 1000 for name, values in times.items()}

    print(
        f"\n24 MP JPEG ({size[0]}x{size[1]}, {len(data) / 1e6:.1f} MB) -> fit {BOX}x{BOX} "
        f"({target[0]}x{target[1]}) JPEG q{QUALITY}, median of {RUNS} runs ({BASELINE_RUNS} for the baseline):"
    )
    print(f"  ours (render, JPEG draft + Lanczos):   {ms['ours']:8.1f} ms")
    print(f"  libvips (thumbnail_buffer):            {ms['libvips']:8.1f} ms")
    print(f"  Pillow open -> resize -> save:         {ms['baseline']:8.1f} ms")
    vs_vips = ms["ours"] / ms["libvips"]
    vs_baseline = ms["baseline"] / ms["ours"]
    print(f"  ours / libvips   = {vs_vips:5.2f}x (target <= 1.2x) {verdict(vs_vips <= 1.2)}")
    print(f"  baseline / ours  = {vs_baseline:5.2f}x (target >= 3x)  {verdict(vs_baseline >= 3)}")
    print(
        f"  fidelity to the full-decode Lanczos baseline: ours {psnr(outputs['ours'], outputs['baseline']):.1f} dB, "
        f"libvips {psnr(outputs['libvips'], outputs['baseline']):.1f} dB (PSNR)"
    )

    source = photo_jpeg(12, seed=2, quality=90)
    width, height = Image.open(io.BytesIO(source)).size
    megapixels = width * height / 1e6
    print(
        f"\nConversion of a 12 MP JPEG ({width}x{height}, {len(source) / 1e6:.1f} MB), no operations, "
        f"median of {CONVERSION_RUNS} runs:"
    )
    print(f"  {'to':<6}{'ms':>9}{'MP/s':>9}{'in MB/s':>10}{'images/s':>10}{'out MB':>9}")
    for fmt in ("jpg", "png", "gif", "webp", "tiff", "bmp"):
        results = []
        durations = []
        for _ in range(CONVERSION_RUNS):
            start = time.perf_counter()
            results = render(source, None, fmt, max_pixels=MAX_PIXELS)
            durations.append(time.perf_counter() - start)
        seconds = statistics.median(durations)
        print(
            f"  {fmt:<6}{seconds * 1000:9.0f}{megapixels / seconds:9.1f}{len(source) / 1e6 / seconds:10.1f}"
            f"{1 / seconds:10.2f}{len(results[0].data) / 1e6:9.1f}"
        )

    return 0 if vs_vips <= 1.2 and vs_baseline >= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
