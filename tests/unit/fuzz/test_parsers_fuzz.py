"""A bounded slice of scripts/fuzz/parsers.py in `make test` (issue #18, item 7).

The same properties as the fuzzer, with hypothesis under fixed seeds:
  * validate: uploaded bytes give a ValidImage or `Rejected` (413/422); what
    is accepted goes through open_image (or its ImageError), describe and exif
    without any other exception;
  * ops / job: text gives a Pipeline or InvalidOperation (ApiError 400 for a
    job body), and ``str(pipeline)`` parses again to an equal pipeline.
Then every finding of the fuzzer, as an explicit regression test.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from aperture.domain import jobs
from aperture.domain.transforms import parse_job_ops, parse_ops, parse_query
from aperture.domain.transforms.base import number

ROOT = Path(__file__).resolve().parents[3]


def _load_fuzzer():
    spec = importlib.util.spec_from_file_location("aperture_fuzz_parsers", ROOT / "scripts" / "fuzz" / "parsers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzzer()
STRATEGIES = fuzz.strategies()


def _bounded(examples: int):
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ---------------------------------------------------------------- the properties


@_bounded(1000)
@given(STRATEGIES["ops"])
def test_ops_parse_or_refuse_and_round_trip(data: bytes) -> None:
    fuzz.check("ops", data)


@_bounded(1000)
@given(STRATEGIES["job"])
def test_job_ops_parse_or_refuse_and_round_trip(data: bytes) -> None:
    fuzz.check("job", data)


@_bounded(600)
@given(STRATEGIES["validate"])
def test_validate_refuses_only_with_the_documented_errors(data: bytes) -> None:
    fuzz.check("validate", data)


# ---------------------------------------------------------------- the seed corpus


def test_corpus_is_small_and_every_seed_image_is_accepted() -> None:
    files = [path for path in fuzz.CORPUS.rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) < 300 * 1024
    images = sorted((fuzz.CORPUS / "validate").iterdir())
    formats = {path.name.split("-", 1)[0] for path in images}
    assert {"png", "apng", "jpeg", "mpo", "gif", "webp", "tiff", "bmp"} <= formats
    assert any("progressive" in path.name for path in images)
    assert sum("animated" in path.name for path in images) >= 3
    for path in images:
        assert fuzz.check("validate", path.read_bytes()) == "accepted", path.name


@pytest.mark.parametrize("target", ["ops", "job"])
def test_grammar_seeds_hold_the_properties(target: str) -> None:
    outcomes = [fuzz.check(target, data) for data in fuzz.corpus(target)]
    assert "parsed" in outcomes and "refused" in outcomes


def test_the_fuzzer_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = fuzz.main(["--engine", "hypothesis", "--target", "ops", "--seconds", "0.5", "--findings", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "ops:" in out and "cases" in out and "findings: none" in out


def test_a_finding_is_saved_and_fails_the_run(tmp_path: Path) -> None:
    recorder = fuzz.Recorder(tmp_path, "ops")
    recorder.save("parse_ops-round-trip", "parse_ops: example", b"blur:3,0.1234567")
    recorder.save("parse_ops-round-trip", "parse_ops: example", b"blur:3,0.1234567")  # the same input again
    assert recorder.keys == {"parse_ops-round-trip": 1}
    assert [path.suffix for path in sorted(tmp_path.iterdir())] == [".bin", ".txt"]


# ---------------------------------------------------------------- regressions: the fuzzer's findings


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        # number() spelled small values with an exponent (repr), which the grammar refuses.
        ("blur:1,0.000001", "blur:1,0.000001"),
        ("rotate:0.000000001", "rotate:0.000000001"),
        ("resize:0.000000001%", "resize:0.000000001%"),
        ("rotate:0.00001|resize:0.0001", "rotate:0.00001|resize:0.0001%"),
        # A blur's sigma is spelled with 6 decimals: the pipeline held more than its key said.
        ("blur:3,0.1234567", "blur:3,0.123457"),
        ("blur:1,0.000000001", "blur:1"),
        ("blur:5,0.0000004", "blur:5"),
        # -340.2 % 360 is 19.80000000000001, spelled 19.8.
        ("rotate:-340.2", "rotate:19.8"),
    ],
)
def test_canonical_spelling_parses_to_the_same_pipeline(text: str, canonical: str) -> None:
    pipeline = parse_ops(text)
    assert str(pipeline) == canonical
    assert parse_ops(canonical) == pipeline
    assert parse_query([("ops", text)]) == pipeline
    assert fuzz.check("ops", text.encode()) == "parsed"


@pytest.mark.parametrize(
    "operations",
    [
        ["rotate=0.000000001"],
        ["split=1", "rotate=0.000000001"],
        ["resize=0.06", "blur=0,0.000001"],
        ["resize=12", "rotate=-340.2"],
        ["resize=24", "rotate=-244.2"],
    ],
)
def test_job_operations_round_trip_through_the_stored_spelling(operations: list[str]) -> None:
    limits = jobs.JobLimits()
    pipeline = jobs.parse_operations(operations, limits)
    assert jobs.stored_pipeline(str(pipeline), limits) == pipeline
    direct = parse_job_ops(operations)
    assert parse_ops(str(direct), direct.limits) == direct
    assert fuzz.check("job", "\n".join(operations).encode()) == "parsed"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (33.0, "33"),
        (2.5, "2.5"),
        (0.125, "0.125"),
        (1e-06, "0.000001"),
        (1e-09, "0.000000001"),
        (4e-10, "0"),
        (-4e-10, "0"),
        (359.9999999999, "360"),
        (0.1 + 0.2, "0.3"),
        (123456789.123456789, "123456789.123456791"),
    ],
)
def test_number_is_a_plain_decimal(value: float, text: str) -> None:
    assert number(value) == text
