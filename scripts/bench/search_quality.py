"""Search quality (issue #15): recall@1, recall@5 and MRR of /v1/search over a labelled set
of real photographs (scripts/bench/search_set.py), per concept and overall, and what the
score threshold does to precision.

Every photo is uploaded through the API to a fresh team on the local stack and
processed by the configured provider (local by default); each query (phrased
as people type them) is asked through the gateway. A query's relevant images
are its concept's photos. recall@k: the share of queries with a relevant image
in the top k; MRR: the mean of 1/rank of the first relevant image (0 when none
is returned). Ranks are taken with no threshold (min_score=-1); the threshold
table then shows, per candidate threshold, the precision of what would be
returned in the top 5 and the share of queries that would still find a
relevant image. Unrelated prompts (NOISE_QUERIES) show how many images a
prompt about nothing in the set returns at the default threshold.

Run: PYTHONPATH=functions:scripts .venv/bin/python scripts/bench/search_quality.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import requests

from benchlib import local_stack

NOISE_QUERIES = [
    "spreadsheet of quarterly tax figures",
    "a recipe for lasagne",
    "source code in a terminal",
    "the rules of cricket",
    "a pdf invoice",
]
THRESHOLDS = [0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]


@dataclass
class Ranked:
    concept: str
    query: str
    ids: list[str]
    scores: list[float]


def evaluate(
    session: requests.Session, base: str, by_id: dict[str, str], queries: dict[str, list[str]]
) -> list[Ranked]:
    ranked = []
    for concept, texts in queries.items():
        for text in texts:
            response = session.get(base + "/v1/search", params={"q": text, "limit": 100, "min_score": -1})
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            ranked.append(Ranked(concept, text, [r["id"] for r in results], [r["score"] for r in results]))
    return ranked


def metrics(rows: list[Ranked], by_id: dict[str, str]) -> dict[str, float]:
    def first(row: Ranked) -> int | None:
        return next((n for n, i in enumerate(row.ids, 1) if by_id.get(i) == row.concept), None)

    ranks = [first(row) for row in rows]
    return {
        "queries": len(rows),
        "recall@1": sum(1 for r in ranks if r == 1) / len(rows),
        "recall@5": sum(1 for r in ranks if r is not None and r <= 5) / len(rows),
        "mrr": sum(1 / r for r in ranks if r) / len(rows),
    }


def threshold_table(rows: list[Ranked], by_id: dict[str, str]) -> list[dict[str, float]]:
    table = []
    for threshold in THRESHOLDS:
        kept = [[(i, s) for i, s in zip(row.ids[:5], row.scores[:5]) if s >= threshold] for row in rows]
        returned = sum(len(k) for k in kept)
        relevant = sum(1 for row, k in zip(rows, kept) for i, _ in k if by_id.get(i) == row.concept)
        found = sum(1 for row, k in zip(rows, kept) if any(by_id.get(i) == row.concept for i, _ in k))
        table.append(
            {
                "threshold": threshold,
                "precision@5": relevant / returned if returned else 1.0,
                "recall@5": found / len(rows),
                "returned@5": returned / len(rows),
            }
        )
    return table


def run(provider: str = "local") -> dict:
    from search_set import photos, queries

    labelled = photos()
    asked = queries()
    with local_stack(APERTURE_PROVIDER=provider) as stack:
        from google.cloud import firestore

        from aperture.services import provisioning
        from aperture.storage.identity import IdentityStore
        from aperture.storage.key_issuers import LocalKeyIssuer

        db = firestore.Client(project=stack.project)
        *_, key = provisioning.bootstrap(
            IdentityStore(db), LocalKeyIssuer(), team_id="quality", email="q@quality.example", role="member"
        )
        session = requests.Session()
        session.headers["x-api-key"] = key
        base = stack.gateway_url
        by_id: dict[str, str] = {}
        for start in range(0, len(labelled), 10):
            chunk = labelled[start : start + 10]
            files = [("files", (p.path.name, p.path.read_bytes(), "application/octet-stream")) for p in chunk]
            response = session.post(base + "/v1/images", files=files)
            assert response.status_code in (200, 201), response.text
            for photo, result in zip(chunk, response.json()["files"]):
                assert result["status"] in ("created", "duplicate"), result
                by_id[result["id"]] = photo.concept
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            pending = [i for i in by_id if session.get(f"{base}/v1/images/{i}").json()["status"] == "pending"]
            if not pending:
                break
            time.sleep(1)
        rows = evaluate(session, base, by_id, asked)
        model = session.get(base + "/v1/search/model").json()
        noise = {
            text: len(session.get(base + "/v1/search", params={"q": text}).json()["results"]) for text in NOISE_QUERIES
        }
    concepts = sorted(asked)
    return {
        "provider": provider,
        "model": model,
        "photos": len(by_id),
        "concepts": len(concepts),
        "overall": metrics(rows, by_id),
        "per_concept": {c: metrics([r for r in rows if r.concept == c], by_id) for c in concepts},
        "thresholds": threshold_table(rows, by_id),
        "noise_at_default": noise,
        "misses": [
            {"query": r.query, "concept": r.concept, "top": [by_id.get(i) for i in r.ids[:3]]}
            for r in rows
            if not any(by_id.get(i) == r.concept for i in r.ids[:5])
        ],
    }


def print_report(report: dict) -> None:
    overall = report["overall"]
    print(
        f"{report['photos']} photos, {report['concepts']} concepts, {overall['queries']} queries; "
        f"model {report['model']['embedding_model']}, default threshold {report['model']['default_min_score']}"
    )
    print(
        f"overall: recall@1 {overall['recall@1']:.2f}, recall@5 {overall['recall@5']:.2f}, MRR {overall['mrr']:.2f} "
        f"(targets recall@5 >= 0.9, MRR >= 0.8)"
    )
    print(f"{'concept':<22} {'queries':>7} {'R@1':>5} {'R@5':>5} {'MRR':>5}")
    for concept, m in report["per_concept"].items():
        print(f"{concept:<22} {m['queries']:>7} {m['recall@1']:>5.2f} {m['recall@5']:>5.2f} {m['mrr']:>5.2f}")
    print("threshold  precision@5  recall@5  results@5 per query")
    for row in report["thresholds"]:
        print(
            f"{row['threshold']:>9.2f}  {row['precision@5']:>11.2f}  {row['recall@5']:>8.2f}  {row['returned@5']:>9.2f}"
        )
    print("unrelated prompts, results at the default threshold:", report["noise_at_default"])
    for miss in report["misses"]:
        print(f"  miss: {miss['query']!r} ({miss['concept']}) -> top {miss['top']}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--provider", default="local")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    print(__doc__.strip().splitlines()[0])
    report = run(args.provider)
    print_report(report)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
