"""Decoding the source image into frames the operations work on.

Steps, in order: open lazily (the header alone, checked against the pixel
limit before anything is decoded); optionally ask libjpeg to decode at 1/2,
1/4 or 1/8 scale (``Image.draft``, which also says which part of the smaller
frame the picture fills); decode; apply the EXIF orientation (the
same transposes as ``ImageOps.exif_transpose``); convert from an embedded
ICC profile to sRGB (the profile itself is then dropped, as imgproxy does);
normalize the mode to one of L, LA, RGB, RGBA (8 bits per sample).
No metadata survives: frames come out with empty ``info``.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms

from aperture.domain.imaging.metadata import header_orientation
from aperture.domain.imaging.pixels import DECODE_ERRORS, NotAnImage, TooManyPixels, error_reason
from aperture.domain.transforms.base import Size

# EXIF orientation -> the transpose that makes the image upright (ImageOps.exif_transpose's table).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = {
    Image.Transpose.TRANSPOSE,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSVERSE,
    Image.Transpose.ROTATE_90,
}
_MIRRORS_X = {
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_90,
    Image.Transpose.TRANSVERSE,
}
_MIRRORS_Y = {
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSVERSE,
}
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
ANIMATABLE = {"GIF", "WEBP", "PNG"}  # MPO's extra images and TIFF pages are not animation


# (left, top, right, bottom) in pixels, fractional: an `Image.resize(box=...)` argument.
Box = tuple[float, float, float, float]


@dataclass
class Source:
    image: Image.Image  # opened, not yet decoded
    format: str  # Pillow's format name, MPO reported as JPEG
    orientation: Image.Transpose | None
    frames: int  # animation frames (1 for stills)
    loop: int | None = None  # animation loop count (0: forever); None: plays once (GIF without NETSCAPE2.0)

    @property
    def size(self) -> Size:
        """Width and height once upright."""
        width, height = self.image.size
        return (height, width) if self.orientation in _SWAPS_AXES else (width, height)

    @property
    def animated(self) -> bool:
        return self.frames > 1


def open_source(data: bytes, *, max_pixels: int) -> Source:
    """Read the header; `NotAnImage` or `TooManyPixels` (both from aperture.domain.imaging.pixels) on failure."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # Pillow's own guard fired first
        declared = _BOMB_PIXELS.search(str(exc))
        raise TooManyPixels(int(declared.group(1)) if declared else None, max_pixels) from None
    except Image.UnidentifiedImageError:
        raise NotAnImage("not a recognised image format") from None
    except DECODE_ERRORS as exc:
        raise NotAnImage(f"cannot read image header: {error_reason(exc)}") from None
    width, height = image.size
    if width * height <= 0:
        raise NotAnImage(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise TooManyPixels(width * height, max_pixels)
    fmt = "JPEG" if image.format == "MPO" else (image.format or "")
    try:
        animated = fmt in ANIMATABLE and getattr(image, "is_animated", False)
        frames = image.n_frames if animated else 1  # type: ignore[attr-defined]
    except DECODE_ERRORS as exc:
        raise NotAnImage(f"cannot read the frames: {error_reason(exc)}") from None
    loop = image.info.get("loop") if frames > 1 else None
    # From the header: nothing is decoded before the budget is checked.
    orientation = _ORIENTATION.get(header_orientation(image, data))
    return Source(image, fmt, orientation, frames, int(loop) if loop is not None else None)


def first_frame(source: Source, draft: Size | None = None) -> tuple[Image.Image, Box | None]:
    """The first frame, upright, sRGB, in a working mode, and the part of it the picture fills.

    `draft`: the upright size the pipeline will first resize to. For JPEG the
    decoder then scales by 1/2, 1/4 or 1/8 to the smallest size still at
    least that large; other formats ignore it. A scaled frame has whole
    pixels, rounded up, so the picture may fill a little less than it: at
    1/8 a 5657-pixel row decodes to 708 pixels of which it fills 707.125.
    The box returned says which part (upright), for the resize that
    follows; None when the picture fills the whole frame.
    """
    image = source.image
    box: Box | None = None
    if draft is not None and source.format == "JPEG":
        width, height = draft
        if source.orientation in _SWAPS_AXES:
            width, height = height, width
        drafted = image.draft(image.mode, (width, height))  # None, or (mode, box in the smaller frame)
        if drafted is not None and drafted[1][2:] != image.size:
            box = _upright_box(drafted[1], image.size, source.orientation)
    _load(image)
    return _prepare(image, source.orientation), box


def all_frames(source: Source) -> Iterator[tuple[Image.Image, int]]:
    """Every frame of an animation, composited as shown, as RGBA, with its duration in ms."""
    image = source.image
    for index in range(source.frames):
        try:
            image.seek(index)
            frame = image.convert("RGBA")
        except DECODE_ERRORS as exc:
            raise NotAnImage(f"cannot decode frame {index}: {error_reason(exc)}") from None
        duration = int(image.info.get("duration") or 0)
        if source.orientation is not None:
            frame = frame.transpose(source.orientation)
        frame.info = {}
        yield frame, duration


def _upright_box(box: Box, size: Size, orientation: Image.Transpose | None) -> Box:
    """`box`, within a frame of `size`, once the frame is turned upright by `orientation`.

    Each transpose is a mirror of x, of y, of both or neither, then for the
    four that swap axes, a swap of x and y (ROTATE_90: x -> w - x, then swap).
    """
    left, top, right, bottom = box
    width, height = size
    if orientation in _MIRRORS_X:
        left, right = width - right, width - left
    if orientation in _MIRRORS_Y:
        top, bottom = height - bottom, height - top
    if orientation in _SWAPS_AXES:
        return top, left, bottom, right
    return left, top, right, bottom


def _load(image: Image.Image) -> None:
    try:
        image.load()
    except Image.DecompressionBombError:
        raise TooManyPixels(None, image.width * image.height) from None
    except DECODE_ERRORS as exc:
        raise NotAnImage(f"cannot decode image data: {error_reason(exc)}") from None


def _prepare(image: Image.Image, orientation: Image.Transpose | None) -> Image.Image:
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "RGBA", "CMYK"):
        image = _to_srgb(image, icc)
    image = to_working_mode(image)
    if orientation is not None:
        image = image.transpose(orientation)
    image.info = {}
    return image


