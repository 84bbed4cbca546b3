"""The statistic a request names (`min`, `max`, `mean`, `median`, `pXX`) and how its value is written."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from aperture.domain.stats.histogram import Histogram


class UnknownFunction(ValueError):
    """`func` is not min, max, mean, median or pXX with XX in [0, 100]."""


# Digits, optionally a dot followed by digits; ASCII only (\d would accept
# other scripts' digits). No sign, exponent, whitespace, nan/inf or "5.".
_PERCENTILE = re.compile(r"p([0-9]+(?:\.[0-9]+)?)")
_NAMED = ("min", "max", "mean", "median")


@dataclass(frozen=True)
class StatFunction:
    """A parsed ``func``: `name` as requested, `percentile` set for pXX."""

    name: str
    percentile: float | None = None

    def apply(self, hist: Histogram) -> int | float:
        if self.percentile is not None:
            return hist.percentile(self.percentile)
        if self.name == "min":
            return hist.min()
        if self.name == "max":
            return hist.max()
        if self.name == "mean":
            return hist.mean()
        if self.name == "median":
            return hist.median()
        raise UnknownFunction(self.name)


def parse_function(name: str) -> StatFunction:
    """Parse ``func`` of ``/stats/{image}/{func}``; raise `UnknownFunction` if it is not one.

    Accepted: min, max, mean, median, and p followed by a plain decimal in
    [0, 100] (leading zeros and a fractional part allowed: p05, p99.9,
    p100.000). Rejected: anything else, including upper case, signs,
    exponents, whitespace, nan/inf and a trailing dot.
    """
    if name in _NAMED:
        return StatFunction(name)
    match = _PERCENTILE.fullmatch(name)
    if match is None:
        raise UnknownFunction(f"unknown function {name!r}")
    q = float(match.group(1))
    if not 0.0 <= q <= 100.0:
        raise UnknownFunction(f"percentile {match.group(1)} is outside 0..100")
    return StatFunction(name, q)


def format_value(value: int | float | np.generic) -> str:
    """Exact text form: integers as digits, floats as the shortest round-trip repr."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))
