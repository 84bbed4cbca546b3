"""Pipelines: the three spellings of a list of operations, and running one.

    ops=crop:10,10,200,200|rotate:33|resize:50%|blur:2    parse_ops   (URL ``ops=``)
    ["resize=50", "split=true", "blur=5"]                  parse_job_ops (S9 job body)
    ?resize=512x512&rotate=90&grayscale=1&quality=80       parse_query (one op per parameter)

All three give a `Pipeline`; ``str(pipeline)`` is its canonical ``ops=``
spelling (a cache key). `render` decodes the source, applies the EXIF
orientation, runs the operations in order and encodes the result(s).
The grammar, limits and clamps are in docs/transforms.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from PIL import Image

from aperture.domain.transforms import budget, formats
from aperture.domain.transforms.base import DEFAULT_LIMITS, InvalidOperation, Limits, Operation, Size, show
from aperture.domain.transforms.blur import Blur
from aperture.domain.transforms.crop import Crop
from aperture.domain.transforms.flip import Flip
from aperture.domain.transforms.formats import OutputFormat
from aperture.domain.transforms.grayscale import Grayscale
from aperture.domain.transforms.quadrant import QUADRANTS, Quadrant
from aperture.domain.transforms.quality import Quality
from aperture.domain.transforms.resize import Resize
from aperture.domain.transforms.rotate import Rotate
from aperture.domain.transforms.source import ANIMATABLE, Box, all_frames, first_frame, open_source

OPERATIONS: tuple[type[Operation], ...] = (Crop, Rotate, Flip, Resize, Blur, Grayscale, Quadrant, Quality)
_BY_NAME = {name: cls for cls in OPERATIONS for name in cls.names}
_KNOWN = ", ".join(sorted(_BY_NAME))
_NAME = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Pipeline:
    """Operations in the order they run, and the limits they were checked against."""

    ops: tuple[Operation, ...] = ()
    limits: Limits = DEFAULT_LIMITS

    def __str__(self) -> str:
        return "|".join(str(op) for op in self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    @property
    def splits(self) -> bool:
        """True when the pipeline makes four images (a `split`), not one."""
        return any(isinstance(op, Quadrant) and op.splits for op in self.ops)

    @property
    def suffixes(self) -> tuple[str, ...]:
        """Name suffix of each output: ``("",)``, or ``-top-left`` ... ``-bottom-right`` for a split."""
        return tuple(f"-{name}" for name in QUADRANTS) if self.splits else ("",)

    @property
    def quality(self) -> int | None:
        qualities = [op.value for op in self.ops if isinstance(op, Quality)]
        return qualities[-1] if qualities else None

    def plan(self, size: Size) -> list[Size]:
        """The size of each output for an upright source of `size`; InvalidOperation if any
        step cannot apply or any intermediate image would break the limits. No pixels are touched."""
        steps = self.steps(size)
        return list(steps[-1][2]) if steps else [size]

    def steps(self, size: Size) -> list[tuple[Operation, list[Size], list[Size]]]:
        """Each operation with the sizes it takes and gives (checked as `plan` does), for `budget`."""
        sizes = [size]
        steps = []
        for op in self.ops:
            planned = []
            for current in sizes:
                for out in op.plan(current):
                    self.limits.check_size(out, str(op))
                    planned.append(out)
            steps.append((op, sizes, planned))
            sizes = planned
        return steps

    def run(
        self, image: Image.Image, first_size: Size | None = None, first_box: Box | None = None
    ) -> list[Image.Image]:
        """Apply the operations to one frame. `first_size`: the size planned for a leading
        resize, when the frame was decoded smaller than the source (JPEG draft);
        `first_box`: the part of that frame the picture fills (`source.first_frame`)."""
        images = [image]
        for index, op in enumerate(self.ops):
            if index == 0 and first_size is not None and isinstance(op, Resize):
                images = [Resize.resize_to(image, first_size, first_box)]
            else:
                images = [out for current in images for out in op.apply_many(current)]
        return images

    def leading_downscale(self, size: Size) -> Size | None:
        """The target of a leading resize that shrinks both sides (which the JPEG decoder may approach)."""
        if self.ops and isinstance(self.ops[0], Resize):
            target = self.ops[0].output_size(size)
            if target[0] < size[0] and target[1] < size[1]:
                return target
        return None


# How much larger than the target the JPEG decoder must stay. 1.0: the smallest
# DCT scale (1/2, 1/4, 1/8) still at least the target, then Lanczos to it from
# the part of that frame the picture fills (`first_frame`'s box; ignoring it
# misaligned the far edges by up to a pixel: 31.5 dB). libvips' thumbnail
# keeps a factor of 2. PSNR against a full decode + Lanczos (scripts/bench/transform.py):
# 24 MP -> 512x384: 1.0 decodes at 1/8, 48.1 dB in ~0.8x libvips' time (libvips
# 39.9 dB); 2.0 at 1/4, 54.2 dB in ~1.1x. 12 MP at resize=50: 1.0 is the 1/2
# decode alone, 48.0 dB in ~0.5x (libvips 54.8 dB); 2.0 a full decode, ~2.3x.
# As JPEG q85 those two differ by 0.1 dB. More in docs/decisions.md.
DRAFT_MARGIN = 1.0


@dataclass(frozen=True)
class Rendered:
    """One encoded output."""

    data: bytes
    format: str  # Pillow's name: JPEG, PNG, GIF, WEBP, TIFF, BMP
    mime_type: str
    extension: str  # jpg, png, gif, webp, tiff, bmp
    width: int
    height: int
    frames: int
    suffix: str  # "" or, for split outputs, -top-left, -top-right, -bottom-left, -bottom-right


# ---------------------------------------------------------------- parsing


def parse_ops(text: str | None, limits: Limits = DEFAULT_LIMITS) -> Pipeline:
    """``crop:10,10,200,200|rotate:33|resize:50%|blur:2`` (empty or None: no operations)."""
    items = _split_ops(text, limits)
    return _pipeline([_parse_item(item, ":", position, limits) for position, item in enumerate(items, 1)], limits)


def parse_job_ops(items: Sequence[str], limits: Limits = DEFAULT_LIMITS) -> Pipeline:
    """``["resize=50", "split=true", "blur=5"]``: one ``name=value`` (or bare ``name``) per string."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise InvalidOperation('operations must be a list of strings such as ["resize=50", "split=true"]')
    if len(items) > limits.max_ops:
        raise InvalidOperation(f"the pipeline has {len(items)} operations; the limit is {limits.max_ops}")
    ops = []
    for position, item in enumerate(items, 1):
        if not isinstance(item, str):
            raise InvalidOperation(
                f'operation {position} must be a string such as "resize=50", not {type(item).__name__}'
            )
        if len(item) > limits.max_text:
            raise InvalidOperation(f"operation {position} is {len(item)} characters; the limit is {limits.max_text}")
        ops.append(_parse_item(item, "=", position, limits))
    return _pipeline(ops, limits)


