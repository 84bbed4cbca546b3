"""Coverage-guided fuzzing of the parsers that take untrusted input (issue #18, item 7).

Three targets, each a property that must hold for *every* input:

  validate  bytes -> `imaging.validation.validate` (the upload check) and, when it
            accepts, the metadata path the processing function runs
            (`pixels.open_image` -> `metadata.describe` -> `metadata.exif`).
            Only the documented refusals may escape: `Rejected` (413/422) from
            validate, `pixels.ImageError` from open_image; `exif` never raises.
            What validate accepts must describe alike (format, width, height),
            and no input may take more than --slow seconds.
  ops       text -> `parse_ops` (and the same text as one ``ops=`` query value,
            and split on & and = as a query string, `parse_query`): only
            `InvalidOperation` or a pipeline whose canonical spelling
            ``str(pipeline)`` parses again to an equal pipeline; planning it
            on a 640x480 image raises only `InvalidOperation`.
  job       lines of text -> `parse_job_ops` (InvalidOperation or a pipeline that
            round-trips through ``str``) and `domain.jobs.parse_operations`
            (ApiError 400 or a pipeline that `jobs.stored_pipeline` rebuilds,
            equal, from its canonical spelling: what a job record stores).

A finding is an unexpected exception type, a round-trip mismatch, a slow input,
or a crash / timeout / out-of-memory of the fuzzing process. Each finding's input
is saved to the findings folder (with a .txt saying what happened); exit 1 if any.

    PYTHONPATH=functions .venv/bin/python scripts/fuzz/parsers.py               # every target, 60 s each
    .venv/bin/python scripts/fuzz/parsers.py --target ops --seconds 30
    .venv/bin/python scripts/fuzz/parsers.py --engine hypothesis                 # without atheris
    .venv/bin/python scripts/fuzz/parsers.py --reproduce test-artifacts/fuzz/findings/ops-*.bin
    .venv/bin/python scripts/fuzz/parsers.py --write-corpus                     # regenerate tests/fuzz_corpus

Engine: atheris (libFuzzer, coverage-guided over aperture and Pillow's Python
plugins; `pip install -r requirements-fuzz.txt`) when importable, else
hypothesis (deterministic seeds, random and grammar-aware inputs, no coverage
feedback). Atheris runs each target in a child process (libFuzzer owns the
process), restarted after a crash until the target's time is used up.
The seed corpus is tests/fuzz_corpus/<target>/; new inputs libFuzzer finds go
to test-artifacts/fuzz/corpus/<target>/ (not committed).

The upload limits are small by default (--limits fuzz: 4 MP, 64 frames) so the
fuzzer spends its time on parsing rather than on allocating the 100 MP a
40-byte header may claim; --limits service uses the service's defaults.
docs/fuzzing.md has the findings so far.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "functions") not in sys.path:
    sys.path.insert(0, str(ROOT / "functions"))

CORPUS = ROOT / "tests" / "fuzz_corpus"
ARTIFACTS = ROOT / "test-artifacts" / "fuzz"
TARGETS = ("validate", "ops", "job")
MAX_LEN = {"validate": 65_536, "ops": 4096, "job": 4096}
SLOW_SECONDS = 3.0
OP_NAMES = (
    "crop",
    "rotate",
    "flip",
    "flop",
    "resize",
    "blur",
    "grayscale",
    "greyscale",
    "split",
    "quadrant",
    "quality",
)

# Upload limits (domain.imaging.validation.Limits fields).
FUZZ_LIMITS = {
    "max_file_bytes": 25 * 1024 * 1024,
    "max_pixels": 4_000_000,
    "max_frames": 64,
    "max_animation_pixels": 16_000_000,
    "max_metadata_bytes": 256 * 1024,
}
SERVICE_LIMITS = {
    "max_file_bytes": 25 * 1024 * 1024,
    "max_pixels": 100_000_000,
    "max_frames": 1000,
    "max_animation_pixels": 500_000_000,
    "max_metadata_bytes": 256 * 1024,
}


class Finding(Exception):
    """A property that did not hold. `key` groups findings of one cause (for deduplication)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


