"""Riding out transient failures: one helper for every command that retries (jobs watch,
reindex, upload).

A transient failure is the network (unreachable, timed out, a cut or unparseable answer:
a `CliError` that is not an `ApiError`), 429 or a 5xx from the gateway. Any other API
error is an answer, raised at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from aperture.cli import ApiError, CliError

RETRYABLE = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF = 10.0

_sleep = time.sleep  # tests replace it

T = TypeVar("T")


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (0-based): 1, 2, 4, 8, 10, 10…"""
    return min(2.0**attempt, MAX_BACKOFF)


def transient(exc: CliError) -> bool:
    """Whether trying again could help."""
    return exc.status in RETRYABLE if isinstance(exc, ApiError) else True


def with_retries(call: Callable[[], T], retries: int) -> T:
    """`call()`, riding out `retries` transient failures in a row, with backoff; the last
    failure, or any other error, is raised."""
    for attempt in range(retries + 1):
        try:
            return call()
        except CliError as exc:
            if not transient(exc) or attempt == retries:
                raise
        _sleep(backoff(attempt))
    raise AssertionError("unreachable")
