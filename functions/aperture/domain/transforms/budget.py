"""The memory a render needs, estimated from the header and the plan alone.

`render` calls `check` after `Pipeline.plan` and before any pixel is decoded,
so a request whose working images would not fit (an 8x8 PNG asked for
``.gif?ops=resize:10000x10000!``: ~2.9 GB) is a 400 that costs nothing. The
estimate is an upper bound of what the code below allocates, in bytes:

* the decoded source, held until the outputs are encoded: its pixels at the
  mode's width in Pillow (1 byte for 1/L/P, 2 for I;16, 4 for the rest, which
  Pillow pads to 32 bits), plus a 4-byte working copy when the mode is not a
  working one, plus the float64 conversion of I, I;16 and F samples;
* the largest step: its input and outputs (4 bytes a pixel; the first step's
  input is the source, already counted) and what the operation needs besides
  (`Operation.scratch_bytes`: Lanczos' intermediate, blur's float32 planes,
  rotation's premultiplied copies);
* the encoding: the final images and the encoder's copies (`ENCODER_BYTES`, or
  `ALPHA_ENCODER_BYTES` when the output may have an alpha band);
* animations (GIF/WebP out of an animated source): one composited RGBA frame
  of the canvas at a time (Pillow composites every frame to the canvas, so
  that is each frame's real size), and every output frame of every branch,
  which the encoders hold all at once, times the frame count.

The factors were measured with ``resource``/``VmHWM`` on 16 MP images
(docs/decisions.md); they err on the high side.
"""

from __future__ import annotations

from collections.abc import Sequence

from aperture.domain.transforms.base import WORKING_MODES, InvalidOperation, Limits, Operation, Size

WORKING_BYTES = 4  # Pillow keeps LA, RGB and RGBA pixels in 32 bits (L in 8: counted as 4)
# Per pixel of the largest output, what the encoder needs besides the image: the metadata-free
# copy `formats._plain` makes of a file image, flattening, palette indices (GIF: packed uint32
# colours, sorted search, the palette image), libwebp's YUV planes and output.
ENCODER_BYTES = {"JPEG": 6, "PNG": 6, "GIF": 24, "WEBP": 26, "TIFF": 8, "BMP": 8}
# ... when the image has an alpha band: libwebp compresses the alpha plane trying several filters
# (37 bytes a pixel measured with noise in alpha, 31 for a rotated and blurred photo's edges).
ALPHA_ENCODER_BYTES = {**ENCODER_BYTES, "WEBP": 38}
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa", "P")  # P: a palette may carry transparency
# Per output frame of an animation, what the encoder holds for every frame until it writes.
HELD_FRAME_BYTES = {"GIF": 1, "WEBP": 4}
_FLOAT_CONVERSION = 16  # to_working_mode: float64 samples, then the clipped copy


def mode_bytes(mode: str) -> int:
    """Bytes a pixel of `mode` takes in Pillow's memory."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def estimate(
    size: Size,
    mode: str,
    steps: Sequence[tuple[Operation, Sequence[Size], Sequence[Size]]],
    outputs: Sequence[Size],
    output_format: str,
    *,
    frames: int = 1,
    animated: bool = False,
) -> int:
    """Peak bytes of a render of a `size` source in `mode` (`frames` frames).

    `steps`: each operation with the sizes it takes and the sizes it gives
    (`Pipeline.steps`); `outputs`: the final sizes; `animated`: every frame is
    rendered (a GIF/WebP output of an animated source).
    """
    pixels = size[0] * size[1]
    if animated:
        source = pixels * WORKING_BYTES  # one composited RGBA frame at a time
    else:
        source = pixels * mode_bytes(mode)
        if mode not in WORKING_MODES:
            source += pixels * WORKING_BYTES
        if mode in ("I", "F") or mode.startswith("I;16"):
            source += pixels * _FLOAT_CONVERSION
    largest_step = 0
    for index, (op, inputs, outs) in enumerate(steps):
        held_in = 0 if index == 0 else sum(w * h for w, h in inputs) * WORKING_BYTES
        # One input at a time makes its outputs (a split: four from one), all of which stay.
        scratch = max(
            (op.scratch_bytes(inp, out) for inp, out in zip(_repeat(inputs, outs), outs)),
            default=0,
        )
        largest_step = max(largest_step, held_in + sum(w * h for w, h in outs) * WORKING_BYTES + scratch)
    output_pixels = sum(w * h for w, h in outputs)
    largest_output = max((w * h for w, h in outputs), default=0)
    alpha = mode in _ALPHA_MODES or animated or any(op.adds_alpha() for op, _, _ in steps)
    factors = ALPHA_ENCODER_BYTES if alpha else ENCODER_BYTES
    encoder = factors.get(output_format, max(factors.values()))
    if animated:
        held = frames * output_pixels * (WORKING_BYTES + HELD_FRAME_BYTES.get(output_format, WORKING_BYTES))
        return source + largest_step + held + largest_output * encoder
    # Without operations the output is the source itself, already counted.
    final = output_pixels * WORKING_BYTES if steps else 0
    return source + max(largest_step, final + largest_output * encoder)


def check(limits: Limits, estimated: int, size: Size, outputs: Sequence[Size], fmt: str, frames: int) -> None:
    """InvalidOperation (a 400) when `estimated` is over `limits.max_render_bytes`."""
    if estimated <= limits.max_render_bytes:
        return
    shown = ", ".join(f"{w}x{h}" for w, h in outputs[:4]) + (", ..." if len(outputs) > 4 else "")
    animation = f" over {frames} frames" if frames > 1 else ""
    raise InvalidOperation(
        f"the render would need about {_mib(estimated)} MiB of memory ({size[0]}x{size[1]} source, "
        f"{fmt.lower()} output {shown}{animation}); the limit is {_mib(limits.max_render_bytes)} MiB: "
        "ask for a smaller size"
    )


def _mib(value: int) -> int:
    return -(-value // (1 << 20))


def _repeat(inputs: Sequence[Size], outs: Sequence[Size]) -> list[Size]:
    """The input each output came from (a split makes several outputs of one input)."""
    if len(inputs) == len(outs) or not inputs:
        return list(inputs)
    per = len(outs) // len(inputs)
    return [inp for inp in inputs for _ in range(per)]
