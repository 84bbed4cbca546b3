"""Batch-job throughput (issue #14): a 100-image job end to end on the local stack against
the same work done by plain Pillow in one process, one image after another.

Target: with 2 transform workers, at least 1.6x the baseline's images per second.
Job: 12 MP JPEGs, operations ["resize=50", "split=True", "blur=5"], JPEG outputs.
Ours is timed from the POST /v1/jobs to the job's `done` (publishing, Pub/Sub
pushes, Firestore claims and counts, downloads from and writes to fake-gcs
included). The baseline reads the same bytes from memory and does
open -> resize(50%, LANCZOS) -> four crops -> GaussianBlur(OpenCV's sigma for
K=5) -> JPEG, sequentially. Also printed: per-item time in the worker
(claimed -> finished) and queue wait (job created -> claimed), p50/p95, and how
throughput scales with 1, 2 and 4 workers (on a 2-core machine, 4 workers
cannot beat 2). The stack runs without the event bridge, so no image
processing competes for the CPU.

Run: PYTHONPATH=functions:scripts .venv/bin/python scripts/bench/jobs.py [--images N] [--scaling-images M]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import sys
import time

import requests
from PIL import Image, ImageFilter

from benchlib import local_stack, photo_jpeg, verdict

OPERATIONS = ["resize=50", "split=True", "blur=5"]
TARGET = 1.6
BLUR_SIGMA = 0.3 * ((5 - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for a 5x5 kernel


def pillow_job(data: bytes) -> list[bytes]:
    image = Image.open(io.BytesIO(data))
    image = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
    w, h = image.size
    outputs = []
    for box in ((0, 0, w // 2, h // 2), (w // 2, 0, w, h // 2), (0, h // 2, w // 2, h), (w // 2, h // 2, w, h)):
        buffer = io.BytesIO()
        image.crop(box).filter(ImageFilter.GaussianBlur(BLUR_SIGMA)).save(buffer, "JPEG", quality=85)
        outputs.append(buffer.getvalue())
    return outputs


def baseline(photos: list[bytes]) -> float:
    """Images per second of plain Pillow, sequentially."""
    start = time.perf_counter()
    for data in photos:
        pillow_job(data)
    return len(photos) / (time.perf_counter() - start)


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def run_job(photos: list[bytes], workers: int) -> dict:
    """One job over `photos` on a fresh stack with `workers` transform processes."""
    with local_stack(events=False, workers=workers) as stack:
        from google.cloud import firestore

        from aperture.services import provisioning
        from aperture.storage.identity import IdentityStore
        from aperture.storage.key_issuers import LocalKeyIssuer

        db = firestore.Client(project=stack.project)
        *_, key = provisioning.bootstrap(
            IdentityStore(db), LocalKeyIssuer(), team_id="bench", email="bench@bench.example", role="member"
        )
        session = requests.Session()
        session.headers["x-api-key"] = key
        ids = []
        for start in range(0, len(photos), 5):
            files = [
                ("files", (f"p{start + n}.jpg", data, "image/jpeg")) for n, data in enumerate(photos[start : start + 5])
            ]
            response = session.post(stack.gateway_url + "/v1/images", files=files)
            assert response.status_code in (200, 201), response.text
            ids += [f["id"] for f in response.json()["files"]]
        warm = session.post(
            stack.gateway_url + "/v1/jobs",
            json={  # warm both workers' imports
                "images": [{"input": ids[0], "output": f"warm/{n}.jpg"} for n in range(workers)],
                "operations": OPERATIONS,
            },
        )
        _wait(session, warm.json()["status_url"])
        body = {"images": [{"input": i, "output": f"out/{n}.jpg"} for n, i in enumerate(ids)], "operations": OPERATIONS}
        start = time.perf_counter()
        response = session.post(stack.gateway_url + "/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        job = _wait(session, response.json()["status_url"])
        elapsed = time.perf_counter() - start
        assert job["status"] == "done", job["counts"]
        created = _parse(job["created_at"])
        items = job["items"]
        runs = [(_parse(i["finished_at"]) - _parse(i["started_at"])).total_seconds() for i in items]
        waits = [(_parse(i["started_at"]) - created).total_seconds() for i in items]
        return {"rate": len(photos) / elapsed, "elapsed": elapsed, "runs": runs, "waits": waits}


def _wait(session: requests.Session, url: str) -> dict:
    while True:
        job = session.get(url).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.1)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--scaling-images", type=int, default=30)
    args = parser.parse_args()
    print(__doc__.strip().splitlines()[0])
    photos = [photo_jpeg(12, seed=seed) for seed in range(args.images)]
    base = baseline(photos)
    ours = run_job(photos, workers=2)
    ratio = ours["rate"] / base
    print(
        f"{args.images} images x {OPERATIONS}: ours (2 workers) {ours['rate']:.2f} img/s "
        f"({ours['elapsed']:.1f} s), plain Pillow in one process {base:.2f} img/s: "
        f"{ratio:.2f}x, target >= {TARGET}x {verdict(ratio >= TARGET)}"
    )
    print(
        f"  per item in the worker: p50 {pct(ours['runs'], 50) * 1000:.0f} ms, "
        f"p95 {pct(ours['runs'], 95) * 1000:.0f} ms; queue wait p50 {pct(ours['waits'], 50):.2f} s, "
        f"p95 {pct(ours['waits'], 95):.2f} s"
    )
    subset = photos[: args.scaling_images]
    print(f"scaling over {len(subset)} images (img/s; Pillow in one process {baseline(subset):.2f}):")
    for workers in (1, 2, 4):
        result = run_job(subset, workers)
        print(f"  {workers} worker(s): {result['rate']:.2f} img/s, item p50 {pct(result['runs'], 50) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