# ---------------------------------------------------------------- the properties


def _where(exc: BaseException) -> str:
    """Innermost frame of a traceback, as file:line (the deduplication key of an unexpected exception)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def _unexpected(stage: str, exc: BaseException) -> Finding:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Finding(f"{stage}-{type(exc).__name__}-{_where(exc)}", f"{stage}: unexpected {type(exc).__name__}\n{text}")


def check_validate(data: bytes, limits: dict[str, int] | None = None) -> str:
    """The upload path on `data`; returns what happened ("rejected 422", "accepted", ...), raises Finding."""
    from aperture.domain.imaging import metadata, pixels
    from aperture.domain.imaging.validation import Limits, Rejected, validate

    bounds = Limits(**(limits or FUZZ_LIMITS))
    try:
        valid = validate(data, bounds)
    except Rejected as exc:
        if exc.status not in (413, 422) or not exc.reason:
            raise Finding(
                f"validate-status-{exc.status}", f"validate: Rejected({exc.status}, {exc.reason!r})"
            ) from None
        return f"rejected {exc.status}"
    except Exception as exc:  # noqa: BLE001 - any other exception is the finding
        raise _unexpected("validate", exc) from None
    if valid.width * valid.height > bounds.max_pixels or not 1 <= valid.frames <= bounds.max_frames:
        raise Finding("validate-limits", f"validate accepted {valid} over the limits {bounds}")
    try:
        image = pixels.open_image(data, max_pixels=bounds.max_pixels)
    except pixels.ImageError:
        return "accepted, then refused by open_image"
    except Exception as exc:  # noqa: BLE001
        raise _unexpected("open_image", exc) from None
    try:
        facts = metadata.describe(image, len(data))
        metadata.exif(image, include_gps=True)
    except Exception as exc:  # noqa: BLE001
        raise _unexpected("metadata", exc) from None
    if (facts["format"], facts["width"], facts["height"]) != (valid.format, valid.width, valid.height):
        raise Finding(
            "validate-describe-mismatch",
            f"validate says {valid.format} {valid.width}x{valid.height}, describe says {facts}",
        )
    return "accepted"


def _round_trip(stage: str, pipeline, reparse: Callable[[str], object]) -> None:
    from aperture.domain.transforms import InvalidOperation

    canonical = str(pipeline)
    try:
        again = reparse(canonical)
    except InvalidOperation as exc:
        raise Finding(f"{stage}-canonical-refused", f"{stage}: canonical {canonical!r} is refused: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise _unexpected(f"{stage}-reparse", exc) from None
    if again != pipeline or str(again) != canonical:
        raise Finding(
            f"{stage}-round-trip",
            f"{stage}: {canonical!r} parses to {again!r} (spelled {str(again)!r}), not {pipeline!r}",
        )


def _plan(stage: str, pipeline) -> None:
    from aperture.domain.transforms import InvalidOperation

    try:
        pipeline.plan((640, 480))
    except InvalidOperation:
        pass
    except Exception as exc:  # noqa: BLE001
        raise _unexpected(f"{stage}-plan", exc) from None


def check_ops(text: str) -> str:
    """`parse_ops(text)` and the same text through `parse_query`; returns "parsed" or "refused"."""
    from aperture.domain.transforms import InvalidOperation, parse_ops, parse_query

    outcome = "refused"
    try:
        pipeline = parse_ops(text)
    except InvalidOperation:
        pipeline = None
    except Exception as exc:  # noqa: BLE001
        raise _unexpected("parse_ops", exc) from None
    if pipeline is not None:
        outcome = "parsed"
        _round_trip("parse_ops", pipeline, lambda canonical: parse_ops(canonical, pipeline.limits))
        _plan("parse_ops", pipeline)
    try:
        as_query = parse_query([("ops", text)])
    except InvalidOperation:
        as_query = None
    except Exception as exc:  # noqa: BLE001
        raise _unexpected("parse_query-ops", exc) from None
    if as_query != pipeline:
        raise Finding(
            "parse_query-ops-differs", f"ops={text!r}: parse_query gives {as_query!r}, parse_ops {pipeline!r}"
        )
    pairs = [tuple(part.partition("=")[::2]) for part in text.split("&")]
    try:
        query = parse_query(pairs, ignore=["key"])
    except InvalidOperation:
        return outcome
    except Exception as exc:  # noqa: BLE001
        raise _unexpected("parse_query", exc) from None
    _round_trip("parse_query", query, lambda canonical: parse_ops(canonical, query.limits))
    _plan("parse_query", query)
    return outcome


def check_job(items: list[str]) -> str:
    """`parse_job_ops(items)` and `jobs.parse_operations(items)`; returns "parsed" or "refused"."""
    from aperture.domain import jobs
    from aperture.domain.errors import ApiError
    from aperture.domain.transforms import InvalidOperation, parse_job_ops, parse_ops

    outcome = "refused"
    try:
        pipeline = parse_job_ops(items)
    except InvalidOperation:
        pass
    except Exception as exc:  # noqa: BLE001
        raise _unexpected("parse_job_ops", exc) from None
    else:
        outcome = "parsed"
        _round_trip("parse_job_ops", pipeline, lambda canonical: parse_ops(canonical, pipeline.limits))
        _plan("parse_job_ops", pipeline)
    limits = jobs.JobLimits()
    try:
        job = jobs.parse_operations(items, limits)
    except ApiError as exc:
        if exc.status != 400:
            raise Finding(f"parse_operations-status-{exc.status}", f"parse_operations: ApiError {exc.status}") from None
        return outcome
    except Exception as exc:  # noqa: BLE001
        raise _unexpected("parse_operations", exc) from None
    _round_trip("parse_operations", job, lambda canonical: jobs.stored_pipeline(canonical, limits))
    _plan("parse_operations", job)
    return "parsed"


def text_of(data: bytes) -> str:
    """The fuzzer's bytes as the text a client sends (UTF-8; undecodable bytes become U+FFFD)."""
    return data.decode("utf-8", "replace")


