"""Search latency (issue #15): /v1/search through the local gateway over 10,000 images of one
team, against a brute-force numpy scan of the same vectors in process.

The vectors are written straight into the Firestore emulator (random unit
vectors of the local provider's 384 dimensions, tagged with its model), so
the run measures the search path, not processing. Printed: median and p95 of
the end-to-end request for a repeated query (its embedding comes from the
per-instance cache, so this is the vector query and the answer) and for
distinct queries (embedding included), the query-embedding time alone, the
text model's load time (the first query of an instance), and the numpy scan.
There is no ratio target: the emulator scans every vector in Java, which the
cloud's vector index does not; docs/search.md estimates the cloud's latency.

Run: PYTHONPATH=functions:scripts .venv/bin/python scripts/bench/search.py [--images N] [--queries M]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time

import numpy as np
import requests

from benchlib import local_stack

QUERIES = [
    "a dog lying on a rug",
    "cup of coffee",
    "city street at night",
    "a red car",
    "mountains in the snow",
    "a cat on a sofa",
    "flowers in a garden",
    "people at the beach",
    "a plate of food",
    "an old building",
]


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=40)
    args = parser.parse_args()
    print(__doc__.strip().splitlines()[0])
    with local_stack(events=False) as stack:
        from google.cloud import firestore
        from google.cloud.firestore_v1.vector import Vector

        from aperture.services import provisioning
        from aperture.storage.identity import IdentityStore
        from aperture.storage.key_issuers import LocalKeyIssuer
        from aperture.vision.base import provider_for

        provider = provider_for("local")
        db = firestore.Client(project=stack.project)
        *_, key = provisioning.bootstrap(
            IdentityStore(db), LocalKeyIssuer(), team_id="bench", email="bench@bench.example", role="member"
        )
        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(args.images, provider.dimensions)).astype(np.float64)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        now = dt.datetime.now(dt.timezone.utc)
        start = time.perf_counter()
        for first in range(0, args.images, 400):
            batch = db.batch()
            for n in range(first, min(first + 400, args.images)):
                image_id = f"{n:064x}"
                batch.set(
                    db.collection("images").document(f"bench_{image_id}"),
                    {
                        "team": "bench",
                        "id": image_id,
                        "filename": f"{n}.jpg",
                        "format": "JPEG",
                        "mime_type": "image/jpeg",
                        "extension": "jpg",
                        "size": 1,
                        "width": 1,
                        "height": 1,
                        "frames": 1,
                        "mode": "RGB",
                        "bucket": "b",
                        "object": f"teams/bench/{image_id}.jpg",
                        "status": "processed",
                        "created_at": now,
                        "uploaded_by": {},
                        "labels": [],
                        "label_scores": [],
                        "embedding": Vector(vectors[n].tolist()),
                        "embedding_model": provider.model,
                    },
                )
            batch.commit()
        print(f"wrote {args.images} vectors in {time.perf_counter() - start:.1f} s")

        session = requests.Session()
        session.headers["x-api-key"] = key
        url = stack.gateway_url + "/v1/search"

        def request(query: str) -> float:
            began = time.perf_counter()
            response = session.get(url, params={"q": query, "limit": 20, "min_score": -1})
            elapsed = time.perf_counter() - began
            assert response.status_code == 200, response.text
            assert len(response.json()["results"]) == 20
            return elapsed

        first_query = request(QUERIES[0])  # loads the text model in the search instance
        repeated = [request(QUERIES[0]) for _ in range(args.queries)]
        distinct = [request(f"{QUERIES[n % len(QUERIES)]} {n}") for n in range(args.queries)]

        loaded = time.perf_counter()
        provider.embed_text("warm")
        model_load = time.perf_counter() - loaded
        embed = []
        for n in range(args.queries):
            began = time.perf_counter()
            provider.embed_text(f"{QUERIES[n % len(QUERIES)]} #{n}")
            embed.append(time.perf_counter() - began)
        query = np.asarray(provider.embed_text(QUERIES[0]))
        scans = []
        for _ in range(args.queries):
            began = time.perf_counter()
            scores = vectors @ query
            top = np.argpartition(-scores, 20)[:20]
            top[np.argsort(-scores[top])]
            scans.append(time.perf_counter() - began)

    ms = 1000
    print(
        f"first request of the instance (text model load included): {first_query * ms:.0f} ms; "
        f"text model load in this process {model_load * ms:.0f} ms"
    )
    print(
        f"/v1/search, repeated query (cached embedding): median {statistics.median(repeated) * ms:.1f} ms, "
        f"p95 {pct(repeated, 95) * ms:.1f} ms"
    )
    print(
        f"/v1/search, distinct queries: median {statistics.median(distinct) * ms:.1f} ms, "
        f"p95 {pct(distinct, 95) * ms:.1f} ms"
    )
    print(
        f"query embedding alone (MiniLM on the CPU): median {statistics.median(embed) * ms:.1f} ms, "
        f"p95 {pct(embed, 95) * ms:.1f} ms"
    )
    print(
        f"numpy brute force over {args.images} vectors in process: median {statistics.median(scans) * ms:.2f} ms; "
        f"gateway path / numpy: {statistics.median(repeated) / statistics.median(scans):.0f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
