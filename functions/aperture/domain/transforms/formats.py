"""Output formats: names, MIME types, limits, and encoding without metadata.

Every output is written from a plain ``Image`` with empty ``info``, and no
EXIF, XMP, ICC profile, comment or text chunk is passed to the encoder
(colours were converted to sRGB on decoding, so none is needed).

Per format:
  JPEG  L or RGB; alpha is flattened onto white. Quality 85 unless asked.
  PNG   L, LA, RGB, RGBA, lossless (zlib level 3: see PNG_COMPRESS_LEVEL).
  GIF   a palette per frame. An image with at most 256 colours (255 plus a
        transparent index when it has transparency) is stored exactly; more
        colours are quantized: median cut for stills, fast octree for animation
        frames (10x faster, ~0.5 dB worse). Alpha below 128 is transparent.
        Animations keep frames, durations and loop count.
  WEBP  RGB or RGBA, lossy, quality 80 unless asked; animations kept.
  TIFF  L, LA, RGB, RGBA, lossless (Deflate).
  BMP   L or RGB; alpha is flattened onto white (readers disagree on BMP alpha).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from aperture.domain.transforms.base import InvalidOperation, Size


@dataclass(frozen=True)
class OutputFormat:
    name: str  # Pillow's format name
    extension: str
    mime_type: str
    max_dimension: int
    animation: bool = False
    default_quality: int | None = None  # lossy formats only


# zlib level for PNG: on a 12 MP photo level 6 (Pillow's default) takes ~4x as long as
# level 3 for files ~4% smaller (5.0 s vs 1.3 s, 16.0 vs 16.7 MB, see scripts/bench/transform.py).
PNG_COMPRESS_LEVEL = 3

FORMATS = {
    "JPEG": OutputFormat("JPEG", "jpg", "image/jpeg", 65_500, default_quality=85),
    "PNG": OutputFormat("PNG", "png", "image/png", 2**31 - 1),
    "GIF": OutputFormat("GIF", "gif", "image/gif", 65_535, animation=True),
    "WEBP": OutputFormat("WEBP", "webp", "image/webp", 16_383, animation=True, default_quality=80),
    "TIFF": OutputFormat("TIFF", "tiff", "image/tiff", 2**31 - 1),
    "BMP": OutputFormat("BMP", "bmp", "image/bmp", 2**31 - 1),
}

# What a URL or a job may ask for (``/v1/images/{id}.png``), case-insensitive.
EXTENSIONS = {
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "png": "PNG",
    "gif": "GIF",
    "webp": "WEBP",
    "tiff": "TIFF",
    "tif": "TIFF",
    "bmp": "BMP",
}


def output_format(name: str) -> OutputFormat:
    """The format an extension (``png``, ``.JPG``) or Pillow name (``JPEG``) means."""
    key = name.strip().lower().lstrip(".")
    if key not in EXTENSIONS:
        raise InvalidOperation(f"unsupported output format {name!r}; use one of {', '.join(EXTENSIONS)}")
    return FORMATS[EXTENSIONS[key]]


def format_of_source(pillow_format: str) -> OutputFormat:
    """The output format when none is asked for: the source's own, PNG if we cannot write that."""
    return FORMATS.get("JPEG" if pillow_format == "MPO" else pillow_format, FORMATS["PNG"])


def check_sizes(fmt: OutputFormat, sizes: list[Size]) -> None:
    for width, height in sizes:
        if width > fmt.max_dimension or height > fmt.max_dimension:
            raise InvalidOperation(
                f"{fmt.extension} output is limited to {fmt.max_dimension} pixels on a side; "
                f"this image would be {width}x{height}"
            )


def encode(
    frames: list[Image.Image],
    fmt: OutputFormat,
    *,
    quality: int | None = None,
    durations: list[int] | None = None,
    loop: int | None = None,
) -> bytes:
    """Encode one still (one frame) or an animation (several frames, GIF or WebP only)."""
    quality = quality or fmt.default_quality
    frames = [_plain(frame) for frame in frames]
    buffer = io.BytesIO()
    if len(frames) > 1:
        _encode_animation(buffer, frames, fmt, quality, durations or [100] * len(frames), loop)
    elif fmt.name == "JPEG":
        _flatten(frames[0]).save(buffer, "JPEG", quality=quality)
    elif fmt.name == "PNG":
        frames[0].save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif fmt.name == "GIF":
        frame = _to_palette(frames[0])
        frame.save(buffer, "GIF", **_gif_frame_options(frame))
    elif fmt.name == "WEBP":
        frame = frames[0]
        frame = frame if frame.mode in ("RGB", "RGBA") else frame.convert("RGBA" if "A" in frame.mode else "RGB")
        frame.save(buffer, "WEBP", quality=quality, method=4)
    elif fmt.name == "TIFF":
        frames[0].save(buffer, "TIFF", compression="tiff_adobe_deflate")
    elif fmt.name == "BMP":
        _flatten(frames[0]).save(buffer, "BMP")
    else:  # pragma: no cover - FORMATS is closed
        raise AssertionError(fmt.name)
    return buffer.getvalue()