def parse_query(
    params: Mapping[str, str] | Iterable[tuple[str, str]],
    limits: Limits = DEFAULT_LIMITS,
    *,
    ignore: Iterable[str] = (),
) -> Pipeline:
    """One operation per query parameter, in the order given: ``resize=512x512&rotate=90&grayscale=1``.

    An ``ops`` parameter contributes its whole pipeline at its place. Parameters
    named in `ignore` are skipped; any other unknown one is an error. Pass
    ``request.args.items(multi=True)`` to keep repeated parameters.
    """
    pairs = list(params.items() if isinstance(params, Mapping) else params)
    skip = {name.strip().lower() for name in ignore}
    entries: list[tuple[str, str | None, str]] = []  # (name, value, separator) or (item, None, ":")
    for key, value in pairs:
        name = str(key).strip().lower()
        if name in skip:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for single in values:
            single = "" if single is None else str(single)
            if name == "ops":
                entries.extend((item, None, ":") for item in _split_ops(single, limits))
            else:
                if len(single) > limits.max_text:
                    raise InvalidOperation(
                        f"{name}: the value is {len(single)} characters; the limit is {limits.max_text}"
                    )
                entries.append((name, single, "="))
            if len(entries) > limits.max_ops:
                raise InvalidOperation(
                    f"the pipeline has more than {limits.max_ops} operations; the limit is {limits.max_ops}"
                )
    ops = []
    for position, (name, value, separator) in enumerate(entries, 1):
        if value is None:
            ops.append(_parse_item(name, separator, position, limits))
        else:
            ops.append(_parse_named(name, value, position, limits, separator))
    return _pipeline(ops, limits)


