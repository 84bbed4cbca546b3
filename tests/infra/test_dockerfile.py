"""Offline checks of the root Dockerfile: one image that runs any function by
target (S12). No Docker engine here, so the file is read instruction by
instruction."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.support.uploads import BUILD_OUTPUTS, SOURCES, docker_excluded, dockerignore_patterns, git_ignored_paths

ROOT = Path(__file__).resolve().parents[2]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    return out


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return _instructions((ROOT / "Dockerfile").read_text())


def _final_stage(instructions):
    starts = [i for i, (k, _) in enumerate(instructions) if k == "FROM"]
    assert starts, "no FROM"
    return instructions[starts[-1] :]


def test_base_image_is_pinned_python_311(instructions):
    stage = _final_stage(instructions)
    image = stage[0][1].split()[0]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image


def test_installs_the_function_requirements(instructions):
    stage = _final_stage(instructions)
    copies = [args for k, args in stage if k == "COPY"]
    assert any("functions/requirements.txt" in c for c in copies), "requirements.txt not copied"
    runs = " ".join(args for k, args in stage if k == "RUN")
    assert re.search(r"pip install\b.*-r\s+\S*requirements\.txt", runs)
    assert any(re.search(r"(^|\s)functions/?(\s|$)", c) for c in copies), "functions/ not copied"


def test_runs_as_a_non_root_user(instructions):
    stage = _final_stage(instructions)
    users = [(i, args) for i, (k, args) in enumerate(stage) if k == "USER"]
    assert users, "no USER: the container would run as root"
    index, user = users[-1]
    name = user.split(":")[0]
    assert name not in {"root", "0"}, user
    last_run = max((i for i, (k, _) in enumerate(stage) if k == "RUN"), default=-1)
    assert index > last_run, "USER must come after the last RUN"


def test_runs_functions_framework_by_target(instructions):
    stage = _final_stage(instructions)
    env = " ".join(args for k, args in stage if k == "ENV")
    assert re.search(r"\bFUNCTION_TARGET=stats\b", env)
    cmds = [args for k, args in stage if k in {"CMD", "ENTRYPOINT"}]
    assert cmds, "no CMD"
    cmd = cmds[-1]
    if cmd.startswith("["):  # exec form: the shell must be explicit to expand variables
        cmd = " ".join(shlex.split(cmd.strip("[]").replace(",", " ")))
    assert "functions-framework" in cmd
    assert "--target=${FUNCTION_TARGET}" in cmd
    assert "--signature-type=${FUNCTION_SIGNATURE_TYPE:-http}" in cmd
    assert "--port=${PORT:-8080}" in cmd
    assert cmd.startswith("exec ") or "sh -c" in cmd, "functions-framework must be PID 1 (signals)"


def test_build_context_is_only_functions():
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert "*" in ignore and "!functions/" in ignore, ".dockerignore must whitelist functions/ only"


def test_build_context_carries_no_local_build_output():
    """In Cloud Build the context is /workspace after `make test` (.venv,
    .venv-tools, .aperture, caches): only the sources under functions/ go in,
    none of the build output or caches inside functions/ either."""
    patterns = dockerignore_patterns()
    leaking = [path for path in BUILD_OUTPUTS if not docker_excluded(path, patterns)]
    assert not leaking, f".dockerignore sends local build output to the image: {leaking}"
    wanted = [path for path in SOURCES if path.startswith("functions/")]
    assert wanted
    dropped = [path for path in wanted if docker_excluded(path, patterns)]
    assert not dropped, f".dockerignore drops sources the image needs: {dropped}"
    others = [path for path in SOURCES if not path.startswith("functions/")]
    assert all(docker_excluded(path, patterns) for path in others), "only functions/ belongs in the context"
    # and whatever git ignores under functions/ in this working tree
    here = [path + "probe" if path.endswith("/") else path for path in git_ignored_paths()]
    leaking = [path for path in here if path.startswith("functions/") and not docker_excluded(path, patterns)]
    assert not leaking, f"git ignores these, but they would go into the image: {leaking}"


def test_function_requirements_provide_functions_framework():
    requirements = ROOT / "functions" / "requirements.txt"
    names = {
        re.split(r"[=<>~!\[; ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
        for line in requirements.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert "functions-framework" in names, "the image's CMD needs functions-framework"
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("./native/"):  # our own source, versioned with this repository
            assert (ROOT / "functions" / line).is_dir(), f"no such local package: {line}"
        elif line and not line.startswith("-"):
            assert "==" in line, f"deployed dependency not pinned: {line}"
