"""What every operation shares: the error, the limits, the parameter grammar.

An operation is a small frozen dataclass. It knows how to
  * parse itself from the text after ``name:`` (or ``name=``),
  * say which size(s) it produces from a given size, without touching pixels
    (so a whole pipeline is checked against the limits before anything is
    decoded), and
  * apply itself to a frame in one of the working modes L, LA, RGB or RGBA.

Its ``str()`` is the canonical spelling, parseable again, suitable for cache keys.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Self

from PIL import Image

Size = tuple[int, int]

# The modes ops work in. Sources are normalized to one of these on decoding.
WORKING_MODES = ("L", "LA", "RGB", "RGBA")


class InvalidOperation(ValueError):
    """A parameter, pipeline or output format that cannot be honoured.

    The message is the reason given to the client (HTTP 400): it names the
    operation and says what is wrong and what is allowed.
    """


@dataclass(frozen=True)
class Limits:
    """Bounds on what a pipeline may ask for. Defaults are the service's.

    max_ops: operations in one pipeline (``1000 ops`` is a 400).
    max_text: characters of an ``ops=`` string or one job operation.
    max_output_pixels: width*height of any intermediate or final image
        (a 400 above, never a silent shrink).
    max_dimension: width or height of any intermediate or final image
        (65500 is libjpeg's JPEG_MAX_DIMENSION).
    max_animation_pixels: width*height summed over the output frames of an
        animated result (all frames are held in memory by the encoders).
    max_blur: a blur's kernel size is clamped to this (thumbor clamps its radius at 150).
    max_render_bytes: the memory a render is estimated to need at its peak
        (decoded source, working images, operations' scratch, encoder), from
        the header and the plan alone (`budget.estimate`); a 400 above.
    """

    max_ops: int = 20
    max_text: int = 2048
    max_output_pixels: int = 100_000_000
    max_dimension: int = 65_500
    max_animation_pixels: int = 200_000_000
    max_blur: int = 301  # the kernel OpenCV derives from sigma 50
    max_render_bytes: int = 1 << 30  # APERTURE_MAX_RENDER_BYTES: one of 3 renders on a 4 GiB instance

    def check_size(self, size: Size, what: str) -> None:
        width, height = size
        if width < 1 or height < 1:
            raise InvalidOperation(f"{what}: output would be {width}x{height}, which has no pixels")
        if width * height > self.max_output_pixels:
            raise InvalidOperation(
                f"{what}: output would be {width * height} pixels ({width}x{height}); "
                f"the limit is {self.max_output_pixels}"
            )
        if width > self.max_dimension or height > self.max_dimension:
            raise InvalidOperation(
                f"{what}: output would be {width}x{height}; the limit is {self.max_dimension} pixels on a side"
            )


DEFAULT_LIMITS = Limits()


class Operation(ABC):
    """One step of a pipeline. Subclasses are frozen dataclasses."""

    names: ClassVar[tuple[str, ...]]  # first is canonical; the rest are aliases

    @classmethod
    @abstractmethod
    def parse(cls, name: str, value: str | None, limits: Limits) -> Self | None:
        """The operation `name[:value]` spells (None: a flag set to false, i.e. nothing)."""

    def plan(self, size: Size) -> list[Size]:
        """Sizes this step outputs for an input of `size` (more than one for split)."""
        return [self.output_size(size)]

    def output_size(self, size: Size) -> Size:
        return size

    def scratch_bytes(self, size: Size, out: Size) -> int:
        """Memory this step needs besides its input and output images (`budget.estimate`)."""
        return 0

    def adds_alpha(self) -> bool:
        """Whether this step gives an image without alpha an alpha band (`budget.estimate`)."""
        return False

    def apply_many(self, image: Image.Image) -> list[Image.Image]:
        return [self.apply(image)]

    @abstractmethod
    def apply(self, image: Image.Image) -> Image.Image: ...

    @abstractmethod
    def __str__(self) -> str: ...


# ---------------------------------------------------------------- parameter grammar

_UINT = re.compile(r"[+]?[0-9]{1,9}")
_INT = re.compile(r"[+-]?[0-9]{1,9}")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,9}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})")
_TRUE = frozenset({"", "1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def show(value: str, limit: int = 40) -> str:
    """A client's value, quoted and shortened, for error messages."""
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def parse_int(op: str, field: str, text: str) -> int:
    """A (possibly signed) integer of at most 9 digits; the caller checks the range."""
    text = text.strip()
    if not _INT.fullmatch(text):
        raise InvalidOperation(f"{op}: {field} must be a whole number, got {show(text)}")
    return int(text)


def parse_decimal(op: str, field: str, text: str) -> float:
    """A plain decimal (no exponent, no inf/nan): ``12``, ``-3.5``, ``.5``."""
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        raise InvalidOperation(f"{op}: {field} must be a plain decimal number such as 12 or 2.5, got {show(text)}")
    return float(text)


def parse_flag(op: str, value: str | None) -> bool:
    """A flag's value: absent or empty or 1/true/yes/on is true; 0/false/no/off is false."""
    if value is None:
        return True
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidOperation(f"{op}: takes no value or true/false, got {show(value)}")


def require(op: str, value: str | None, form: str) -> str:
    if value is None or not value.strip():
        raise InvalidOperation(f"{op}: needs a value, as in {form}")
    return value.strip()


def number(value: float) -> str:
    """Shortest canonical spelling of a parameter: 33, 2.5, 0.125, 0.000001 (a plain decimal,
    which the grammar parses again: never an exponent, which ``repr`` gives below 1e-4)."""
    rounded = round(value, 9)
    if rounded == int(rounded):
        return str(int(rounded))
    return format(rounded, ".9f").rstrip("0").rstrip(".")
