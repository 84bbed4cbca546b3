"""Benchmark of uploads (issue: upload).

Target: 100 x 1 MB JPEGs through the gateway (`POST /v1/images`, validated,
content-addressed, recorded) reach at least 50% of the throughput of writing the
same bytes straight to the bucket with the storage client. Both sides run with
the same number of concurrent clients, and alternate round by round. The target
is judged on multi-file requests (ten files each, the way S6 takes many files);
one file per request is printed for reference (each request also pays a key
check, a record write and an audit write, see docs/decisions.md).

Before the timed rounds, both sides warm up on small images (WARMUP_REQUESTS
requests of ten, and as many single writes): the Firestore and Pub/Sub
emulators are JVMs whose JIT compilers otherwise spend the first few hundred
operations compiling, on the same two cores, which is start-up cost of the
emulators and not the steady state of either path.

The stack runs without its event bridge: neither side's writes are processed
meanwhile (labelling and histograms of our uploads would otherwise compete
for the two cores while the baseline's plain objects cost almost nothing),
so both sides measure the request path alone.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from benchlib import local_stack, photo_jpeg, verdict

FILES = 100
ROUNDS = 3  # baseline and ours alternate, so drift on a shared machine hits both
SETTLE_SECONDS = 2.0
# (files per request, concurrent clients); the target is judged on multi-file
# requests, the way the API takes many files (S6); one file per request is shown
# for reference: each request also pays its key check, record and audit writes.
CONFIGS = [(10, 1), (10, 4), (1, 1), (1, 4)]
TARGET_FILES_PER_REQUEST = 10
WARMUP_REQUESTS = 100


def unique(data: bytes, tag: str) -> bytes:
    """The same photo made distinct (content addressing) by a JPEG comment after SOI."""
    comment = tag.encode()
    return data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]


def warm_up(ours, baseline) -> None:
    """Untimed: small images through both paths, four at a time, until the emulators' JITs have settled."""
    tiny = photo_jpeg(0.003)  # about 63 x 47
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(ours, [[unique(tiny, f"warm-{i}-{j}") for j in range(10)] for i in range(WARMUP_REQUESTS)]))
        list(pool.map(baseline, [unique(tiny, f"warm-base-{i}") for i in range(WARMUP_REQUESTS * 10)]))
    print(
        f"warm-up: {WARMUP_REQUESTS} requests of 10 small images and {WARMUP_REQUESTS * 10} direct writes "
        f"({time.perf_counter() - started:.1f} s, untimed)"
    )


def throughput(fn, payloads: list, workers: int) -> float:
    """MB/s for sending every payload (bytes, or a list of files for one request) with `workers` senders."""
    time.sleep(SETTLE_SECONDS)  # let background work (audit batches, Firestore) settle
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fn, payloads))
    total = sum(len(p) if isinstance(p, bytes) else sum(map(len, p)) for p in payloads)
    return total / 1e6 / (time.perf_counter() - start)


def main() -> int:
    with local_stack(events=False) as stack:
        from google.cloud import firestore, storage

        from aperture.services import provisioning
        from aperture.storage import clients
        from aperture.storage.identity import IdentityStore
        from aperture.storage.key_issuers import LocalKeyIssuer

        *_, key = provisioning.bootstrap(
            IdentityStore(firestore.Client(project=stack.project)),
            LocalKeyIssuer(),
            team_id="bench",
            email="bench@bench.example",
            role="member",
        )
        # The baseline gets the same client tuning as the functions, so the ratio is the upload path's own cost.
        bucket = clients.without_environment_lookups(storage.Client(project=stack.project)).bucket(stack.uploads_bucket)
        local = threading.local()

        def session() -> requests.Session:
            if not hasattr(local, "session"):
                local.session = requests.Session()
            return local.session

        def ours(batch: list[bytes]) -> None:
            response = session().post(
                stack.gateway_url + "/v1/images",
                headers={"x-api-key": key},
                files=[("files", (f"photo{i}.jpg", d, "image/jpeg")) for i, d in enumerate(batch)],
            )
            assert response.status_code == 201, response.text

        def empty_bucket() -> None:
            # fake-gcs keeps objects in memory: a bucket grown by GBs slows both sides unevenly.
            for blob in bucket.client.list_blobs(bucket):
                blob.delete()

        def baseline(data: bytes) -> None:
            bucket.blob(f"baseline/{uuid.uuid4().hex}.jpg").upload_from_string(data, content_type="image/jpeg")

        photos = [photo_jpeg(3.8, seed=seed, quality=92) for seed in range(FILES)]
        size = sum(map(len, photos)) / FILES / 1e6
        print(__doc__.strip().splitlines()[0])
        warm_up(ours, baseline)
        empty_bucket()
        for per_request, workers in CONFIGS:
            base_runs, our_runs = [], []
            for round_ in range(ROUNDS):
                tag = f"{per_request}-{workers}-{round_}"
                base_runs.append(throughput(baseline, [unique(p, "b" + tag) for p in photos], workers))
                empty_bucket()
                files = [unique(p, "o" + tag) for p in photos]
                batches = [files[i : i + per_request] for i in range(0, FILES, per_request)]
                our_runs.append(throughput(ours, batches, workers))
                empty_bucket()
            mine, base = statistics.median(our_runs), statistics.median(base_runs)
            ratio = mine / base
            judged = per_request == TARGET_FILES_PER_REQUEST
            print(
                f"{FILES} x {size:.2f} MB, {per_request:>2} per request, {workers} concurrent: ours {mine:.1f} MB/s, "
                f"straight to the bucket {base:.1f} MB/s (medians of {ROUNDS}); ratio {ratio:.0%} "
                + (f"(target >= 50%) {verdict(ratio >= 0.5)}" if judged else "(for reference)")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
