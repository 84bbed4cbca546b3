"""Peak memory and time of the worst cases of issue #18 items 1-3, ours beside plain Pillow/numpy.

Items (docs/limits.md keeps the table):

  1  upload validation of hostile files (`validation.validate`, the `upload`
     function): a GIF with a 1x1 first frame and 300 frames of 10000x10000, an
     81 MP progressive JPEG with 506 scans (its last scan repeated 500 times), a
     TIFF with a 1x1 page 0 and 1000 pages of 10000x10000 (one shared deflate
     strip);
  2  renders (`transforms.render` with the service's limits, the `images`
     function): an 8x8 PNG asked for `.gif?ops=resize:10000x10000!`, and the
     largest render that is accepted, the 100 MP photo JPEG as a full-size PNG;
  3  statistics (the `stats` function) of float (F) TIFFs whose every pixel is
     a distinct value: the cold request (StatsService over in-memory
     repositories: decode, histograms, luma, answer, serialize, store) at
     100 MP and at 34.8 MP, and a later request on another instance that reads
     the 34.8 MP image's stored histograms back (deserialize and answer min,
     max, mean, median, p99); a 100 MP one is over APERTURE_HISTOGRAM_MAX_BYTES
     and is not stored.

Each case runs twice, each time in a fresh Python process: OUR code path,
and a BASELINE, what plain Pillow/numpy does with the same input without our
checks (open + load every frame; open + resize + save; numpy's statistics
of the decoded array). A process reads its input, imports what it needs,
then reports

  base   its resident set before the case (runtime, imports, input bytes);
  peak   VmHWM - base, the high-water mark of the resident set reset just
         before the case (/proc/self/clear_refs), i.e. what the case adds;
  time   wall time of the case.

A baseline is guarded: its address space is capped at base + 4 GiB
(RLIMIT_AS: an allocation beyond it fails, reported as "killed at 4 GiB")
and it is stopped after BASELINE_SECONDS (20 and 30 s for the renders;
reported as "timeout", with the peak it had reached). `mem` is the deployed memory x concurrency of the
function that runs the path (infra/main.tf, local.functions).

Run: PYTHONPATH=functions:scripts .venv/bin/python scripts/bench/limits.py [CASE ...] [--json]
     (make bench runs it). About 2.5 minutes on 2 cores; needs ~5 GB free memory
     and ~0.6 GB in the temporary folder.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rss import reset_peak, status_kib, trim

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
GiB = 1024 * MiB
BASELINE_SECONDS = 10.0  # a baseline running longer is stopped
SLOW_BASELINES = {"render-8x8-gif-10000": 20.0, "render-100mp-png": 30.0}
BASELINE_MEMORY = 4 * GiB  # and its address space capped at base + this
OURS_SECONDS = 120.0

GIF_FRAMES, GIF_SIDE = 300, 10_000
JPEG_SIDE, JPEG_REPEATS = 9_000, 500  # 81 MP: under Pillow's 89.5 MP warning, which validate refuses
TIFF_PAGES, TIFF_SIDE = 1000, 10_000
PHOTO_MEGAPIXELS = 100
# Float TIFFs: 100 MP (APERTURE_MAX_PIXELS, as the photo), and 34.8 MP, about the
# largest of these whose serialized histograms fit APERTURE_HISTOGRAM_MAX_BYTES
# (~25 bytes per 1000 values), so another instance reads them back.
PNG_CHUNKS = 2_000_000  # 12 bytes each: 23 MiB, under the 25 MiB file limit
FLOATS = {"float-100mp.tif": (11_547, 8_660), "float-24mp.tif": (6_000, 4_000)}

# case -> (item, function, input file, what)
CASES: dict[str, tuple[int, str, str, str]] = {
    "gif-growing-frames": (
        1,
        "upload",
        "grow.gif",
        f"GIF, 1x1 first frame then {GIF_FRAMES} frames of {GIF_SIDE}x{GIF_SIDE}",
    ),
    "jpeg-many-scans": (
        1,
        "upload",
        "scans.jpg",
        f"progressive JPEG {JPEG_SIDE}x{JPEG_SIDE} (L), {JPEG_REPEATS + 6} scans (last one repeated)",
    ),
    "tiff-growing-pages": (
        1,
        "upload",
        "pages.tif",
        f"TIFF, 1x1 page 0 then {TIFF_PAGES} pages of {TIFF_SIDE}x{TIFF_SIDE} (deflate, one shared strip)",
    ),
    "png-many-chunks": (
        1,
        "upload",
        "chunks.png",
        f"PNG, 8x8, {PNG_CHUNKS:,} empty ancillary chunks before its pixels",
    ),
    "render-8x8-gif-10000": (2, "images", "tiny.png", "8x8 PNG as .gif?ops=resize:10000x10000!"),
    "render-100mp-png": (2, "images", "photo-100mp.jpg", "100 MP photo JPEG as .png, full size"),
    "stats-float-100mp-cold": (
        3,
        "stats",
        "float-100mp.tif",
        "100 MP F TIFF, every pixel distinct: cold request (decode, histograms, luma, serialize, store)",
    ),
    "stats-float-24mp-cold": (
        3,
        "stats",
        "float-24mp.tif",
        "24 MP F TIFF, every pixel distinct (under APERTURE_MAX_WIDE_STATS_PIXELS, histograms stored): cold request",
    ),
    "stats-float-24mp-stored": (
        3,
        "stats",
        "float-24mp.tif",
        "the same, on another instance: stored histograms read back, min/max/mean/median/p99 answered",
    ),
}
ANSWERS = ("min", "max", "mean", "median", "p99")


# -- measuring (in the child) ---------------------------------------------------------


def child(side: str, case: str, folder: str) -> None:
    """Run one side of one case; writes `base` (before) and the result (after) as files."""
    import resource

    folder_path = Path(folder)
    setup = _ours if side == "ours" else _baseline
    run = setup(case, folder_path)
    trim()
    reset_peak()
    base = status_kib("VmRSS")
    if side == "baseline":
        cap = status_kib("VmSize") * 1024 + BASELINE_MEMORY
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    (folder_path / f"{side}-{case}.base").write_text(str(base))
    started = time.perf_counter()
    try:
        outcome = run()
    except MemoryError:
        outcome = f"killed at {BASELINE_MEMORY / GiB:.0f} GiB (MemoryError)"
    seconds = time.perf_counter() - started
    peak = status_kib("VmHWM")
    result = {
        "base_mib": base / 1024,
        "peak_mib": (peak - base) / 1024,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds": seconds,
        "outcome": outcome,
    }
    (folder_path / f"{side}-{case}.json").write_text(json.dumps(result))
    after = getattr(run, "after", None)
    if after is not None:  # outside the measurement: e.g. hand the stored histograms to the next case
        after()


def _container():
    """The functions' composition root over this environment's settings: the limits as deployed."""
    from aperture.config import Config
    from aperture.container import Container

    return Container(Config.from_env())


def _ours(case: str, folder: Path):
    item, _, name, _ = CASES[case]
    container = _container()
    config = container.config
    if item == 1:
        from aperture.domain.imaging.validation import Rejected, validate

        limits = container.upload_limits
        data = (folder / name).read_bytes()

        def run():
            try:
                valid = validate(data, limits)
            except Rejected as exc:
                return f"refused {exc.status}: {exc.reason}"
            return f"accepted: {valid.format} {valid.width}x{valid.height}, {valid.frames} frames"

        return run
    if item == 2:
        from aperture.domain import transforms
        from aperture.domain.imaging.pixels import NotAnImage, TooManyPixels

        limits = container.render_limits
        data = (folder / name).read_bytes()
        if case == "render-8x8-gif-10000":
            query, extension = [("ops", "resize:10000x10000!")], "gif"
        else:
            query, extension = [], "png"

        def run():
            try:
                pipeline = transforms.parse_query(query, limits)
                outputs = transforms.render(data, pipeline, extension, max_pixels=config.max_pixels, limits=limits)
            except transforms.InvalidOperation as exc:
                return f"refused 400: {exc}"
            except (NotAnImage, TooManyPixels) as exc:
                return f"refused 422: {exc}"
            out = outputs[0]
            return f"accepted 200: {out.extension} {out.width}x{out.height}, {len(out.data) / MiB:.1f} MiB"

        return run
    return _ours_stats(case, folder, container)


def _ours_stats(case: str, folder: Path, container):
    import pickle

    from aperture.domain import stats as statistics
    from tests.unit import fakes

    config = container.config
    objects, store = fakes.FakeObjectStore(), fakes.FakeHistogramStore()
    service = container.stats_service(objects, store)
    name = CASES[case][2]
    stored_file = folder / f"stored-{name}.pickle"

    def answer(bands) -> str:
        hist = statistics.select(bands, None)
        values = [statistics.format_value(statistics.parse_function(f).apply(hist)) for f in ANSWERS]
        return " ".join(f"{f}={v}" for f, v in zip(ANSWERS, values))

    if case.endswith("-cold"):
        data = (folder / name).read_bytes()
        info = objects.put(config.source_bucket, "float.tif", data, "image/tiff")
        del data

        def run():
            from aperture.domain.imaging.pixels import TooWideForStatistics

            try:
                result, source = service.histograms(info, need_luma=True)
            except TooWideForStatistics as exc:
                return f"refused 422: {exc}"
            text = answer(result.bands)
            service.finish(info)
            # The deferred work (serialize, store) is part of the request's memory: wait for it.
            service._background.shutdown(wait=True)
            stored = store.get(info.bucket, info.name, info.generation)
            distinct = statistics.select(result.bands, None).distinct
            kept = f"stored {len(stored.payload) / 1024:.0f} KiB" if stored else "not stored (over the limit)"
            return f"accepted 200 ({source}): {distinct} distinct values, {kept}; {text}"

        def after():
            stored = store.get(info.bucket, info.name, info.generation)
            if stored is not None:
                stored_file.write_bytes(pickle.dumps(stored))

        run.after = after  # type: ignore[attr-defined]
        return run

    # stats-float-stored: another instance, the object unchanged, its histograms in "Firestore".
    if not stored_file.exists():
        return lambda: f"nothing stored for {name} by its cold case: nothing to read"
    stored = pickle.loads(stored_file.read_bytes())
    # A stand-in object: the real file's header (its pixel count sends the lookup to the store)
    # without its pixels; on a hit the decode of the object is stopped anyway.
    with open(folder / name, "rb") as file:
        header = file.read(64 * 1024)
    info = objects.put(config.source_bucket, "float.tif", header, "image/tiff")
    store.put(info.bucket, info.name, info.generation, stored)
    payload = len(stored.payload)
    del stored

    def run():
        result, source = service.histograms(info)
        return f"accepted 200 ({source}, {payload / 1024:.0f} KiB payload): {answer(result.bands)}"

    return run


def _baseline(case: str, folder: Path):
    import warnings

    import numpy as np
    from PIL import Image

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # plain Pillow only warns
    item, _, name, _ = CASES[case]
    data = (folder / name).read_bytes()
    if item == 1:

        def run():
            image = Image.open(io.BytesIO(data))
            frames = 0
            try:
                while True:
                    image.load()
                    frames += 1
                    image.seek(image.tell() + 1)
            except EOFError:
                pass
            return f"decoded {frames} frames, {image.size[0]}x{image.size[1]} {image.mode}"

        return run
    if item == 2:

        def run():
            image = Image.open(io.BytesIO(data))
            out = io.BytesIO()
            if case == "render-8x8-gif-10000":
                image.convert("RGB").resize((10_000, 10_000), Image.LANCZOS).save(out, "GIF")
            else:
                image.save(out, "PNG")
            return f"{len(out.getvalue()) / MiB:.1f} MiB"

        return run

    def run():
        pixels = np.asarray(Image.open(io.BytesIO(data)))
        values = [pixels.min(), pixels.max(), pixels.mean(dtype=np.float64), np.median(pixels)]
        values.append(np.percentile(pixels, 99))
        return "numpy: " + " ".join(f"{f}={float(v)!r}" for f, v in zip(ANSWERS, values))

    return run


# -- inputs (in a child too, so the parent stays small) -------------------------------


def make_inputs(folder: Path, names: set[str]) -> None:
    import numpy as np
    from PIL import Image

    from benchlib import photo_jpeg
    from tests.support import hostile
    from tests.support.images import encode, random_image

    makers = {
        "grow.gif": lambda: hostile.gif_small_first_frame(GIF_FRAMES, size=(GIF_SIDE, GIF_SIDE)),
        "scans.jpg": lambda: _jpeg_repeated_scans(JPEG_SIDE, JPEG_REPEATS),
        "pages.tif": lambda: _tiff_growing_pages(TIFF_PAGES, TIFF_SIDE),
        "chunks.png": lambda: hostile.png_with_chunks(PNG_CHUNKS),
        "tiny.png": lambda: encode(random_image("RGB", size=(8, 8), seed=18), "PNG"),
        "photo-100mp.jpg": lambda: photo_jpeg(PHOTO_MEGAPIXELS, seed=17, quality=90),
    }
    for name, make in makers.items():
        if name in names:
            (folder / name).write_bytes(make())
    for name, (width, height) in FLOATS.items():
        if name in names:
            # Distinct, smoothly increasing floats (consecutive bit patterns from 0.5 up):
            # the histogram has one entry per pixel, yet serializes to little.
            bits = np.arange(0x3F000000, 0x3F000000 + width * height, dtype=np.uint32)
            Image.fromarray(bits.view(np.float32).reshape(height, width), "F").save(folder / name, "TIFF")
            del bits


def _jpeg_repeated_scans(side: int, repeats: int) -> bytes:
    """A flat greyscale progressive JPEG whose last scan (with its Huffman table) is sent
    `repeats` more times: each repeat is ~160 bytes and a pass over every coefficient
    (as tests/support/hostile.jpeg_bogus_progression, at 100 MP)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (side, side), 128).save(buffer, "JPEG", quality=90, progressive=True)
    data = buffer.getvalue()
    end = data.rindex(b"\xff\xd9")
    last_table = data.rindex(b"\xff\xc4", 0, data.rindex(b"\xff\xda"))
    return data[:end] + data[last_table:end] * repeats + data[end:]


