"""Batch jobs (spec S9): the request users of the batch image server already send, checked
whole before anything is queued, and the states a job and its items go through.

    {"images": [{"input": "<image id or object name>", "output": "thumbs/a.png"}, ...],
     "operations": ["resize=50", "split=True", "blur=5"]}

The operation grammar is that server's: ``resize=F`` (a percentage in
(0.05, 100], never enlarging), ``split=X`` (any X but ``None``, ``false`` or
``False`` splits into four), ``blur=K`` (an OpenCV kernel size), and the
other operations as the ``ops=`` grammar has them (rotate, crop, flip, flop,
grayscale, quality). Outputs are names relative to the job's prefix in
the derived bucket; the extension chooses the format.
"""

from __future__ import annotations

import datetime as dt
import enum
import posixpath
import re
from dataclasses import dataclass
from typing import Any

from aperture.domain.errors import ApiError
from aperture.domain.transforms import EXTENSIONS, InvalidOperation, Pipeline, parse_job_ops, parse_ops
from aperture.domain.transforms.base import DEFAULT_LIMITS, parse_decimal, show
from aperture.domain.transforms.base import Limits as TransformLimits

NO_SPLIT = frozenset({"None", "false", "False"})
_OUTPUT = re.compile(r"[A-Za-z0-9._\-/]{1,200}")
JOB_ID = re.compile(r"job_[0-9a-f]{20}")


class ItemState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (ItemState.DONE, ItemState.FAILED, ItemState.CANCELLED)


class JobStatus(str, enum.Enum):
    QUEUED = "queued"  # nothing started yet
    RUNNING = "running"
    DONE = "done"  # every item done
    FAILED = "failed"  # every item failed (or was cancelled before any was done)
    PARTIAL = "partial"  # finished, some items done and some failed or cancelled
    CANCELLED = "cancelled"  # cancelled before any item ran


@dataclass(frozen=True)
class JobLimits:
    max_images: int = 1000
    max_operations: int = 20
    max_output_pixels: int = 100_000_000


@dataclass(frozen=True)
class ItemSpec:
    input: str
    output: str  # relative to the job's prefix, as the caller wrote it


@dataclass(frozen=True)
class JobRequest:
    items: tuple[ItemSpec, ...]
    operations: tuple[str, ...]  # as the caller wrote them
    pipeline: Pipeline


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    team: str
    operations: tuple[str, ...]
    pipeline: str  # canonical ops= spelling
    total: int
    created_at: dt.datetime
    created_by: dict[str, Any]
    cancelled: bool = False


@dataclass(frozen=True)
class JobItem:
    job_id: str
    index: int
    input: str  # as the caller wrote it
    image_id: str  # the team image it resolved to
    source_bucket: str
    source_object: str
    output: str
    extension: str  # of the outputs
    state: ItemState = ItemState.QUEUED
    attempts: int = 0
    error: str | None = None
    outputs: tuple[str, ...] = ()  # object names written in the derived bucket
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    worker: str | None = None


@dataclass(frozen=True)
class Counts:
    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.running + self.done + self.failed + self.cancelled

    def status(self) -> JobStatus:
        if self.queued + self.running:
            return JobStatus.QUEUED if self.running == 0 and self.done + self.failed == 0 else JobStatus.RUNNING
        if self.done == self.total:
            return JobStatus.DONE
        if self.done == 0 and self.failed == 0:
            return JobStatus.CANCELLED
        if self.done == 0:
            return JobStatus.FAILED
        return JobStatus.PARTIAL


