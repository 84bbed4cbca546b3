"""Development tools the offline infra checks need; `make test` installs them all,
so a missing one is a failure, never a skip."""

from __future__ import annotations

import importlib

import pytest


def require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(f"{module} is not installed: `make test` installs requirements-dev.txt")