def _split_ops(text: str | None, limits: Limits) -> list[str]:
    if text is None:
        return []
    if not isinstance(text, str):
        raise InvalidOperation("ops must be text such as crop:10,10,200,200|rotate:33")
    if not text.strip():
        return []
    count = text.count("|") + 1
    if count > limits.max_ops:
        raise InvalidOperation(f"the pipeline has {count} operations; the limit is {limits.max_ops}")
    if len(text) > limits.max_text:
        raise InvalidOperation(f"ops is {len(text)} characters long; the limit is {limits.max_text}")
    return text.split("|")


def _parse_item(text: str, separator: str, position: int, limits: Limits) -> Operation | None:
    item = text.strip()
    if not item:
        raise InvalidOperation(f"operation {position} is empty")
    name, found, value = item.partition(separator)
    return _parse_named(name, value if found else None, position, limits, separator, item)


def _parse_named(
    name: str, value: str | None, position: int, limits: Limits, separator: str, item: str | None = None
) -> Operation | None:
    key = name.strip().lower()
    if not _NAME.fullmatch(key):
        spelled = item if item is not None else f"{name}{separator}{value or ''}"
        raise InvalidOperation(
            f"operation {position} ({show(spelled)}) is not name{separator}value, as in resize{separator}50%"
        )
    cls = _BY_NAME.get(key)
    if cls is None:
        raise InvalidOperation(f"unknown operation {show(key)} (operation {position}); known: {_KNOWN}")
    try:
        op = cls.parse(key, value, limits)
        return None if op is None else _canonical(op, limits)
    except InvalidOperation as exc:
        raise InvalidOperation(f"operation {position}: {exc}") from None


def _canonical(op: Operation, limits: Limits) -> Operation:
    """The operation `op`'s canonical spelling names. A blur's sigma is spelled with 6 decimals,
    so ``blur:3,0.1234567`` is ``blur:3,0.123457`` (and ``blur:1,0.0000001``, sigma 0, is
    ``blur:1``): a pipeline holds nothing its ``str`` (the cache key) does not say, and
    ``parse_ops(str(p)) == p`` (the round trip scripts/fuzz/parsers.py checks)."""
    for _ in range(3):
        name, found, value = str(op).partition(":")
        again = _BY_NAME[name].parse(name, value if found else None, limits)
        if again is None or again == op:
            break
        op = again
    return op


def _pipeline(ops: list[Operation | None], limits: Limits) -> Pipeline:
    kept = tuple(op for op in ops if op is not None)
    if sum(1 for op in kept if isinstance(op, Quadrant) and op.splits) > 1:
        raise InvalidOperation("split: may appear only once in a pipeline (one split already makes four images)")
    return Pipeline(kept, limits)


# ---------------------------------------------------------------- running


def check_render(
    pipeline: Pipeline, size: Size, mode: str, output_format: OutputFormat, source_format: str, source_frames: int
) -> None:
    """InvalidOperation when `render` would refuse a source of this upright `size`, `mode`,
    format and frame count (an upload's record has them) from its header: the sizes, an
    animation's pixels, the memory budget. Lets a job refuse an item before it is queued."""
    _preflight(pipeline, size, mode, output_format, source_frames if source_format in ANIMATABLE else 1)


