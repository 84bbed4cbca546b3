"""Sizing that matches the work (issue 17 item 6; S12).

Memory and concurrency of every function that handles pixels follow from the
peak memory scripts/bench/memory.py measured on a 100 MP image, whose table
is in docs/deployment.md: an instance holds its runtime plus, per request in
flight, what that request adds, with a quarter to spare. `stats` gets the
second vCPU its two-core JPEG decode uses. Minimum instances are a variable.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from aperture.functions import FUNCTIONS as REGISTRY
from tests.infra.test_terraform import Tf

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deployment.md"
HEADROOM = 1.25
# Functions that never decode an image (JSON, Firestore, small objects).
NO_PIXELS = {"admin", "jobs", "web"}
# Cloud Run (and so gen2) limits: memory per vCPU and the allowed CPU values.
MAX_MIB_PER_CPU = 4096
CPUS = {"1", "2", "4", "6", "8"}


@pytest.fixture(scope="module")
def tf() -> Tf:
    return Tf()


@pytest.fixture(scope="module")
def functions(tf: Tf) -> dict[str, dict]:
    return tf.locals["functions"]


def mebibytes(memory: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", memory).groups()
    return int(number) * (1024 if unit == "Gi" else 1)


def measured() -> dict[str, list[dict]]:
    """function -> its rows of the measured table in docs/deployment.md."""
    rows: dict[str, list[dict]] = {}
    pattern = re.compile(r"^\| (\w+) \| `([\w-]+)` \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+) \|", re.M)
    for function, case, baseline, peak, request, _seconds in pattern.findall(DOC.read_text()):
        rows.setdefault(function, []).append(
            {"case": case, "baseline": int(baseline), "peak": int(peak), "request": int(request)}
        )
    return rows


def bench_cases(monkeypatch) -> dict[str, tuple[str, str]]:
    monkeypatch.syspath_prepend(str(ROOT / "scripts" / "bench"))  # its sibling modules, as when run as a script
    spec = importlib.util.spec_from_file_location("memory_bench", ROOT / "scripts" / "bench" / "memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


def test_the_measured_table_covers_every_function_that_decodes_images(monkeypatch):
    rows = measured()
    assert set(rows) == set(REGISTRY) - NO_PIXELS, f"measured: {sorted(rows)}"
    cases = bench_cases(monkeypatch)
    documented = {row["case"]: function for function, found in rows.items() for row in found}
    assert documented == {case: function for case, (function, _) in cases.items()}, "docs table != memory.py cases"
    for _function, found in rows.items():
        for row in found:
            assert row["peak"] - row["baseline"] in range(row["request"] - 1, row["request"] + 2), row


def test_memory_holds_concurrency_requests_with_headroom(functions):
    rows = measured()
    for name, entry in functions.items():
        if name in NO_PIXELS:
            continue
        baseline = max(row["baseline"] for row in rows[name])
        request = max(row["request"] for row in rows[name])
        concurrency = entry["concurrency"]
        need = HEADROOM * (baseline + concurrency * request)
        assert mebibytes(entry["memory"]) >= need, (
            f"{name}: {entry['memory']} < {need:.0f} MiB = {HEADROOM} x ({baseline} + {concurrency} x {request})"
        )


def test_memory_is_not_far_beyond_what_the_work_needs(functions):
    """...nor twice the next tier up: sizing follows the measurement both ways."""
    rows = measured()
    for name, entry in functions.items():
        if name in NO_PIXELS:
            continue
        need = HEADROOM * (
            max(r["baseline"] for r in rows[name]) + entry["concurrency"] * max(r["request"] for r in rows[name])
        )
        assert mebibytes(entry["memory"]) < 2 * max(need, 512) * 1.5, f"{name}: {entry['memory']} for {need:.0f} MiB"


def test_cpu_and_memory_are_a_combination_cloud_run_accepts(functions):
    for name, entry in functions.items():
        assert entry["cpu"] in CPUS, name
        assert mebibytes(entry["memory"]) <= MAX_MIB_PER_CPU * int(entry["cpu"]), f"{name}: too much memory per vCPU"
        assert entry["concurrency"] >= 1


def test_stats_gets_the_second_vcpu_its_jpeg_decode_uses(functions):
    pixels = (ROOT / "functions" / "aperture" / "domain" / "imaging" / "pixels.py").read_text()
    assert "two cores" in pixels and "_decode_in_parallel" in pixels
    assert functions["stats"]["cpu"] == "2"


def test_min_instances_is_a_variable_per_function(tf: Tf, functions):
    assert tf.var_default("min_instances") == {}
    validation = tf.blocks(tf.variables["min_instances"], "validation")[0]
    assert "floor(n) == n" in tf.attr(validation, "condition") and "n >= 0" in tf.attr(validation, "condition")
    assert re.sub(r"\s+", " ", tf.locals["min_instances"]) == (
        "${{for name, f in local.functions : name => lookup(var.min_instances, name, 0)}}"
    )
    fn = tf.resource("google_cloudfunctions2_function", "function")
    assert tf.attr(tf.blocks(fn, "service_config")[0], "min_instance_count") == "${local.min_instances[each.key]}"
    run = tf.resource("google_cloud_run_v2_service", "function")
    scaling = tf.blocks(tf.blocks(run, "template")[0], "scaling")[0]
    assert tf.attr(scaling, "min_instance_count") == "${local.min_instances[each.key]}"
    # a misspelt function name fails the plan instead of keeping nothing warm
    accounts = tf.resource("google_service_account", "function")
    [precondition] = tf.blocks(tf.blocks(accounts, "lifecycle")[0], "precondition")
    assert "keys(var.min_instances)" in tf.attr(precondition, "condition")
    assert "keys(local.functions)" in tf.attr(precondition, "condition")
    example = (ROOT / "infra" / "terraform.tfvars.example").read_text()
    assert re.search(r"^#\s*min_instances\s*=", example, re.M)
