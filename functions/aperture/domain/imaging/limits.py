"""What upload validation is bounded by, and how it refuses (shared by `validation` and `structure`)."""

from __future__ import annotations

from dataclasses import dataclass

# Defaults of `Limits.max_jpeg_scans` and `max_png_chunks`; the deployed values are config's
# APERTURE_MAX_JPEG_SCANS and APERTURE_MAX_PNG_CHUNKS.
DEFAULT_MAX_JPEG_SCANS = 32
DEFAULT_MAX_PNG_CHUNKS = 20_000


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_pixels: int
    max_frames: int
    max_animation_pixels: int
    max_metadata_bytes: int
    max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS
    max_png_chunks: int = DEFAULT_MAX_PNG_CHUNKS


class Rejected(ValueError):
    """Why a file is refused, and the HTTP status that reason maps to."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Budget:
    """Frames, pixels and metadata counted from a file's structure, refused as soon
    as they go over the limits (before anything is decoded)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.frames = 0
        self.pixels = 0
        self.metadata = 0

    def frame(self, width: int, height: int) -> None:
        """One more frame (page) that decodes to width x height pixels."""
        limits = self.limits
        self.frames += 1
        if self.frames > limits.max_frames:
            raise Rejected(422, f"image has more than {limits.max_frames} frames; the limit is {limits.max_frames}")
        pixels = width * height
        if pixels <= 0:
            raise Rejected(422, f"frame {self.frames} has no pixels ({width}x{height})")
        if pixels > limits.max_pixels:
            raise Rejected(
                422, f"frame {self.frames} has {pixels} pixels ({width}x{height}); the limit is {limits.max_pixels}"
            )
        self.pixels += pixels
        if self.pixels > limits.max_animation_pixels:
            raise Rejected(
                422,
                f"frames have more than {limits.max_animation_pixels} pixels in all (frame {self.frames} is "
                f"{width}x{height}); the limit is {limits.max_animation_pixels}",
            )

    def add_metadata(self, size: int) -> None:
        """EXIF, XMP, ICC profiles, comments, text: counted together in every format."""
        self.metadata += size
        if self.metadata > self.limits.max_metadata_bytes:
            raise Rejected(
                422,
                f"metadata (EXIF, XMP, ICC profile, comments, text) is over {self.limits.max_metadata_bytes} bytes; "
                f"the limit is {self.limits.max_metadata_bytes}",
            )


def only_padding(tail: bytes) -> bool:
    return tail.strip(b"\x00\xff\r\n") == b""


def refuse_trailing(fmt: str, data: bytes, end: int) -> None:
    """Refuse bytes after `end`, the real end of the image, unless they are padding."""
    tail = data[end:]
    if tail and not only_padding(tail):
        raise Rejected(422, f"{len(tail)} bytes after the end of the {fmt} image (polyglot or appended data)")