def job_items(data: bytes) -> list[str]:
    """A job's operations: one per line."""
    return text_of(data).split("\n")


def check(target: str, data: bytes, limits: dict[str, int] | None = None) -> str:
    if target == "validate":
        return check_validate(data, limits)
    if target == "ops":
        return check_ops(text_of(data))
    return check_job(job_items(data))


# ---------------------------------------------------------------- findings


@dataclass
class Recorder:
    """Saves each finding's input (at most `per_key` per cause) and counts them."""

    folder: Path
    target: str
    per_key: int = 3

    def __post_init__(self) -> None:
        self.keys: dict[str, int] = {}
        self.saved: set[tuple[str, str]] = set()
        self.cases = 0
        self.slow = SLOW_SECONDS

    def run(self, data: bytes, limits: dict[str, int] | None = None) -> None:
        self.cases += 1
        started = time.perf_counter()
        try:
            check(self.target, data, limits)
        except Finding as finding:
            self.save(finding.key, str(finding), data)
            return
        elapsed = time.perf_counter() - started
        if elapsed > self.slow:
            self.save(
                f"slow-{self.target}", f"{self.target}: {elapsed:.1f} s for one input (limit {self.slow} s)", data
            )

    def save(self, key: str, message: str, data: bytes) -> None:
        digest = hashlib.sha1(data).hexdigest()
        if (key, digest) in self.saved:
            return  # libFuzzer runs an input again when it minimizes or merges
        self.saved.add((key, digest))
        seen = self.keys.get(key, 0)
        self.keys[key] = seen + 1
        if seen >= self.per_key:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:80]
        stem = self.folder / f"{self.target}-{safe}-{digest[:12]}"
        stem.with_suffix(".bin").write_bytes(data)
        stem.with_suffix(".txt").write_text(f"{message}\n\ninput: {data[:400]!r}\n")
        print(f"FINDING [{self.target}] {key}: {stem}.bin", flush=True)
        print("  " + message.splitlines()[0][:300], flush=True)