def parse_request(body: Any, limits: JobLimits = JobLimits()) -> JobRequest:
    """The job a request body asks for; ApiError 400 naming the item and the reason otherwise."""
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object with images and operations")
    unknown = set(body) - {"images", "operations"}
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    images, operations = body.get("images"), body.get("operations", [])
    if not isinstance(images, list) or not images:
        raise ApiError(400, 'images must be a non-empty list of {"input": ..., "output": ...}')
    if len(images) > limits.max_images:
        raise ApiError(400, f"{len(images)} images in one job; the limit is {limits.max_images}")
    pipeline = parse_operations(operations, limits)
    items: list[ItemSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(images):
        item = _item(entry, index)
        outputs = output_names(item.output, pipeline)
        clash = seen.intersection(outputs)
        if clash:
            raise ApiError(400, f"images[{index}]: output {sorted(clash)[0]!r} is written by another image of this job")
        seen.update(outputs)
        items.append(item)
    return JobRequest(tuple(items), tuple(operations), pipeline)


def parse_operations(operations: Any, limits: JobLimits = JobLimits()) -> Pipeline:
    """The batch server's grammar, translated to the pipeline's (see the module docstring)."""
    if not isinstance(operations, list) or not all(isinstance(op, str) for op in operations):
        raise ApiError(400, 'operations must be a list of strings such as ["resize=50", "split=True", "blur=5"]')
    if len(operations) > limits.max_operations:
        raise ApiError(400, f"{len(operations)} operations; the limit is {limits.max_operations}")
    translated = []
    for position, text in enumerate(operations, 1):
        name, eq, value = text.partition("=")
        key = name.strip().lower()
        try:
            if key == "resize":
                translated.append(_resize(value if eq else None))
            elif key == "split":
                if not eq or value.strip() not in NO_SPLIT:
                    translated.append("split=true")
            else:
                translated.append(text)
        except InvalidOperation as exc:
            raise ApiError(400, f"operations[{position - 1}] ({show(text)}): {exc}") from None
    transform_limits = TransformLimits(
        max_ops=limits.max_operations,
        max_output_pixels=limits.max_output_pixels,
        max_animation_pixels=DEFAULT_LIMITS.max_animation_pixels,
    )
    try:
        return parse_job_ops(translated, transform_limits)
    except InvalidOperation as exc:
        raise ApiError(400, f"operations: {exc}") from None


def transform_limits(limits: JobLimits) -> TransformLimits:
    return TransformLimits(
        max_ops=limits.max_operations,
        max_output_pixels=limits.max_output_pixels,
        max_animation_pixels=DEFAULT_LIMITS.max_animation_pixels,
    )


def stored_pipeline(canonical: str, limits: JobLimits) -> Pipeline:
    """A job's pipeline from its canonical spelling, under the limits it was accepted with."""
    return parse_ops(canonical, transform_limits(limits))


def _resize(value: str | None) -> str:
    if value is None or not value.strip():
        raise InvalidOperation("resize needs a percentage, as in resize=50")
    percent = parse_decimal("resize", "the percentage", value.strip().rstrip("%"))
    if not 0.05 < percent <= 100:
        raise InvalidOperation(
            f"resize: the percentage must be above 0.05 and at most 100 (never enlarges), got {value}"
        )
    return f"resize={value.strip().rstrip('%')}%"


def _item(entry: Any, index: int) -> ItemSpec:
    where = f"images[{index}]"
    if not isinstance(entry, dict) or set(entry) - {"input", "output"} or "input" not in entry:
        raise ApiError(400, f'{where}: each image is {{"input": ..., "output": ...}}')
    source, output = entry.get("input"), entry.get("output")
    if not isinstance(source, str) or not source.strip() or len(source) > 1024:
        raise ApiError(400, f"{where}: input must be an image id or the name of an object your team uploaded")
    if not isinstance(output, str):
        raise ApiError(400, f"{where}: output must be a relative name such as thumbs/a.png")
    return ItemSpec(source.strip(), check_output(output, where))


def check_output(output: str, where: str) -> str:
    """A relative name under the job's prefix: no absolute path, no '..', no empty segment."""
    name = output.strip()
    if not _OUTPUT.fullmatch(name):
        raise ApiError(
            400, f"{where}: output {show(output)} must be 1-200 characters of letters, digits, '.', '_', '-' and '/'"
        )
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts) or posixpath.normpath(name) != name:
        raise ApiError(
            400,
            f"{where}: output {show(output)} must stay under the job's prefix (no '..', no leading "
            "'/', no empty segments)",
        )
    extension = output_extension(name)
    if extension is not None and extension not in EXTENSIONS:
        raise ApiError(
            400,
            f"{where}: output {show(output)} has an extension that is no format we write; use one of "
            f"{', '.join(EXTENSIONS)} or none (the input's format)",
        )
    return name


def output_extension(name: str) -> str | None:
    leaf = name.rsplit("/", 1)[-1]
    stem, dot, extension = leaf.rpartition(".")
    return extension.lower() if dot and stem else None


def output_names(output: str, pipeline: Pipeline, extension: str | None = None) -> list[str]:
    """The object names (relative to the job's prefix) an item writes: one, or four for a split,
    each quarter's suffix before the extension (``a.png`` -> ``a-top-left.png``)."""
    leaf_extension = output_extension(output)
    stem = output[: -len(leaf_extension) - 1] if leaf_extension else output
    ext = leaf_extension or extension
    return [f"{stem}{suffix}.{ext}" if ext else f"{stem}{suffix}" for suffix in pipeline.suffixes]


def outputs_of(item: JobItem, pipeline: Pipeline) -> list[str]:
    return output_names(item.output, pipeline, item.extension)


def prefix(team: str, job_id: str) -> str:
    """Where a job's outputs live in the derived bucket."""
    return f"jobs/{team}/{job_id}/"
