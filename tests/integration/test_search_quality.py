"""Search quality through the API (issue #15): the labelled photo set of scripts/bench/search_set.py,
uploaded to one team and processed by the local provider, queried as people type; the default
threshold applied. The per-concept figures are in docs/search.md (scripts/bench/search_quality.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "bench"))

from search_quality import Ranked, metrics  # noqa: E402
from search_set import photos, queries  # noqa: E402


@pytest.fixture(scope="module")
def labelled():
    return photos(), queries()


def test_recall_at_5_and_mrr_through_the_api_with_the_default_threshold(gateway, make_caller, labelled):
    # Arrange: every photo through the upload API, processed by `process`
    set_photos, set_queries = labelled
    caller = make_caller("quality", "member")
    by_id: dict[str, str] = {}
    for start in range(0, len(set_photos), 10):
        chunk = set_photos[start : start + 10]
        files = [("files", (p.path.name, p.path.read_bytes(), "application/octet-stream")) for p in chunk]
        response = gateway.post("/v1/images", files=files, headers=caller.headers)
        assert response.status_code in (200, 201), response.text
        by_id.update({r["id"]: p.concept for p, r in zip(chunk, response.json()["files"])})
    deadline = time.monotonic() + 300
    while any(gateway.get(f"/v1/images/{i}", headers=caller.headers).json()["status"] == "pending" for i in by_id):
        assert time.monotonic() < deadline, "processing did not finish"
        time.sleep(1)

    # Act: every query, at the default threshold
    rows = []
    for concept, texts in set_queries.items():
        for text in texts:
            response = gateway.get("/v1/search", params={"q": text, "limit": 5}, headers=caller.headers)
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            rows.append(Ranked(concept, text, [r["id"] for r in results], [r["score"] for r in results]))
    result = metrics(rows, by_id)

    # Assert
    assert len(by_id) >= 60 and len(set_queries) >= 12
    assert result["recall@5"] >= 0.9, result
    assert result["mrr"] >= 0.8, result