def _tiff_growing_pages(pages: int, side: int) -> bytes:
    """A 1x1 page 0, then `pages` 8-bit pages of side x side that all point at one
    deflate strip of zeros (~100 KB): every page decodes, the file stays small."""
    import struct
    import zlib

    strip = zlib.compress(bytes(side * side), 9)
    count, first, entry_size = pages + 1, 8, 2 + 8 * 12 + 4
    strip_at = first + count * entry_size
    ifds = bytearray()
    for n in range(count):
        width, height, offset, size, compression = (
            (1, 1, strip_at, 1, 1) if n == 0 else (side, side, strip_at + 1, len(strip), 8)
        )
        following = 0 if n == count - 1 else first + (n + 1) * entry_size
        entries = [
            (256, 4, 1, width),
            (257, 4, 1, height),
            (258, 3, 1, 8),
            (259, 3, 1, compression),
            (262, 3, 1, 1),
            (273, 4, 1, offset),
            (278, 4, 1, height),
            (279, 4, 1, size),
        ]
        ifds += struct.pack("<H", len(entries))
        for entry in entries:
            ifds += struct.pack("<HHII", *entry)
        ifds += struct.pack("<I", following)
    return b"II*\x00" + struct.pack("<I", first) + bytes(ifds) + b"\x00" + strip


