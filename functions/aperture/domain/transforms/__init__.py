"""Image conversion and transforms (spec S8 downloads, S9 batch jobs). Domain code: Pillow and numpy only.

    pipeline = parse_ops("crop:10,10,200,200|rotate:33|resize:50%|blur:2")   # or parse_job_ops / parse_query
    [out] = render(data, pipeline, "png", max_pixels=config.max_pixels)
    out.data, out.mime_type, out.width, out.height

`InvalidOperation` is a 400 (its message is the reason); aperture.domain.imaging.pixels'
`NotAnImage` / `TooManyPixels` (raised by `render` for the source) are 422.
One module per operation; the grammar is in docs/transforms.md.
"""

from aperture.domain.transforms.base import DEFAULT_LIMITS, InvalidOperation, Limits
from aperture.domain.transforms.formats import EXTENSIONS, FORMATS, OutputFormat, output_format
from aperture.domain.transforms.pipeline import (
    Pipeline,
    Rendered,
    check_render,
    parse_job_ops,
    parse_ops,
    parse_query,
    render,
)

__all__ = [
    "DEFAULT_LIMITS",
    "EXTENSIONS",
    "FORMATS",
    "InvalidOperation",
    "Limits",
    "OutputFormat",
    "Pipeline",
    "Rendered",
    "check_render",
    "output_format",
    "parse_job_ops",
    "parse_ops",
    "parse_query",
    "render",
]
