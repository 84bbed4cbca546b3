"""What each upload of the source would carry: .gcloudignore (gitignore syntax,
`gcloud builds submit`), .dockerignore (the image's build context) and the
excludes of Terraform's functions zip (doublestar globs), with sample paths
of local build output that none of them may carry and sources they must.

Docker and the archive provider match a pattern against the path and each of
its parent directories (an excluded directory is not descended into);
`**` is any number of directories, `*` and `?` stay within one."""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Local build output and caches, as `make`, `make test`, `make run`, pip,
# setuptools, pytest, hypothesis, mypy, ruff, import-linter and Terraform
# leave them in a working tree. None may be uploaded.
BUILD_OUTPUTS = [
    ".venv/bin/python",
    ".venv-tools/bin/checkov",
    ".venv-tools/.installed",
    ".aperture/local.env",
    ".aperture/logs/gateway.log",
    "aperture.egg-info/PKG-INFO",
    ".pytest_cache/v/cache/nodeids",
    ".mypy_cache/3.11/aperture/config.data.json",
    ".ruff_cache/0.17.6/123",
    ".hypothesis/examples/abc",
    ".import_linter_cache/aperture.meta.json",
    ".benchmarks/Linux/0001.json",
    "build/lib/aperture/config.py",
    "dist/aperture-0.1.0.tar.gz",
    "infra/.terraform/providers/registry.terraform.io/hashicorp/google/6.14.0/x",
    "infra/.terraform/tmp/functions.zip",
    "infra/terraform.tfstate",
    "functions/aperture/__pycache__/config.cpython-311.pyc",
    "functions/aperture/api/__pycache__/stats.cpython-311.pyc",
    "functions/__pycache__/main.cpython-311.pyc",
    "functions/native/jpegrows/build/lib.linux-x86_64-cpython-311/jpegrows.cpython-311-x86_64-linux-gnu.so",
    "functions/native/jpegrows/build/temp.linux-x86_64-cpython-311/jpegrows.o",
    "functions/native/jpegrows/aperture_jpegrows.egg-info/PKG-INFO",
    "functions/native/jpegrows/jpegrows.cpython-311-x86_64-linux-gnu.so",
    "functions/.pytest_cache/v/cache/lastfailed",
    "functions/.mypy_cache/3.11/x.json",
    "functions/.ruff_cache/0.17.6/1",
    "functions/.hypothesis/examples/x",
    "functions/.venv/bin/python",
    "functions/dist/x.whl",
    "scripts/bench/__pycache__/benchlib.cpython-311.pyc",
    "tests/unit/__pycache__/test_x.cpython-311-pytest-9.2.0.pyc",
]

# Sources every upload of the whole tree must keep (Cloud Build runs `make
# test` and `terraform apply` from them).
SOURCES = [
    "Makefile",
    "Dockerfile",
    "cloudbuild.yaml",
    "pyproject.toml",
    "requirements-dev.txt",
    "requirements-ml.txt",
    "requirements-tools.txt",
    "README.md",
    "docs/deployment.md",
    "functions/main.py",
    "functions/requirements.txt",
    "functions/aperture/api/stats.py",
    "functions/native/jpegrows/jpegrows.c",
    "functions/native/jpegrows/setup.py",
    "functions/native/jpegrows/pyproject.toml",
    "scripts/deploy.sh",
    "scripts/devstack/gateway.py",
    "tests/infra/test_openapi.py",
    "infra/main.tf",
    "infra/openapi.yaml",
    "infra/firestore.indexes.json",
    "infra/.terraform.lock.hcl",
]

# The files Terraform loads by itself from infra/: the Cloud Build apply must
# see them as the operator's first apply did.
TERRAFORM_VARIABLE_FILES = [
    "infra/terraform.tfvars",
    "infra/terraform.tfvars.json",
    "infra/prod.auto.tfvars",
    "infra/prod.auto.tfvars.json",
]


def glob_regex(pattern: str) -> re.Pattern:
    """A doublestar glob (relative to the root) as a regex over '/'-paths."""
    parts = pattern.strip("/").split("/")
    out = ""
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            out += ".*" if last else "(?:[^/]+/)*"
            continue
        for char in part:
            out += "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
        out += "" if last else "/"
    return re.compile(out)


def _with_parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def docker_excluded(path: str, patterns: list[str]) -> bool:
    """.dockerignore: the last pattern matching the path or a parent wins."""
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        regex = glob_regex(raw[1:] if negate else raw)
        if any(regex.fullmatch(p) for p in _with_parents(path)):
            excluded = not negate
    return excluded


def archive_excluded(path: str, excludes: list[str]) -> bool:
    """archive_file excludes: any pattern matching the path or a parent directory."""
    return any(glob_regex(e).fullmatch(p) for e in excludes for p in _with_parents(path))


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def gcloudignore_excluded(paths: list[str]) -> dict[str, bool]:
    """.gcloudignore has gitignore's syntax; pathspec implements git's rules."""
    import pathspec

    spec = pathspec.GitIgnoreSpec.from_lines((ROOT / ".gcloudignore").read_text().splitlines())
    return {path: spec.match_file(path) for path in paths}


@lru_cache(maxsize=1)
def git_ignored_paths() -> tuple[str, ...]:
    """What git ignores in this working tree right now (directories end in
    "/"): the build output that actually exists here. Empty outside a git
    checkout (Cloud Build's upload has no .git)."""
    try:
        proc = subprocess.run(
            ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--directory"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if proc.returncode != 0:
        return ()
    return tuple(line for line in proc.stdout.splitlines() if line)
