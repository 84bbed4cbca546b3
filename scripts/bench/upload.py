"""Benchmark of uploads (issue: upload).

Target: 100 x 1 MB JPEGs through the gateway (`POST /v1/images`, validated,
content-addressed, recorded) reach at least 50% of the throughput of writing the
same bytes straight to the bucket with the storage client. Both sides run with
the same number of concurrent clients.

The stack runs without its event bridge: neither side's writes are processed
meanwhile (labelling and histograms of our uploads would otherwise compete
for the two cores while the baseline's plain objects cost almost nothing),
so both sides measure the request path alone.
"""

from __future__ import annotations

import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from benchlib import local_stack, photo_jpeg, verdict

FILES = 100
CONCURRENCY = (1, 4)


SETTLE_SECONDS = 4.0


def throughput(fn, payloads: list, workers: int) -> float:
    """MB/s for sending every payload (bytes, or a list of files for one request) with `workers` senders.

    """
    time.sleep(SETTLE_SECONDS)  # let background work (audit batches, Firestore) settle
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fn, payloads))
    total = sum(len(p) if isinstance(p, bytes) else sum(map(len, p)) for p in payloads)
    return total / 1e6 / (time.perf_counter() - start)


def main() -> int:
    with local_stack(events=False) as stack:
        from google.cloud import firestore, storage

        from aperture import provisioning
        from aperture.identity_store import IdentityStore
        from aperture.key_issuers import LocalKeyIssuer

        *_, key = provisioning.bootstrap(IdentityStore(firestore.Client(project=stack.project)), LocalKeyIssuer(),
                                         team_id="bench", email="bench@bench.example", role="member")
        bucket = storage.Client(project=stack.project).bucket(stack.uploads_bucket)
        local = __import__("threading").local()

        def session() -> requests.Session:
            if not hasattr(local, "session"):
                local.session = requests.Session()
            return local.session

        def ours(data: bytes | list[bytes]) -> None:
            batch = data if isinstance(data, list) else [data]
            response = session().post(stack.gateway_url + "/v1/images", headers={"x-api-key": key},
                                      files=[("files", (f"photo{i}.jpg", d, "image/jpeg")) for i, d in enumerate(batch)])
            assert response.status_code == 201, response.text

        def baseline(data: bytes) -> None:
            bucket.blob(f"baseline/{uuid.uuid4().hex}.jpg").upload_from_string(data, content_type="image/jpeg")

        print(__doc__.strip().splitlines()[0])
        seed = 0
        for workers in CONCURRENCY:
            batches = []
            for _ in range(2):
                batch = []
                for _ in range(FILES):
                    batch.append(photo_jpeg(3.2, seed=seed, quality=92))
                    seed += 1
                batches.append(batch)
            size = sum(map(len, batches[0])) / FILES / 1e6
            ours(photo_jpeg(0.5, seed=10_000 + workers))  # warm
            base = throughput(baseline, batches[0], workers)
            mine = throughput(ours, batches[1], workers)
            ratio = mine / base
            print(f"{FILES} x {size:.2f} MB, {workers} concurrent, one file per request: ours {mine:.1f} MB/s, "
                  f"straight to the bucket {base:.1f} MB/s; ratio {ratio:.0%} (target >= 50%) {verdict(ratio >= 0.5)}")
        batches = [[photo_jpeg(3.2, seed=seed + i * 10 + j, quality=92) for j in range(10)] for i in range(FILES // 10)]
        seed += FILES
        flat = [d for b in batches for d in b]
        for workers in CONCURRENCY:
            base = throughput(baseline, flat, workers)
            mine = throughput(ours, batches, workers)
            ratio = mine / base
            print(f"{FILES} x {size:.2f} MB, {workers} concurrent, ten files per request: ours {mine:.1f} MB/s, "
                  f"straight to the bucket {base:.1f} MB/s; ratio {ratio:.0%} (target >= 50%) {verdict(ratio >= 0.5)}")
            batches = [[photo_jpeg(3.2, seed=seed + i * 10 + j, quality=92) for j in range(10)] for i in range(FILES // 10)]
            seed += FILES
            flat = [d for b in batches for d in b]
    return 0


if __name__ == "__main__":
    sys.exit(main())
