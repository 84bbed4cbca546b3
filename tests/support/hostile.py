"""Hostile upload inputs, built in memory (no fixtures on disk)."""

from __future__ import annotations

import io
import struct
import zipfile

from PIL import Image

from tests.support.images import encode, png_header_only, random_image


def jpeg(size=(64, 48), seed=0, quality=90) -> bytes:
    return encode(random_image("RGB", size=size, seed=seed), "JPEG", quality=quality)


def gif_with_frames(frames: int) -> bytes:
    """A 1x1 GIF with `frames` frames, written by hand (Pillow merges identical frames)."""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff")
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for i in range(frames):
        out += b"\x21\xf9\x04\x00\x01\x00\x00\x00"  # graphic control: 10 ms
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        out += b"\x02\x02" + (b"\x44\x01" if i % 2 else b"\x4c\x01") + b"\x00"  # LZW: one pixel of colour 0 or 1
    out += b"\x3b"
    return bytes(out)


def jpeg_with_huge_exif(total: int = 300_000) -> bytes:
    data = jpeg()
    segment = b"\xff\xe1" + struct.pack(">H", 60_002) + b"Exif\x00\x00" + b"\x00" * 59_994
    count = total // 60_000 + 1
    return data[:2] + segment * count + data[2:]


def polyglot_jpeg_zip() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("payload.html", "<script>alert(1)</script>")
    return jpeg() + archive.getvalue()


def polyglot_png_html() -> bytes:
    return encode(random_image("RGB")) + b"<html><script>alert(1)</script></html>"


# name -> (filename, bytes, expected per-file status code)
def corpus() -> dict[str, tuple[str, bytes, int]]:
    full = jpeg(size=(400, 300))
    return {
        "zero bytes": ("empty.jpg", b"", 422),
        "text named .jpg": ("notes.jpg", b"just some text, honestly\n" * 20, 422),
        "html": ("page.png", b"<!doctype html><html><body><script>alert(1)</script></body></html>", 422),
        "svg": ("vector.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', 422),
        "jpeg truncated at 10%": ("cut10.jpg", full[: len(full) // 10], 422),
        "jpeg truncated at 50%": ("cut50.jpg", full[: len(full) // 2], 422),
        "jpeg truncated at 90%": ("cut90.jpg", full[: len(full) * 9 // 10], 422),
        "png decompression bomb": ("bomb.png", png_header_only(50_000, 50_000), 422),
        "gif with 10000 frames": ("frames.gif", gif_with_frames(10_000), 422),
        "huge exif block": ("exif.jpg", jpeg_with_huge_exif(), 422),
        "polyglot jpeg+zip": ("poly.jpg", polyglot_jpeg_zip(), 422),
        "polyglot png+html": ("poly.png", polyglot_png_html(), 422),
        "pdf": ("doc.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", 422),
        "ico (format not allowed)": ("icon.png", _ico(), 422),
        "filename with NUL": ("evil\x00.jpg", jpeg(seed=21), 400),
        "filename of 300 characters": ("a" * 296 + ".jpg", jpeg(seed=22), 400),
    }


def _ico() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, "ICO")
    return buffer.getvalue()