# ---------------------------------------------------------------- seed corpus


def _pattern(size: tuple[int, int], mode: str, seed: int):
    """A small deterministic image with gradients and noise (so encoders have something to code)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) * 4 % 256], axis=-1)
    noisy = np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(noisy, "RGB")
    if mode == "RGBA":
        alpha = Image.fromarray((x * 255 // max(1, width - 1)).astype(np.uint8), "L")
        image.putalpha(alpha)
        return image
    return image.convert(mode)


def _exif(orientation: int = 6) -> bytes:
    from PIL import ExifTags, Image

    exif = Image.Exif()
    base, ifd = ExifTags.Base, ExifTags.IFD
    exif[base.Make] = "Fuzz"
    exif[base.Model] = "Fuzz Model 1"
    exif[base.Orientation] = orientation
    exif[base.Software] = "aperture seed"
    exif[base.DateTime] = "2024:05:06 07:08:09"
    sub = exif.get_ifd(ifd.Exif)
    sub[base.DateTimeOriginal] = "2024:05:06 07:08:09"
    sub[base.ExposureTime] = 1 / 125
    sub[base.FNumber] = 2.8
    sub[base.ISOSpeedRatings] = 200
    sub[base.FocalLength] = 35.0
    sub[base.LensModel] = "Fuzz 35mm"
    gps = exif.get_ifd(ifd.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (2.0, 21.0, 3.0)
    gps[ExifTags.GPS.GPSAltitude] = 35.5
    gps[ExifTags.GPS.GPSAltitudeRef] = b"\x00"
    return exif.tobytes()


def seed_images() -> dict[str, bytes]:
    """Small valid images of every accepted format, with progressive, animated and EXIF variants."""
    from PIL import Image, PngImagePlugin

    def save(image, fmt: str, **options) -> bytes:
        out = io.BytesIO()
        image.save(out, fmt, **options)
        return out.getvalue()

    rgb, rgba = _pattern((16, 12), "RGB", 1), _pattern((16, 12), "RGBA", 2)
    frames = [_pattern((12, 10), "RGB", seed) for seed in range(3)]
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "seed")
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    return {
        "png-rgb.png": save(rgb, "PNG"),
        "png-rgba-text.png": save(rgba, "PNG", pnginfo=text, exif=_exif(3)),
        "png-palette-transparent.png": save(palette, "PNG", transparency=0),
        "png-gray16.png": save(rgb.convert("L").convert("I;16"), "PNG"),
        "png-la.png": save(rgb.convert("LA"), "PNG"),
        "apng-animated.png": save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=50, loop=0),
        "jpeg-baseline-exif.jpg": save(rgb, "JPEG", quality=80, exif=_exif(6)),
        "jpeg-progressive.jpg": save(rgb, "JPEG", quality=80, progressive=True),
        "jpeg-gray.jpg": save(rgb.convert("L"), "JPEG", quality=70),
        "jpeg-cmyk.jpg": save(rgb.convert("CMYK"), "JPEG", quality=70),
        "jpeg-restart.jpg": save(_pattern((32, 24), "RGB", 5), "JPEG", quality=60, restart_marker_blocks=1),
        "mpo-two-frames.mpo": save(rgb, "MPO", save_all=True, append_images=[frames[0]]),
        "gif-still.gif": save(palette, "GIF", transparency=0),
        "gif-animated.gif": save(
            frames[0], "GIF", save_all=True, append_images=frames[1:], duration=[40, 60, 80], loop=0
        ),
        "webp-lossy.webp": save(rgb, "WEBP", quality=60),
        "webp-lossless-alpha.webp": save(rgba, "WEBP", lossless=True, exif=_exif(8)),
        "webp-animated.webp": save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50, quality=50),
        "tiff-raw-exif.tif": save(rgb, "TIFF", exif=_exif(2)),
        "tiff-deflate-alpha.tif": save(rgba, "TIFF", compression="tiff_adobe_deflate"),
        "tiff-multipage.tif": save(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "bmp-rgb.bmp": save(rgb, "BMP"),
        "bmp-palette.bmp": save(palette, "BMP"),
    }


# The grammar's examples (docs/transforms.md: the API, the operations table, the
# examples, the limits table), valid and refused alike.
OPS_SEEDS = (
    "crop:10,10,200,200|rotate:33|resize:50%|blur:2",
    "resize:512x512|grayscale|quality:70",
    "resize=512x512&rotate=90&grayscale=1&quality=80",
    "crop:10,10,200,200",
    "rotate:33",
    "rotate:-90",
    "rotate:-12.5",
    "flip:v",
    "flip:h",
    "flip:hv",
    "flip",
    "flop",
    "resize:512x512",
    "resize:512x",
    "resize:x512",
    "resize:512x512!",
    "resize:50%",
    "resize:50",
    "blur:5",
    "blur:0,2",
    "blur:999",
    "grayscale",
    "greyscale:0",
    "split",
    "split:false",
    "quadrant:tl",
    "split:top-right",
    "quality:80",
    "rotate:1e309",
    "rotate:inf",
    "resize:0",
    "resize:0x10",
    "resize:-5x10",
    "resize:100000x100000",
    "resize:5000%",
    " Resize : 25.5 % | ROTATE : +.5 ",
    "ops=resize:10x10|flip&key=abc&grayscale=yes",
)

# Findings of this fuzzer, kept as seeds (and as regression tests in tests/unit/fuzz).
REGRESSIONS = (
    "blur:1,0.000001",  # canonical was blur:1,1e-06, which the grammar refuses (number() used repr)
    "rotate:0.000000001|resize:0.000000001%",  # likewise rotate:1e-09, resize:1e-09%
    "blur:3,0.1234567",  # spelled blur:3,0.123457 but held sigma 0.1234567: two renders, one cache key
    "blur:1,0.000000001",  # spelled blur:1,0, which is blur:1 (sigma 0.5)
    "rotate:-340.2",  # held 19.80000000000001, spelled rotate:19.8
)

JOB_SEEDS = (
    "resize=50\nsplit=true\nblur=5",
    "resize=50%\nsplit=True\nblur=5",
    "split=None\nresize=0.06",
    "split=False\nresize=100",
    "split=1\nrotate=90\ncrop=0,0,10,10",
    "flip=h\nflop\ngrayscale=0\nquality=80",
    "split=tl\nblur=0,2\nrotate=-45.5",
    "resize=512x512",
    "resize=200\nblur=-1",
    "resize=12\nrotate=-340.2",
    "split=1\nrotate=0.000000001",
)


def write_corpus(folder: Path = CORPUS) -> None:
    for target in TARGETS:
        (folder / target).mkdir(parents=True, exist_ok=True)
    for name, data in seed_images().items():
        (folder / "validate" / name).write_bytes(data)
    for seeds, target in ((OPS_SEEDS + REGRESSIONS, "ops"), (JOB_SEEDS, "job")):
        for index, text in enumerate(seeds):
            (folder / target / f"{index:02d}.txt").write_text(text)
    total = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    print(f"wrote the seed corpus to {folder}: {total} bytes")


def corpus(target: str, folder: Path = CORPUS) -> list[bytes]:
    """The seed corpus of `target`, sorted by name (generated when the folder is missing)."""
    path = folder / target
    if not path.is_dir():
        if target == "validate":
            return [data for _, data in sorted(seed_images().items())]
        return [text.encode() for text in (OPS_SEEDS + REGRESSIONS if target == "ops" else JOB_SEEDS)]
    return [file.read_bytes() for file in sorted(path.iterdir()) if file.is_file()]


# ---------------------------------------------------------------- engines


@dataclass
class Result:
    target: str
    engine: str
    cases: int
    seconds: float
    findings: dict[str, int]


def _instrumented_imports() -> None:
    """Import what the targets run under atheris' instrumentation (aperture, and Pillow's
    plugins, which are Python: coverage feedback reaches the header parsers)."""
    import atheris

    with atheris.instrument_imports(include=["aperture", "PIL"]):
        from PIL import Image

        import aperture.domain.imaging.metadata
        import aperture.domain.imaging.pixels
        import aperture.domain.imaging.validation
        import aperture.domain.jobs
        import aperture.domain.transforms  # noqa: F401

        Image.init()  # every plugin, now, so that they are instrumented too


def atheris_child(target: str, folder: Path, limits: dict[str, int], slow: float, libfuzzer_args: list[str]) -> None:
    """The child process: libFuzzer owns it (atheris.Fuzz does not return)."""
    import atheris

    _instrumented_imports()
    recorder = Recorder(folder, target)
    recorder.slow = slow

    def one(data: bytes) -> None:
        recorder.run(data, limits)

    atheris.Setup([sys.argv[0], *libfuzzer_args], one)
    atheris.Fuzz()


_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STAT_RUNS = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_FINDING = re.compile(r"^FINDING \[\w+\] (\S+):", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


# libFuzzer dictionaries: the grammar's tokens; the image formats' magic numbers and chunk names.
_TEXT_TOKENS = (
    *OP_NAMES,
    *":=|,x%!.+-&",
    "ops=",
    "tl",
    "top-left",
    "bottomright",
    "hv",
    "vertical",
    "true",
    "False",
    "None",
    "off",
    "123456789",
    "0.000000001",
    "359.999999999",
    "\\x0a",
)
_IMAGE_TOKENS = (
    "\\xff\\xd8\\xff",
    "\\xff\\xd9",
    "\\xff\\xc0",
    "\\xff\\xc2",
    "\\xff\\xc4",
    "\\xff\\xda",
    "\\xff\\xdb",
    "\\xff\\xe1",
    "\\xff\\xe2",
    "\\xff\\xdd",
    "Exif\\x00\\x00",
    "MPF\\x00",
    "\\x89PNG\\x0d\\x0a\\x1a\\x0a",
    "IHDR",
    "IDAT",
    "IEND",
    "PLTE",
    "tRNS",
    "tEXt",
    "zTXt",
    "iTXt",
    "eXIf",
    "iCCP",
    "acTL",
    "fcTL",
    "fdAT",
    "GIF89a",
    "NETSCAPE2.0",
    "\\x21\\xf9\\x04",
    "\\x2c",
    "\\x3b",
    "RIFF",
    "WEBP",
    "VP8 ",
    "VP8L",
    "VP8X",
    "ANIM",
    "ANMF",
    "ALPH",
    "EXIF",
    "II*\\x00",
    "MM\\x00*",
    "BM",
    "\\x00\\x00\\x00\\x00",
    "\\xff\\xff\\xff\\x7f",
)


def _dictionary(target: str) -> Path:
    path = ARTIFACTS / f"{target}.dict"
    tokens = _IMAGE_TOKENS if target == "validate" else _TEXT_TOKENS
    path.write_text("".join(f'"{token}"\n' for token in tokens))
    return path


def run_atheris(target: str, seconds: float, folder: Path, limits_name: str, slow: float) -> Result:
    work = ARTIFACTS / "corpus" / target
    work.mkdir(parents=True, exist_ok=True)
    dictionary = _dictionary(target)
    folder.mkdir(parents=True, exist_ok=True)
    seeds = CORPUS / target
    findings: dict[str, int] = {}
    cases, started, restarts = 0, time.monotonic(), 0
    while restarts < 10:
        left = seconds - (time.monotonic() - started)
        if left < 1:
            break
        args = [
            f"-max_total_time={max(1, int(left))}",
            f"-max_len={MAX_LEN[target]}",
            "-timeout=30",
            "-rss_limit_mb=3072",
            f"-artifact_prefix={folder}/{target}-",
            "-print_final_stats=1",
            "-use_value_profile=1",
            f"-dict={dictionary}",
            str(work),
        ]
        if seeds.is_dir():
            args.append(str(seeds))
        command = [sys.executable, __file__, "--atheris-child", target, "--findings", str(folder)]
        command += ["--limits", limits_name, "--slow", str(slow), "--", *args]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "functions"), os.environ.get("PYTHONPATH")])),
        }
        proc = subprocess.run(command, capture_output=True, text=True, env=env, errors="replace")
        output = proc.stdout + proc.stderr
        runs = _STAT_RUNS.findall(output) or _DONE.findall(output)
        cases += int(runs[-1][0] if isinstance(runs[-1], tuple) else runs[-1]) if runs else 0
        for key in _FINDING.findall(proc.stdout):
            findings[key] = findings.get(key, 0) + 1
        for line in proc.stdout.splitlines():
            if line.startswith(("FINDING", "  ")):
                print(line, flush=True)
        if proc.returncode != 0:
            artifacts = _ARTIFACT.findall(output)
            kind = "crash"
            for word in ("timeout", "out-of-memory", "deadly signal", "Python exception"):
                if word in output:
                    kind = word.replace(" ", "-")
                    break
            key = f"libfuzzer-{kind}"
            findings[key] = findings.get(key, 0) + 1
            log = folder / f"{target}-{kind}-{restarts}.log"
            log.write_text(output[-20_000:])
            print(f"FINDING [{target}] {key}: {', '.join(artifacts) or log}", flush=True)
            restarts += 1
            if not artifacts and "Done" not in output and "INFO:" not in output:
                print(output[-3000:], file=sys.stderr)
                break  # the child did not even start: no point in retrying
    return Result(target, "atheris", cases, time.monotonic() - started, findings)


def run_hypothesis(target: str, seconds: float, folder: Path, limits_name: str, slow: float, seed: int = 0) -> Result:
    """Hypothesis as the fallback engine: chunks of examples under fixed seeds until the time is up."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as fixed_seed

    recorder = Recorder(folder, target)
    recorder.slow = slow
    limits = SERVICE_LIMITS if limits_name == "service" else FUZZ_LIMITS
    strategy = strategies()[target]
    started = time.monotonic()
    chunk = seed
    while time.monotonic() - started < seconds:

        @fixed_seed(chunk)
        @settings(
            max_examples=200,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def one(data: bytes) -> None:
            recorder.run(data, limits)

        one()
        chunk += 1
    return Result(target, "hypothesis", recorder.cases, time.monotonic() - started, dict(recorder.keys))


# ---------------------------------------------------------------- hypothesis strategies (also used by the tests)

_ARG_ALPHABET = "0123456789+-.,xX%! \ttlrbhvyesnofaTFN\u00a0\u0660"


def strategies() -> dict[str, object]:
    """Hypothesis strategies giving each target's input as bytes: grammar-aware spellings,
    mutations of the seed corpus, and arbitrary bytes."""
    from hypothesis import strategies as st

    number = st.one_of(
        st.integers(-(10**10), 10**10).map(str),
        st.decimals(-(10**10), 10**10, allow_nan=False, allow_infinity=False).map(lambda d: format(d, "f")),
        st.floats(-1e4, 1e4, allow_nan=False).map(repr),
        st.sampled_from(["", ".5", "-.5", "+1", "0", "-0", "360", "-360", "0.0000000001", "359.9999999999", "1e3"]),
    )
    argument = st.one_of(
        number,
        st.tuples(number, number).map(",".join),
        st.lists(number, min_size=4, max_size=4).map(",".join),
        st.tuples(number, st.sampled_from(["x", "X", " x "]), number, st.sampled_from(["", "!", " ! "])).map("".join),
        number.map(lambda n: n + "%"),
        st.sampled_from(
            ["tl", "TR", "bottom-left", "topright", "h", "v", "hv", "both", "true", "False", "None", "yes"]
        ),
        st.text(_ARG_ALPHABET, max_size=12),
    )
    name = st.one_of(st.sampled_from(OP_NAMES), st.sampled_from(OP_NAMES).map(str.upper), st.text(max_size=6))

    def op(separator: str):
        return st.one_of(
            st.tuples(name, st.sampled_from([separator, f" {separator} "]), argument).map("".join),
            name,
        )

    def mutated(seeds: list[bytes]):
        return st.tuples(
            st.sampled_from(seeds),
            st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 20), st.binary(max_size=8)), max_size=4),
        ).map(lambda pair: _mutate(*pair))

    ops_seeds = corpus("ops")
    job_seeds = corpus("job")
    image_seeds = corpus("validate")
    return {
        "ops": st.one_of(
            st.lists(op(":"), max_size=6).map("|".join).map(str.encode),
            mutated(ops_seeds),
            st.text(max_size=60).map(str.encode),
        ),
        "job": st.one_of(
            st.lists(op("="), max_size=6).map("\n".join).map(str.encode),
            mutated(job_seeds),
            st.binary(max_size=60),
        ),
        "validate": st.one_of(mutated(image_seeds), st.binary(max_size=200)),
    }


