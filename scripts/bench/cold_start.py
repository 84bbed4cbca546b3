"""Cold start of every function, before and after the package was split by role (issue #13).

Target: the cold start of each deployed function, from process start to its
first answer, is at most 1.10x the baseline's. The baseline is the same
measurement on a git worktree of an earlier revision (--baseline, default the
commit the restructuring started from), run against the same emulators in the
same run.

One sample spawns a fresh `python -m functions_framework` for one function on
a free port, with PYTHONPATH pointing at the tree being measured, and times
from the spawn to the first answer the function itself produces: a tight poll
(5 ms apart; connection refused means "not up yet") with a request each
function answers without a key or data: `stats` GET /health (200), `admin`
GET /v1/me, `images` GET /v1/images and `upload` POST /v1/images (401), and
`process` a finalized CloudEvent, in the bridge's shape, for an object of a
bucket the stack does not have (200). So a sample covers interpreter start,
imports, the framework's app and whatever the first request builds. The
process group is killed after every sample. Samples alternate ours/baseline,
so drift on a shared machine hits both alike; one discarded pair per function
first fills the page cache and writes each tree's bytecode.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from cloudevents.conversion import to_binary

from benchlib import local_stack, verdict
from devstack.bridge import binary_headers, storage_event
from devstack.processes import free_port, spawn
from devstack.stack import FUNCTIONS, Stack

REPO = Path(__file__).resolve().parents[2]
BASELINE_REV = "b424039"  # HEAD when the package restructuring started
TARGET = 1.10  # ours / baseline
SAMPLES = 7
BENCH_BUCKET = "cold-start-bench"  # none of the stack's buckets: `process` records the object, nothing more


def probe(name: str) -> tuple[str, str, dict, int]:
    """Method, path, request arguments and expected status of a request the function answers itself."""
    if name == "process":
        object_name = f"x/{uuid.uuid4().hex}"
        event = storage_event(
            {
                "eventType": "OBJECT_FINALIZE",
                "bucketId": BENCH_BUCKET,
                "objectId": object_name,
                "eventTime": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
            },
            {"generation": "1", "size": "0"},
            uuid.uuid4().hex,
        )
        headers, body = to_binary(event)
        return "POST", "/", {"headers": binary_headers(headers), "data": body}, 200
    return {
        "stats": ("GET", "/health", {}, 200),
        "admin": ("GET", "/v1/me", {}, 401),
        "images": ("GET", "/v1/images", {}, 401),
        "upload": ("POST", "/v1/images", {}, 401),
    }[name]


def tree_env(stack: Stack, tree: Path) -> dict[str, str]:
    return {**stack.function_env(), "PYTHONPATH": f"{tree / 'functions'}:{tree / 'scripts'}"}


def check_tree(stack: Stack, tree: Path) -> None:
    """The tree's own `aperture` package must win over the venv's editable install of the main tree."""
    found = subprocess.run(
        [sys.executable, "-c", "import aperture; print(aperture.__file__)"],
        env=tree_env(stack, tree),
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    if not Path(found.stdout.strip()).is_relative_to(tree / "functions"):
        raise RuntimeError(f"{tree}: aperture imported from {found.stdout.strip()}")


def cold_start(stack: Stack, tree: Path, side: str, name: str, timeout: float = 120) -> float:
    """Seconds from spawning a fresh instance of `name` from `tree` to its first answer."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "functions_framework",
        f"--target={name}",
        f"--signature-type={FUNCTIONS[name]}",
        f"--source={tree / 'functions' / 'main.py'}",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    method, path, kwargs, expected = probe(name)
    env = tree_env(stack, tree)
    start = time.perf_counter()
    child = spawn(f"cold-{side}-{name}", argv, env=env, log_dir=stack.log_dir, cwd=tree)
    try:
        while True:
            try:
                response = requests.request(method, f"http://127.0.0.1:{port}{path}", timeout=(1, timeout), **kwargs)
                break
            except requests.ConnectionError:
                if child.popen.poll() is not None:
                    raise RuntimeError(f"{side} {name} exited with {child.popen.returncode}:\n{child.tail(8)}")
                if time.perf_counter() - start > timeout:
                    raise RuntimeError(f"{side} {name}: no answer after {timeout:.0f} s:\n{child.tail(8)}")
                time.sleep(0.005)
        elapsed = time.perf_counter() - start
    finally:
        child.stop(grace=0)  # SIGTERM then SIGKILL to the whole process group, waits until it is gone
    if response.status_code != expected or (expected == 401 and "json" not in response.headers.get("Content-Type", "")):
        raise RuntimeError(
            f"{side} {name}: answered {response.status_code} "
            f"({response.headers.get('Content-Type')}), expected {expected}: {response.text[:300]}"
        )
    return elapsed


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A detached git worktree of `rev`, removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="aperture-cold-start-"))
    tree = parent / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(tree), rev], check=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(parent, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline", default=BASELINE_REV, help=f"git revision to compare with (default {BASELINE_REV})"
    )
    parser.add_argument(
        "--samples", type=int, default=SAMPLES, help=f"samples per function and side (default {SAMPLES})"
    )
    args = parser.parse_args(argv)
    rev = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", args.baseline], capture_output=True, text=True, check=True
    ).stdout.strip()

    with worktree(rev) as baseline, local_stack(events=False) as stack:
        trees = {"ours": REPO, "baseline": baseline}
        for tree in trees.values():
            check_tree(stack, tree)
        print(__doc__.strip().splitlines()[0])
        print(f"ours: working tree {REPO}; baseline: {rev}; {args.samples} alternating samples per side; medians")
        print(f"{'function':<9} {'ours ms':>9} {'baseline ms':>12} {'ratio':>7}   spread ours / baseline (min-max ms)")
        missed = []
        for name in FUNCTIONS:
            times: dict[str, list[float]] = {side: [] for side in trees}
            try:
                for round_ in range(args.samples + 1):  # round 0 warms up and is discarded
                    for side, tree in trees.items():
                        elapsed = cold_start(stack, tree, side, name)
                        if round_:
                            times[side].append(elapsed * 1000)
            except (RuntimeError, requests.RequestException) as exc:
                print(f"{name:<9} failed: {exc}")
                missed.append(name)
                continue
            ours, base = statistics.median(times["ours"]), statistics.median(times["baseline"])
            ratio = ours / base
            if ratio > TARGET:
                missed.append(name)
            print(
                f"{name:<9} {ours:9.0f} {base:12.0f} {ratio:6.2f}x   {verdict(ratio <= TARGET)}  "
                f"{min(times['ours']):.0f}-{max(times['ours']):.0f} / "
                f"{min(times['baseline']):.0f}-{max(times['baseline']):.0f}"
            )
        print(
            f"overall (target <= {TARGET:.2f}x for every function): "
            + (verdict(True) if not missed else f"{verdict(False)} ({', '.join(missed)})")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