# -- running the children and the table (in the parent) ------------------------------


def deployed() -> dict[str, str]:
    """function -> "4Gi x 3" from infra/main.tf's local.functions."""
    text = (ROOT / "infra" / "main.tf").read_text()
    table = text[text.index("functions = {") :]
    found = {}
    for match in re.finditer(r"^    (\w+) = \{(.*?)^    \}", table, re.S | re.M):
        body = match.group(2)
        memory = re.search(r'memory\s*=\s*"([^"]+)"', body)
        concurrency = re.search(r"concurrency\s*=\s*(\d+)", body)
        if memory and concurrency:
            found[match.group(1)] = f"{memory.group(1)} x {concurrency.group(1)}"
    return found


def _vmhwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def run_side(side: str, case: str, folder: Path, env: dict[str, str]) -> dict:
    limit = SLOW_BASELINES.get(case, BASELINE_SECONDS) if side == "baseline" else OURS_SECONDS
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", side, case, str(folder)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base_file, result_file = folder / f"{side}-{case}.base", folder / f"{side}-{case}.json"
    started = None
    hwm = None
    while proc.poll() is None:
        if started is None and base_file.exists():
            started = time.perf_counter()
        if started is not None:
            hwm = _vmhwm_kib(proc.pid) or hwm
            if time.perf_counter() - started > limit and not result_file.exists():
                proc.kill()
                proc.wait()
                base = int(base_file.read_text())
                return {
                    "base_mib": base / 1024,
                    "peak_mib": ((hwm or base) - base) / 1024,
                    "seconds": limit,
                    "outcome": f"timeout: stopped after {limit:.0f} s",
                    "stopped": True,
                }
        time.sleep(0.05)
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0 or not result_file.exists():
        if side == "baseline" and base_file.exists():  # e.g. killed by the kernel or a failed allocation in C
            base = int(base_file.read_text())
            return {
                "base_mib": base / 1024,
                "peak_mib": ((hwm or base) - base) / 1024,
                "seconds": time.perf_counter() - (started or time.perf_counter()),
                "outcome": f"killed (exit {proc.returncode}): {stderr.strip().splitlines()[-1:] or ''}",
                "stopped": True,
            }
        raise RuntimeError(f"{side} {case} failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    return json.loads(result_file.read_text())


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        child(*argv[1:4])
        return 0
    if argv[:1] == ["--make-inputs"]:
        make_inputs(Path(argv[1]), set(argv[2:]))
        return 0
    chosen = [a for a in argv if not a.startswith("--")] or list(CASES)
    unknown = set(chosen) - set(CASES)
    if unknown:
        print(f"unknown case(s): {sorted(unknown)}; cases: {', '.join(CASES)}", file=sys.stderr)
        return 2
    if "stats-float-24mp-stored" in chosen and "stats-float-24mp-cold" not in chosen:
        # the cold case stores what the other reads
        chosen.insert(chosen.index("stats-float-24mp-stored"), "stats-float-24mp-cold")
    print(__doc__.strip().splitlines()[0])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions"), str(ROOT / "scripts"), str(ROOT)])
    sizing = deployed()
    config = _container().config
    print(
        "limits: "
        + ", ".join(
            f"{name}={getattr(config, name)}"
            for name in (
                "max_file_bytes",
                "max_upload_pixels",
                "max_frames",
                "max_animation_pixels",
                "max_jpeg_scans",
                "max_png_chunks",
                "max_pixels",
                "max_output_pixels",
                "max_render_bytes",
                "max_wide_stats_pixels",
                "histogram_max_bytes",
                "stats_memory_bytes",
            )
        )
    )
    print(
        f"machine: {os.cpu_count()} cores; baseline guard: {BASELINE_SECONDS:.0f} s, base + {BASELINE_MEMORY // GiB} GiB"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="aperture-limits-") as name:
        folder = Path(name)
        started = time.perf_counter()
        inputs = sorted({CASES[case][2] for case in chosen})
        subprocess.run([sys.executable, __file__, "--make-inputs", name, *inputs], env=env, cwd=ROOT, check=True)
        print(f"inputs made in {time.perf_counter() - started:.0f} s:")
        for input_name in inputs:
            print(f"  {input_name}: {(folder / input_name).stat().st_size / MiB:.2f} MiB")
        header = f"{'item':<4} {'case':<24} {'function':<9} {'mem':<9} {'ours':>15} {'baseline':>15} {'ratio mem':>10} {'ratio time':>10}"
        print(header)
        for case in chosen:
            item, function, _, what = CASES[case]
            ours = run_side("ours", case, folder, env)
            base = run_side("baseline", case, folder, env)
            row = {"case": case, "item": item, "function": function, "deployed": sizing.get(function, "?")}
            row.update(what=what, ours=ours, baseline=base)
            rows.append(row)
            ratio_mem = ours["peak_mib"] / base["peak_mib"] if base["peak_mib"] > 0 else float("nan")
            ratio_time = ours["seconds"] / base["seconds"] if base["seconds"] > 0 else float("nan")
            bound = "<=" if base.get("stopped") else ""
            print(
                f"{item:<4} {case:<24} {function:<9} {row['deployed']:<9} "
                f"{ours['peak_mib']:>6.0f}Mi {ours['seconds']:>6.2f}s {base['peak_mib']:>6.0f}Mi {base['seconds']:>6.2f}s "
                f"{bound + format(ratio_mem, '.3g') + 'x':>10} {bound + format(ratio_time, '.3g') + 'x':>10}"
            )
            print(f"     ours:     {ours['outcome'][:200]}")
            print(f"     baseline: {base['outcome'][:200]}")
    print("(peak: resident memory the case adds over its process's base; ratio: ours/baseline memory/time;")
    print(" <= : the baseline was stopped, so its real figures are larger and the ratio smaller)")
    if "--json" in argv:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "scripts"), str(ROOT / "scripts" / "bench"), str(ROOT)]
    sys.exit(main(sys.argv[1:]))
