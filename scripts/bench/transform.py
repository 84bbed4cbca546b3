"""Benchmark of the transform engine: resize speed and fidelity (issue "Batch jobs" item 5; S8).

Two resizes of a JPEG photo, each by three contenders, all returning JPEG q85 bytes:
  ours      `render` (JPEG draft decode + Lanczos);
  libvips   pyvips `thumbnail_buffer` + `write_to_buffer('.jpg')`;
  Pillow    plain `open -> resize(LANCZOS) -> save` (a full decode).
Cases: a 24 MP photo fitted to 512x512 (item 5's case) and a 12 MP photo at
resize=50, a job's usual operation (the job spelling, `parse_job_ops`).

Time: the median of interleaved rounds (ours, libvips, Pillow, ours, ...),
JPEG bytes in to JPEG bytes out.
PSNR: against a reference made of the full decode of the source resized by
Pillow's LANCZOS to the same size; over R, G and B together, in float64. Each
contender's resized pixels are compared *before* JPEG encoding: ours rendered
with a lossless output (BMP) through the same pipeline, libvips' thumbnail
image read into memory, Pillow's resized image (which is the reference itself,
hence inf). The PSNR of the delivered JPEG q85 (decoded) is shown alongside.

Targets (item 5), on the 24 MP case: ours PSNR >= libvips PSNR - 0.5 dB, and
ours time <= libvips time; S8's: at least 3x faster than plain Pillow. The exit
status is 0 when all three hold. The resize=50 case prints the same
comparisons for information (no target of its own). Then the conversion
throughput of a 12 MP JPEG to each output format.

Run: PYTHONPATH=functions:scripts .venv/bin/python scripts/bench/transform.py
Needs pyvips (pip install -r requirements-bench.txt); exits 2 without it.
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from aperture.domain.transforms import Pipeline, parse_job_ops, parse_ops, render
from benchlib import photo_jpeg, verdict

BOX = 512
PERCENT = 50
QUALITY = 85  # the same JPEG quality for all three
RUNS = 15
BASELINE_RUNS = 7  # plain Pillow is slow; it is only the S8 yardstick
CONVERSION_RUNS = 3
MAX_PIXELS = 100_000_000
PSNR_MARGIN = 0.5  # dB ours may be below libvips
TIME_RATIO = 1.0  # ours / libvips, at most
BASELINE_RATIO = 3.0  # plain Pillow / ours, at least


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


def rgb(image: Image.Image | np.ndarray | bytes) -> np.ndarray:
    """float64 RGB samples of an image, an array (height, width, bands) or encoded bytes."""
    if isinstance(image, bytes):
        image = Image.open(io.BytesIO(image))
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    return np.asarray(image, dtype=np.float64)[..., :3]


def psnr(x: np.ndarray, reference: np.ndarray) -> float:
    if x.shape != reference.shape:
        return float("nan")
    mse = float(np.mean((x - reference) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@dataclass
class Contender:
    label: str
    encoded: Callable[[], bytes]  # timed: JPEG in, JPEG out
    pixels: Callable[[], Image.Image | np.ndarray]  # the resized pixels before encoding
    runs: int = RUNS


@dataclass
class Result:
    ms: float
    psnr: float  # resized pixels against the reference
    psnr_jpeg: float  # the delivered JPEG against the reference


def compare(data: bytes, target: tuple[int, int], contenders: dict[str, Contender]) -> dict[str, Result]:
    source = Image.open(io.BytesIO(data))
    reference = rgb(source.resize(target, Image.Resampling.LANCZOS))
    fidelity = {}
    for name, contender in contenders.items():  # also the warm-up
        pixels, blob = rgb(contender.pixels()), contender.encoded()
        got = Image.open(io.BytesIO(blob)).size
        assert got == target and pixels.shape[:2] == target[::-1], f"{name} made {got}, expected {target}"
        fidelity[name] = (psnr(pixels, reference), psnr(rgb(blob), reference))
    # Interleaved rounds, so that load on the (shared) machine hits every contender alike.
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for run in range(max(contender.runs for contender in contenders.values())):
        for name, contender in contenders.items():
            if run < contender.runs:
                start = time.perf_counter()
                contender.encoded()
                times[name].append(time.perf_counter() - start)
    return {name: Result(statistics.median(times[name]) * 1000, *fidelity[name]) for name in contenders}


def report(results: dict[str, Result], contenders: dict[str, Contender]) -> tuple[bool, bool]:
    print(f"  {'':<42}{'median ms':>10}{'PSNR dB':>9}{'as JPEG':>9}")
    for name, result in results.items():
        print(f"  {contenders[name].label:<42}{result.ms:10.1f}{result.psnr:9.2f}{result.psnr_jpeg:9.2f}")
    ours, vips = results["ours"], results["libvips"]
    ratio, gap = ours.ms / vips.ms, ours.psnr - vips.psnr
    fast, faithful = ratio <= TIME_RATIO, gap >= -PSNR_MARGIN
    print(f"  ours / libvips time = {ratio:5.2f}x    (target <= {TIME_RATIO:.1f}x)    {verdict(fast)}")
    print(f"  ours - libvips PSNR = {gap:+5.2f} dB  (target >= -{PSNR_MARGIN} dB)  {verdict(faithful)}")
    return fast, faithful


def main() -> int:
    pyvips = load_pyvips()
    if pyvips is None:
        return 2
    print(__doc__.strip().splitlines()[0])
    print(
        f"  Pillow {Image.__version__}, libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}, "
        f"{os.cpu_count()} CPUs (libvips may use them all; Pillow uses one)"
    )

    def contenders(data: bytes, pipeline: Pipeline, target: tuple[int, int]) -> dict[str, Contender]:
        def ours() -> bytes:
            [out] = render(data, pipeline, "jpg", max_pixels=MAX_PIXELS)
            return out.data

        def ours_pixels() -> Image.Image:
            [out] = render(data, pipeline, "bmp", max_pixels=MAX_PIXELS)  # lossless, same pipeline
            return Image.open(io.BytesIO(out.data))

        def libvips_image():
            return pyvips.Image.thumbnail_buffer(data, target[0], height=target[1])

        def libvips() -> bytes:
            return libvips_image().write_to_buffer(".jpg", Q=QUALITY)

        def pillow_image() -> Image.Image:
            return Image.open(io.BytesIO(data)).resize(target, Image.Resampling.LANCZOS)

        def pillow() -> bytes:
            buffer = io.BytesIO()
            pillow_image().save(buffer, "JPEG", quality=QUALITY)
            return buffer.getvalue()

        return {
            "ours": Contender("ours (render: JPEG draft + Lanczos)", ours, ours_pixels),
            "libvips": Contender("libvips (thumbnail_buffer)", libvips, lambda: libvips_image().numpy()),
            "pillow": Contender("Pillow open -> resize(LANCZOS) -> save", pillow, pillow_image, BASELINE_RUNS),
        }

    # Item 5's case: a 24 MP photo fitted to 512x512.
    data = photo_jpeg(24, seed=1, quality=90)
    size = Image.open(io.BytesIO(data)).size
    target = fit(size, BOX)
    players = contenders(data, parse_ops(f"resize:{BOX}x{BOX}|quality:{QUALITY}"), target)
    print(
        f"\n24 MP JPEG ({size[0]}x{size[1]}, {len(data) / 1e6:.1f} MB) -> fit {BOX}x{BOX} "
        f"({target[0]}x{target[1]}), JPEG q{QUALITY}; {RUNS} rounds ({BASELINE_RUNS} for Pillow):"
    )
    results = compare(data, target, players)
    fast, faithful = report(results, players)
    vs_pillow = results["pillow"].ms / results["ours"].ms
    beats_pillow = vs_pillow >= BASELINE_RATIO
    target_text = f"(S8 target >= {BASELINE_RATIO:.0f}x)"
    print(f"  Pillow / ours time  = {vs_pillow:5.2f}x    {target_text}    {verdict(beats_pillow)}")

    # The batch-job case: resize=50 on a 12 MP photo.
    source = photo_jpeg(12, seed=2, quality=90)
    width, height = Image.open(io.BytesIO(source)).size
    job = parse_job_ops([f"resize={PERCENT}", f"quality={QUALITY}"])
    half = job.plan((width, height))[0]
    players = contenders(source, job, half)
    print(
        f"\n12 MP JPEG ({width}x{height}, {len(source) / 1e6:.1f} MB) -> resize={PERCENT} "
        f"({half[0]}x{half[1]}), JPEG q{QUALITY}; {RUNS} rounds ({BASELINE_RUNS} for Pillow), "
        "for information:"
    )
    report(compare(source, half, players), players)

    megapixels = width * height / 1e6
    print(
        f"\nConversion of a 12 MP JPEG ({width}x{height}, {len(source) / 1e6:.1f} MB), no operations, "
        f"median of {CONVERSION_RUNS} runs:"
    )
    print(f"  {'to':<6}{'ms':>9}{'MP/s':>9}{'in MB/s':>10}{'images/s':>10}{'out MB':>9}")
    for fmt in ("jpg", "png", "gif", "webp", "tiff", "bmp"):
        outputs = []
        durations = []
        for _ in range(CONVERSION_RUNS):
            start = time.perf_counter()
            outputs = render(source, None, fmt, max_pixels=MAX_PIXELS)
            durations.append(time.perf_counter() - start)
        seconds = statistics.median(durations)
        print(
            f"  {fmt:<6}{seconds * 1000:9.0f}{megapixels / seconds:9.1f}{len(source) / 1e6 / seconds:10.1f}"
            f"{1 / seconds:10.2f}{len(outputs[0].data) / 1e6:9.1f}"
        )

    return 0 if fast and faithful and beats_pillow else 1


if __name__ == "__main__":
    sys.exit(main())
