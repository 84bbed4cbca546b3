"""A local stack on free ports for a test session, its endpoints exported to
this process's environment (the Google clients read them) while it runs."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from devstack.stack import Ports, Stack


@contextmanager
def running_stack(log_dir: Path, extra_env: Mapping[str, str]) -> Iterator[Stack]:
    stack = Stack(Ports.free(), log_dir=log_dir, extra_env=dict(extra_env))
    stack.start()
    previous = {k: os.environ.get(k) for k in stack.client_env()}
    os.environ.update(stack.client_env())
    try:
        yield stack
    finally:
        stack.stop()
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