def _mutate(data: bytes, edits: Iterable[tuple[int, int, bytes]]) -> bytes:
    """Apply (kind, position, bytes) edits: 0 overwrite, 1 insert, 2 truncate."""
    out = bytearray(data)
    for kind, position, chunk in edits:
        at = position % (len(out) + 1)
        if kind == 0:
            out[at : at + len(chunk)] = chunk
        elif kind == 1:
            out[at:at] = chunk
        else:
            del out[at:]
    return bytes(out)


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    libfuzzer_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, libfuzzer_args = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=(*TARGETS, "all"), default="all")
    parser.add_argument("--seconds", type=float, default=60.0, help="per target (default 60)")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--findings", type=Path, default=ARTIFACTS / "findings", help="where finding inputs go")
    parser.add_argument("--limits", choices=("fuzz", "service"), default="fuzz", help="upload limits for validate")
    parser.add_argument("--slow", type=float, default=SLOW_SECONDS, help="seconds one input may take")
    parser.add_argument("--reproduce", type=Path, nargs="+", help="run these saved inputs (target from the name)")
    parser.add_argument("--write-corpus", action="store_true", help="regenerate tests/fuzz_corpus and exit")
    parser.add_argument("--atheris-child", choices=TARGETS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    limits = SERVICE_LIMITS if args.limits == "service" else FUZZ_LIMITS

    if args.write_corpus:
        write_corpus()
        return 0
    if args.atheris_child:
        atheris_child(args.atheris_child, args.findings, limits, args.slow, libfuzzer_args)
        return 0
    if args.reproduce:
        failed = 0
        for path in args.reproduce:
            target = path.name.split("-", 1)[0]
            target = target if target in TARGETS else (args.target if args.target != "all" else "validate")
            try:
                print(f"{path}: {check(target, path.read_bytes(), limits)}")
            except Finding as finding:
                failed += 1
                print(f"{path}: FINDING {finding.key}\n{finding}")
        return 1 if failed else 0

    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "hypothesis"
    targets = TARGETS if args.target == "all" else (args.target,)
    results = []
    for target in targets:
        print(f"--- {target}: {engine}, {args.seconds:g} s", flush=True)
        if engine == "atheris":
            result = run_atheris(target, args.seconds, args.findings, args.limits, args.slow)
        else:
            result = run_hypothesis(target, args.seconds, args.findings, args.limits, args.slow)
        results.append(result)
        rate = result.cases / result.seconds if result.seconds else 0
        print(
            f"{target}: {result.cases} cases in {result.seconds:.0f} s ({rate:.0f}/s), "
            f"{sum(result.findings.values())} finding(s) in {len(result.findings)} cause(s)",
            flush=True,
        )
        for key, count in sorted(result.findings.items()):
            print(f"  {key}: {count}", flush=True)
    total = sum(len(result.findings) for result in results)
    print(f"findings: {total} cause(s); inputs in {args.findings}" if total else "findings: none")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