def _encode_animation(
    buffer: io.BytesIO,
    frames: list[Image.Image],
    fmt: OutputFormat,
    quality: int | None,
    durations: list[int],
    loop: int | None,
) -> None:
    if fmt.name == "GIF":
        paletted = [_to_palette(frame, Image.Quantize.FASTOCTREE) for frame in frames]
        options: dict[str, object] = {
            "save_all": True,
            "append_images": paletted[1:],
            "duration": durations,
            "disposal": 2,
            "optimize": False,
        }
        if loop is not None:
            options["loop"] = loop
        paletted[0].save(buffer, "GIF", **options)
    elif fmt.name == "WEBP":
        rgba = [frame.convert("RGBA") for frame in frames]
        rgba[0].save(
            buffer,
            "WEBP",
            save_all=True,
            append_images=rgba[1:],
            duration=durations,
            loop=1 if loop is None else loop,
            quality=quality,
            method=4,
        )
    else:  # pragma: no cover - the pipeline flattens animations for other formats
        raise AssertionError(fmt.name)


def _plain(image: Image.Image) -> Image.Image:
    """A plain Image without metadata: file objects (TIFF, JPEG...) carry tags encoders would copy."""
    if type(image) is not Image.Image:
        image = image.copy()
    image.info = {}
    return image


def _flatten(image: Image.Image) -> Image.Image:
    """Alpha composited onto white, for formats without alpha."""
    if image.mode == "RGBA":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        return flat
    if image.mode == "LA":
        flat = Image.new("L", image.size, 255)
        flat.paste(image.getchannel("L"), mask=image.getchannel("A"))
        return flat
    return image


def _gif_frame_options(frame: Image.Image) -> dict[str, object]:
    return {"transparency": frame.info["transparency"]} if "transparency" in frame.info else {}


def _to_palette(image: Image.Image, method: Image.Quantize = Image.Quantize.MEDIANCUT) -> Image.Image:
    """A P image for GIF: exact when the colours fit, quantized (by `method`) otherwise.

    Pixels with alpha below 128 take the transparent index 255 (``info["transparency"]``).
    """
    if image.mode == "L":
        image = image.convert("RGB")  # at most 256 greys: the exact palette below keeps them
    if image.mode == "LA":
        image = image.convert("RGBA")
    transparent = None
    if image.mode == "RGBA":
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 128:
            transparent = alpha < 128
        image = image.convert("RGB")
    budget = 256 if transparent is None else 255
    exact = _exact_palette(image, transparent, budget)
    if exact is not None:
        indices, palette = exact
    else:
        quantized = image.quantize(budget, method=method)
        indices = np.asarray(quantized)
        palette = bytes(quantized.getpalette() or [])[: 3 * budget]
    if transparent is not None:
        indices = indices.copy()
        indices[transparent] = 255
        palette = palette[: 3 * 255].ljust(3 * 255, b"\0") + b"\0\0\0"
    result = Image.fromarray(np.ascontiguousarray(indices, dtype=np.uint8), "P")
    result.putpalette(palette)
    if transparent is not None:
        result.info["transparency"] = 255
    return result


def _exact_palette(rgb: Image.Image, transparent: np.ndarray | None, budget: int) -> tuple[np.ndarray, bytes] | None:
    """Indices and palette holding every colour exactly, or None when there are more than `budget`."""
    pixels = np.asarray(rgb)
    if transparent is not None:
        # Transparent pixels' colours do not count: paint them like an opaque one.
        pixels = pixels.copy()
        opaque = pixels[~transparent]
        pixels[transparent] = opaque[0] if opaque.size else 0
        rgb = Image.fromarray(pixels, "RGB")
    colours = rgb.getcolors(budget)
    if colours is None:
        return None
    # RGB images count (r, g, b) tuples; the stubs allow a single band's ints too.
    rgbs: list[tuple[int, int, int]] = [colour for _, colour in colours]  # type: ignore[misc]
    packed_palette = np.array(sorted((r << 16) | (g << 8) | b for r, g, b in rgbs), dtype=np.uint32)
    packed = (pixels[..., 0].astype(np.uint32) << 16) | (pixels[..., 1].astype(np.uint32) << 8) | pixels[..., 2]
    indices = np.searchsorted(packed_palette, packed).astype(np.uint8)
    palette = np.stack(
        [(packed_palette >> 16) & 255, (packed_palette >> 8) & 255, packed_palette & 255], axis=1
    ).astype(np.uint8)
    return indices, palette.tobytes()