def to_working_mode(image: Image.Image) -> Image.Image:
    """L, LA, RGB or RGBA, 8 bits per sample, keeping transparency and scaling 16-bit samples."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode in ("P", "PA"):
        return image.convert("RGBA" if mode == "PA" or image.has_transparency_data else "RGB")
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I;16") or mode in ("I", "F"):
        samples = np.asarray(image).astype(np.float64)
        if mode == "I" and samples.max(initial=0) > 255 or mode.startswith("I;16"):
            samples = samples / 257.0  # 16-bit range: 65535 -> 255
        return Image.fromarray(np.clip(np.rint(samples), 0, 255).astype(np.uint8), "L")
    if mode == "La":
        return image.convert("LA")
    if "A" in image.getbands() or "a" in image.getbands():
        return image.convert("RGBA")
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, RGBa...


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    transform = _transform_to_srgb(icc, image.mode)
    if transform is None:
        return image
    try:
        converted = ImageCms.applyTransform(image, transform)
    except (ImageCms.PyCMSError, ValueError, OSError):
        return image
    return converted if converted is not None else image  # None only for inPlace=True


@functools.lru_cache(maxsize=32)
def _transform_to_srgb(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """A cached transform from the embedded profile to sRGB; None for sRGB itself or an unusable profile."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in (ImageCms.getProfileDescription(profile) or "").lower().replace(" ", ""):
            return None
        return ImageCms.buildTransform(profile, _SRGB, mode, "RGBA" if mode == "RGBA" else "RGB")
    except (ImageCms.PyCMSError, ValueError, OSError, TypeError):
        return None