def _preflight(
    pipeline: Pipeline, size: Size, mode: str, fmt: OutputFormat, source_frames: int
) -> tuple[bool, int, list[Size]]:
    """What `render` checks before decoding; whether the output is animated, its frames and sizes."""
    animated = source_frames > 1 and fmt.animation
    steps = pipeline.steps(size)
    sizes = list(steps[-1][2]) if steps else [size]
    formats.check_sizes(fmt, sizes)
    frames = source_frames if animated else 1
    if animated:
        total = source_frames * sum(width * height for width, height in sizes)
        if total > pipeline.limits.max_animation_pixels:
            raise InvalidOperation(
                f"the animation would be {total} pixels over its {source_frames} frames; "
                f"the limit is {pipeline.limits.max_animation_pixels}"
            )
    needed = budget.estimate(size, mode, steps, sizes, fmt.name, frames=frames, animated=animated)
    budget.check(pipeline.limits, needed, size, sizes, fmt.name, frames)
    return animated, frames, sizes


def render(
    data: bytes,
    pipeline: Pipeline | None = None,
    output_format: str | None = None,
    *,
    max_pixels: int,
    limits: Limits | None = None,
) -> list[Rendered]:
    """Decode `data`, apply the EXIF orientation then `pipeline`, encode as `output_format`.

    `output_format`: an extension (png, jpeg, jpg, gif, webp, tiff, tif, bmp) or
    None for the source's own format. Returns one `Rendered`, or four for a split.
    Raises InvalidOperation (a 400: parameters, limits, format) before any pixel
    is decoded whenever the header suffices, and aperture.domain.imaging.pixels.NotAnImage or
    TooManyPixels (a 422) for a source that cannot be read or is over `max_pixels`.
    Animated GIF/WebP/APNG sources keep their frames when the output is GIF or
    WebP (each frame transformed alike); other outputs get the first frame.
    `limits`: the budget to plan against (the service's: output pixels, render
    memory), replacing the limits the pipeline was parsed with. The render's
    peak memory is estimated from the header and the plan (`budget`) and a
    400 given above `max_render_bytes`, before any pixel is decoded.
    """
    pipeline = pipeline if pipeline is not None else Pipeline()
    if limits is not None and limits != pipeline.limits:
        pipeline = Pipeline(pipeline.ops, limits)
    requested = formats.output_format(output_format) if output_format else None
    source = open_source(data, max_pixels=max_pixels)
    fmt = requested or formats.format_of_source(source.format)
    animated, frames, sizes = _preflight(pipeline, source.size, source.image.mode, fmt, source.frames)
    quality = pipeline.quality

    if animated:
        branches: list[list[Image.Image]] = [[] for _ in sizes]
        durations = []
        for frame, duration in all_frames(source):
            for branch, image in zip(branches, pipeline.run(frame)):
                branch.append(image)
            durations.append(duration)
        if source.format == "GIF" and fmt.name == "WEBP":
            # Browsers show GIF delays of 0 or 10 ms as 100 ms; WebP players do not.
            durations = [100 if duration <= 10 else duration for duration in durations]
        encoded = [
            formats.encode(frames, fmt, quality=quality, durations=durations, loop=source.loop) for frames in branches
        ]
        outputs = [(blob, frames[0].size, len(frames)) for blob, frames in zip(encoded, branches)]
    else:
        target = pipeline.leading_downscale(source.size)
        draft = None
        if target is not None:
            draft = (
                min(source.size[0], round(target[0] * DRAFT_MARGIN)),
                min(source.size[1], round(target[1] * DRAFT_MARGIN)),
            )
        frame, box = first_frame(source, draft)
        images = pipeline.run(frame, first_size=target, first_box=box)
        outputs = [(formats.encode([image], fmt, quality=quality), image.size, 1) for image in images]

    return [
        Rendered(blob, fmt.name, fmt.mime_type, fmt.extension, size[0], size[1], frames, suffix)
        for (blob, size, frames), suffix in zip(outputs, pipeline.suffixes)
    ]
