"""API fuzzing in `make test` (issue #18, item 6): schemathesis against the
OpenAPI document, on the running local stack, as an owner (every route reachable).

Bounded: EXAMPLES cases per operation and phase (examples, coverage, fuzzing),
with a fixed seed, so the run is repeatable and takes about a minute.
Checks (scripts/fuzz/api.py, CHECKS): no 5xx; every status code and content
type is declared in the document; an undeclared method is 405 with an `Allow`
header. `make fuzz` runs the same for longer (`--examples`, `--seconds`).
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.integration

EXAMPLES = 25
SEED = 18
BUDGET_SECONDS = 150  # the run takes ~30 s; far more means the bound stopped working


def test_the_api_survives_schemathesis(stack, make_caller):
    pytest.importorskip("schemathesis")
    from fuzz import api as fuzz

    owner = make_caller("fuzz-owner", role="owner")
    started = time.monotonic()

    result = fuzz.run(stack.gateway_url, owner.key, examples=EXAMPLES, seed_value=SEED, echo=False)

    elapsed = time.monotonic() - started
    report = result.stdout[-20000:] + result.stderr[-4000:]
    assert result.returncode == 0, f"schemathesis found problems:\n{report}"
    assert "Tested: " in result.stdout, report
    assert elapsed < BUDGET_SECONDS, f"fuzzing took {elapsed:.0f} s"
