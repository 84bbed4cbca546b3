"""Peak memory of each function's heaviest path on a 100 MP image (issue 17, item 6: sizing).

Each case runs in a fresh Python process that imports what its function
imports (functions-framework, Flask, the Google clients, the function's
module), builds the function's service over in-memory repositories
(tests/unit/fakes.py: the real services and domain code, no emulator), reads
its input from a file and runs the path once. The process reports:

  baseline  its resident set before the request (runtime, imports, service);
  peak      its peak resident set (VmHWM), the request included;
  request   peak - baseline: what one request in flight adds.

An instance of `concurrency` C needs about baseline + C x request; Terraform's
`local.functions` (infra/main.tf) sizes memory from these figures with
headroom, and docs/deployment.md keeps the table.

Inputs (made once, in a temporary folder): a 100 MP photo-like JPEG (11547 x
8660, q90, sensor-like noise, as benchlib.photo_jpeg) and a 100 MP RGB PNG
that fits the 25 MiB upload limit (a smooth synthetic picture: a 100 MP
photo PNG is ~200 MB, far over the limit, so it could never be uploaded).

Run: PYTHONPATH=functions:scripts .venv/bin/python scripts/bench/memory.py [CASE ...]
     (`--json` prints the rows as JSON too, `--markdown` as the rows of the
     docs/deployment.md table, which tests/infra/test_sizing.py reads).
     Needs ~3 GB of free memory and about two minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rss import reset_peak, status_kib, trim

ROOT = Path(__file__).resolve().parents[2]
MEGAPIXELS = 100
MiB = 1024 * 1024

# case -> (function, what it does)
CASES: dict[str, tuple[str, str]] = {
    "stats": ("stats", "histograms of the 100 MP JPEG through StatsService (two-core decode, luma included)"),
    "upload-jpeg": ("upload", "UploadService.add of the 100 MP JPEG (validation, object, record)"),
    "upload-png": ("upload", "UploadService.add of the 100 MP PNG"),
    "images-png": ("images", "ImageService.render: the 100 MP JPEG as PNG, full size"),
    "images-png-resize": ("images", "ImageService.render: the 100 MP JPEG as PNG, resize=50%"),
    "images-jpeg-resize": ("images", "ImageService.render: the 100 MP JPEG as JPEG, resize=50%"),
    "process-cloud": ("process", "Processor.handle of the 100 MP JPEG, cloud provider (its clients faked)"),
    "process-local": ("process", "Processor.handle of the 100 MP JPEG, local provider (models in process)"),
    "transform": ("transform", "JobWorker.run: one item resize=50 + split + blur=5 of the 100 MP JPEG"),
    "search-cloud": ("search", "SearchService.reembed of the 100 MP JPEG, cloud provider (clients faked)"),
    "repair-cloud": (
        "repair",
        "RepairSweep.run: a stale pending record of the 100 MP JPEG processed again, cloud provider",
    ),
    "repair-local": ("repair", "RepairSweep.run: the same, local provider (models in process)"),
}

# What each function's instance imports besides the service (its handler's module).
FUNCTION_MODULES = {
    "stats": "aperture.api.stats",
    "upload": "aperture.api.uploads",
    "images": "aperture.api.images",
    "process": "aperture.events.process",
    "transform": "aperture.events.transform",
    "search": "aperture.api.search",
    "repair": "aperture.events.repair",
}


# -- measuring (in the child) ---------------------------------------------------------


def child(case: str, jpeg_path: str, png_path: str) -> dict:
    import importlib

    function, _ = CASES[case]
    import functions_framework  # noqa: F401  - what every instance runs
    from google.cloud import firestore, storage  # noqa: F401

    importlib.import_module(FUNCTION_MODULES[function])
    run = _setup(case, Path(jpeg_path), Path(png_path))
    trim()
    reset_peak()
    baseline = status_kib("VmRSS")
    started = time.perf_counter()
    outcome = run()
    seconds = time.perf_counter() - started
    peak = status_kib("VmHWM")
    return {
        "case": case,
        "function": function,
        "baseline_mib": baseline / 1024,
        "peak_mib": peak / 1024,
        "request_mib": (peak - baseline) / 1024,
        "seconds": seconds,
        "outcome": outcome,
    }


def _setup(case: str, jpeg_path: Path, png_path: Path):
    """The service of `case`, over fakes, and a callable that runs the request.
    Input bytes are read inside the request, as a function downloads them."""
    import datetime as dt
    import hashlib

    from aperture.config import Config
    from aperture.domain.records import ImageRecord, ImageStatus, object_name
    from tests.unit import fakes

    config = Config()
    uploads_bucket, derived_bucket, team = config.uploads_bucket, config.derived_bucket, "bench"
    objects, images = fakes.FakeObjectStore(), fakes.FakeImageStore()
    histograms, counters, identity = fakes.FakeHistogramStore(), fakes.FakeTeamCounters(), fakes.FakeIdentityStore()
    identity.create_team(team, "Bench")

    def stored(path: Path, **changes) -> ImageRecord:
        """The image filed as an upload would file it (object + pending record), without validating it."""
        from PIL import Image

        data = path.read_bytes()
        image_id = hashlib.sha256(data).hexdigest()
        jpeg = path.suffix == ".jpg"
        with Image.open(path) as header:  # the size only: no pixels are decoded
            width, height = header.size
        record = ImageRecord(
            team=team,
            id=image_id,
            filename=path.name,
            format="JPEG" if jpeg else "PNG",
            mime_type="image/jpeg" if jpeg else "image/png",
            extension="jpg" if jpeg else "png",
            size=len(data),
            width=width,
            height=height,
            frames=1,
            mode="RGB",
            bucket=uploads_bucket,
            object=object_name(team, image_id, "jpg" if jpeg else "png"),
            created_at=dt.datetime.now(dt.timezone.utc),
            uploaded_by={"bench": True},
            **changes,
        )
        objects.put(uploads_bucket, record.object, data, record.mime_type)
        images.create(record)
        del data
        return record

    def upload_service():
        from aperture.domain.imaging.validation import Limits
        from aperture.services.uploads import UploadService

        limits = Limits(
            max_file_bytes=config.max_file_bytes,
            max_pixels=config.max_upload_pixels,
            max_frames=config.max_frames,
            max_animation_pixels=config.max_animation_pixels,
            max_metadata_bytes=config.max_metadata_bytes,
        )
        return UploadService(objects, images, uploads_bucket, limits)

    if case == "stats":
        from aperture.services.stats import StatsService

        service = StatsService(objects, histograms, max_pixels=config.max_pixels)

        def run():
            info = objects.put(config.source_bucket, "IMG_100MP.jpg", jpeg_path.read_bytes(), "image/jpeg")
            result, source = service.histograms(info, need_luma=True)
            return f"{source}: {result.width}x{result.height} {sorted(result.bands)}"

        return run

    if case in ("upload-jpeg", "upload-png"):
        from PIL import Image

        # validation.validate turns Pillow's DecompressionBombWarning (above
        # Image.MAX_IMAGE_PIXELS, 89.5 MP by default) into a refusal, so today an
        # upload between 89.5 MP and APERTURE_MAX_UPLOAD_PIXELS is refused as "too
        # many pixels". Measure the path the limit promises: Pillow's guard at the limit.
        Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, config.max_upload_pixels)
        service = upload_service()
        path = jpeg_path if case == "upload-jpeg" else png_path

        def run():
            data = path.read_bytes()
            result = service.add(team, path.name, data, {"bench": True})
            return f"{result.status} {result.error or ''} ({len(data) / MiB:.1f} MiB)".strip()

        return run

    if case.startswith("images-"):
        from aperture.domain import transforms
        from aperture.runtime.timing import Timings
        from aperture.services.deletion import ImageDeleter
        from aperture.services.images import ImageService

        service = ImageService(
            images, objects, counters, ImageDeleter(objects, images, counters, histograms), max_pixels=config.max_pixels
        )
        extension = "png" if "png" in case else "jpg"
        query = [("resize", "50%")] if case.endswith("resize") else []

        def run():
            record = stored(jpeg_path)
            out = service.render(record, transforms.parse_query(query), extension, Timings())
            return f"{out.extension} {len(out.data) / MiB:.1f} MiB"

        return run

    if case.startswith(("process-", "repair-")) or case == "search-cloud":
        provider = _provider(case.rsplit("-", 1)[1])
        if case.startswith(("process-", "repair-")):
            from aperture.services.processing import Processor

            processor = Processor(
                objects=objects,
                images=images,
                histograms=histograms,
                counters=counters,
                identity=identity,
                uploads=upload_service(),
                links=fakes.FakeUploadLinkStore(),
                provider=lambda: provider,
                uploads_bucket=uploads_bucket,
                source_bucket=config.source_bucket,
                max_pixels=config.max_pixels,
            )
            if case.startswith("repair-"):
                from aperture.services.deletion import ImageDeleter
                from aperture.services.repair import RepairSweep

                deleter = ImageDeleter(objects, images, counters, histograms)
                sweep = RepairSweep(images, objects, counters, identity, processor, deleter, uploads_bucket)

                def run():
                    stored(jpeg_path)  # its finalize event never came; the sweep runs an hour later
                    report = sweep.run(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
                    return f"{report.pending_reprocessed} reprocessed, {report.changes} changes, errors {report.errors}"

                return run

            def run():
                record = stored(jpeg_path)
                return processor.handle(objects.event(uploads_bucket, record.object))

            return run
        from aperture.services.search import SearchService

        search = SearchService(images, objects, lambda: provider, max_pixels=config.max_pixels)

        def run():
            record = stored(jpeg_path, status=ImageStatus.PROCESSED, embedding_model="an older model")
            return str(search.reembed(team, record.id))

        return run

    if case == "transform":
        from aperture.domain.jobs import JobLimits
        from aperture.domain.records import Principal
        from aperture.services.jobs import JobService, JobWorker

        job_store, queue = fakes.FakeJobStore(), fakes.FakeJobQueue()
        limits = JobLimits(config.max_job_images, config.max_job_operations, config.max_pixels)
        jobs = JobService(
            job_store,
            queue,
            images,
            objects,
            derived_bucket=derived_bucket,
            limits=limits,
            clock=lambda: dt.datetime.now(dt.timezone.utc),
        )
        worker = JobWorker(
            job_store, objects, derived_bucket=derived_bucket, max_pixels=config.max_pixels, limits=limits
        )

        def run():
            record = stored(jpeg_path)
            principal = Principal("key_0123456789abcdef", "usr_0123456789abcdef", team, "member")
            body = {
                "images": [{"input": record.id, "output": "out.jpg"}],
                "operations": ["resize=50", "split=true", "blur=5"],
            }
            job = jobs.submit(principal, body)
            outcome = worker.run(job.job_id, 0)
            sizes = [objects.info(derived_bucket, n).size for n in sorted(objects.names(derived_bucket))]
            return f"{outcome}: {len(sizes)} outputs, {sum(sizes) / MiB:.1f} MiB"

        return run

    raise SystemExit(f"unknown case {case!r}")


def _provider(kind: str):
    """The vision provider: the local one (models in process) or the cloud one with its
    two clients faked, so that everything it does before the network (the 1600 px
    JPEG it sends, base64) runs for real."""
    if kind == "local":
        from aperture.vision.base import provider_for

        provider = provider_for("local", num_threads=1)
        provider.analyze  # noqa: B018 - models load on the first analyze(): load them before the request
        from PIL import Image

        provider.analyze(Image.new("RGB", (64, 64)))
        return provider
    from types import SimpleNamespace

    from aperture.vision.cloud import DEFAULT_DIMENSION, CloudVisionProvider

    class Annotator:
        def label_detection(self, image, **kwargs):
            assert image["content"][:2] == b"\xff\xd8"
            return SimpleNamespace(error=None, label_annotations=[SimpleNamespace(description="photo", score=0.9)])

    class Session:
        def post(self, url, json=None, **kwargs):
            assert json["instances"][0]["image"]["bytesBase64Encoded"]
            payload = {"predictions": [{"imageEmbedding": [1.0] + [0.0] * (DEFAULT_DIMENSION - 1)}]}
            return SimpleNamespace(status_code=200, json=lambda: payload)

    return CloudVisionProvider(project="bench", annotator=Annotator(), session=Session())


# -- inputs and the table (in the parent) ---------------------------------------------


def make_inputs(folder: Path) -> tuple[Path, Path]:
    import io

    import numpy as np
    from PIL import Image

    from benchlib import photo_jpeg

    jpeg = folder / "photo-100mp.jpg"
    jpeg.write_bytes(photo_jpeg(MEGAPIXELS, seed=17, quality=90))
    height = int(round((MEGAPIXELS * 1e6 * 3 / 4) ** 0.5))
    width = int(round(height * 4 / 3))
    # Smooth gradients (PNG's filters predict them almost exactly): ~1 MB per 100 MP.
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[..., 0] = x
    pixels[..., 1] = y
    pixels[..., 2] = (x + y) / 2
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    png = folder / "gradient-100mp.png"
    png.write_bytes(buffer.getvalue())
    return jpeg, png


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        print(json.dumps(child(*argv[1:4])))
        return 0
    as_json = "--json" in argv
    chosen = [a for a in argv if not a.startswith("--")] or list(CASES)
    unknown = set(chosen) - set(CASES)
    if unknown:
        print(f"unknown case(s): {sorted(unknown)}; cases: {', '.join(CASES)}", file=sys.stderr)
        return 2
    print(__doc__.strip().splitlines()[0])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions"), str(ROOT / "scripts"), str(ROOT)])
    rows = []
    with tempfile.TemporaryDirectory(prefix="aperture-memory-") as folder:
        jpeg, png = make_inputs(Path(folder))
        print(f"inputs: {jpeg.name} {jpeg.stat().st_size / MiB:.1f} MiB, {png.name} {png.stat().st_size / MiB:.1f} MiB")
        print(f"{'function':<10} {'case':<20} {'baseline':>9} {'peak':>9} {'request':>9} {'time':>7}  outcome")
        for case in chosen:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", case, str(jpeg), str(png)],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
            )
            if proc.returncode != 0:
                print(f"{case}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{row['function']:<10} {case:<20} {row['baseline_mib']:>7.0f}Mi {row['peak_mib']:>7.0f}Mi "
                f"{row['request_mib']:>7.0f}Mi {row['seconds']:>6.1f}s  {row['outcome'][:60]}"
            )
    if as_json:
        print(json.dumps(rows, indent=2))
    if "--markdown" in argv:
        print("| function | case | baseline MiB | peak MiB | request MiB | time s | path |")
        print("|---|---|---:|---:|---:|---:|---|")
        for row in rows:
            print(
                f"| {row['function']} | `{row['case']}` | {row['baseline_mib']:.0f} | {row['peak_mib']:.0f} | "
                f"{row['peak_mib'] - row['baseline_mib']:.0f} | {row['seconds']:.1f} | {CASES[row['case']][1]} |"
            )
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "scripts"), str(ROOT / "scripts" / "bench"), str(ROOT)]
    sys.exit(main(sys.argv[1:]))
