"""Hostile upload inputs, built in memory (no fixtures on disk)."""

from __future__ import annotations

import functools
import io
import struct
import zipfile

from PIL import Image, PngImagePlugin

from tests.support.images import encode, png_chunk, png_header_only, random_image


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


def _zip() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("payload.html", "<script>alert(1)</script>")
    return archive.getvalue()


def _save(frames: list[Image.Image], fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=len(frames) > 1, append_images=frames[1:], **options)
    return buffer.getvalue()


@functools.lru_cache
def _gif_frame(width: int, height: int) -> bytes:
    """One image descriptor and its LZW data: a width x height frame of colour 0 (a few KB)."""
    data = _save([Image.new("P", (width, height), 0)], "GIF")
    return data[data.index(b"\x2c", 19) : -1]


# A frame whose LZW data stops at once: any decoder fails on it ("truncated").
UNDECODABLE_GIF_DATA = b"\x02\x02\x4c\x01\x00"


def gif_small_first_frame(frames: int, size=(4000, 4000), decodable: bool = True) -> bytes:
    """A 1x1 GIF (first frame 1x1) followed by `frames` frames of `size`: Pillow grows the canvas."""
    head = _save([Image.new("P", (1, 1), 0)], "GIF")[:-1]
    if decodable:
        later = _gif_frame(*size)
    else:
        later = b"\x2c" + struct.pack("<HHHHB", 0, 0, *size, 0) + UNDECODABLE_GIF_DATA
    return head + later * frames + b"\x3b"


def tiff_small_first_page(pages: int, size=(4000, 4000)) -> bytes:
    """A 1x1 first page, then `pages` pages of `size` whose strips are absent (the file
    ends after the directories: a decoder cannot read them)."""
    ifds = bytearray()
    count = pages + 1
    first = 8
    entry_size = 2 + 8 * 12 + 4
    for n in range(count):
        width, height = (1, 1) if n == 0 else size
        following = 0 if n == count - 1 else first + (n + 1) * entry_size
        entries = [
            (256, 4, 1, width),
            (257, 4, 1, height),
            (258, 3, 1, 8),
            (259, 3, 1, 1),
            (262, 3, 1, 1),
            (273, 4, 1, 0),  # strip at offset 0, zero bytes: nothing to decode
            (278, 4, 1, height),
            (279, 4, 1, 0),
        ]
        ifds += struct.pack("<H", len(entries))
        for tag, kind, n_values, value in entries:
            ifds += struct.pack("<HHII", tag, kind, n_values, value)
        ifds += struct.pack("<I", following)
    return b"II*\x00" + struct.pack("<I", first) + bytes(ifds)


def progressive_jpeg(size=(320, 240), seed=0) -> bytes:
    return encode(random_image("RGB", size=size, seed=seed), "JPEG", quality=90, progressive=True)


def jpeg_bogus_progression(repeats: int = 5) -> bytes:
    """A progressive JPEG whose last scan (and its table) is sent `repeats` more times: libjpeg
    only warns ("Inconsistent progression sequence"), Pillow decodes it silently, and every
    repeat costs a pass over the whole coefficient buffer."""
    data = progressive_jpeg()
    end = data.rindex(b"\xff\xd9")
    last_table = data.rindex(b"\xff\xc4", 0, data.rindex(b"\xff\xda"))
    return data[:end] + data[last_table:end] * repeats + data[end:]


def jpeg_many_scans(scans: int = 64, decodable_data: bool = False) -> bytes:
    """A greyscale progressive JPEG with a legal progression of `scans` scans (DC, then AC
    coefficients one by one, then their refinements). The entropy-coded data of each scan is a
    few junk bytes: only the structure can refuse it before decoding."""
    gray = encode(random_image("L", size=(64, 64), seed=5), "JPEG", quality=90, progressive=True)
    first_scan = gray.index(b"\xff\xda")
    script = [(0, 0, 0, 0)] + [(k, k, 0, 1) for k in range(1, 64)] + [(k, k, 1, 0) for k in range(1, 64)]
    body = bytearray()
    for first, last, high, low in script[:scans]:
        body += b"\xff\xda" + struct.pack(">HBBBBBB", 8, 1, 1, 0x00, first, last, high << 4 | low)
        body += b"\x00" * 8
    return gray[:first_scan] + bytes(body) + b"\xff\xd9"


def jpeg_with_hidden_image() -> bytes:
    """A JPEG, then a second whole JPEG: the file ends in FFD9, like the first image."""
    return jpeg(seed=30) + jpeg(size=(32, 32), seed=31)


def jpeg_hiding_zip_before_eoi() -> bytes:
    return jpeg(seed=32) + _zip() + b"\xff\xd9"


def polyglot_gif_zip() -> bytes:
    return _save([random_image("RGB", seed=33).convert("P")], "GIF") + _zip()


def polyglot_webp_html() -> bytes:
    return encode(random_image("RGB", seed=34), "WEBP") + b"<html><script>alert(1)</script></html>"


def polyglot_tiff_zip() -> bytes:
    return encode(random_image("RGB", seed=35), "TIFF") + _zip()


def polyglot_bmp_zip() -> bytes:
    return encode(random_image("RGB", seed=36), "BMP") + _zip()


def icc_blob(size: int = 300_000) -> bytes:
    """Bytes embedded as an ICC profile (never parsed as one by the validator)."""
    return bytes(range(256)) * (size // 256)


def with_huge_icc(fmt: str, size: int = 300_000) -> bytes:
    """An image of `fmt` carrying an ICC profile of `size` bytes."""
    image = random_image("RGB", seed=37)
    if fmt == "GIF":  # an ICCRGBG1012 application extension, as browsers read it
        data = _save([image.convert("P")], "GIF")
        blob = icc_blob(size)
        blocks = b"".join(bytes([len(c)]) + c for c in (blob[i : i + 255] for i in range(0, len(blob), 255)))
        extension = b"\x21\xff\x0bICCRGBG1012" + blocks + b"\x00"
        at = data.index(b"\x2c", 13)
        return data[:at] + extension + data[at:]
    if fmt == "BMP":
        return bmp_v5_with_profile(icc_blob(size))
    return encode(image, fmt, icc_profile=icc_blob(size))


def bmp_v5_with_profile(profile: bytes, size=(8, 4)) -> bytes:
    """A 24-bit BMP with a BITMAPV5HEADER and an embedded ICC profile after its pixels."""
    width, height = size
    stride = (width * 3 + 3) // 4 * 4
    pixels = bytes(stride * height)
    offset = 14 + 124
    header = struct.pack("<IiiHHIIiiII", 124, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    header += bytes(16) + struct.pack("<I", 0x4D424544) + bytes(36 + 12)  # masks, 'MBED', endpoints, gamma
    # intent, then the profile's offset (from the start of this header) and size
    header += struct.pack("<IIII", 4, 124 + len(pixels), len(profile), 0)
    total = offset + len(pixels) + len(profile)
    return b"BM" + struct.pack("<IHHI", total, 0, 0, offset) + header + pixels + profile


def png_with_chunks(count: int, kind: bytes = b"abCd") -> bytes:
    """An 8x8 PNG with `count` more chunks: empty ancillary ones before the pixels, or (IDAT)
    its compressed pixels cut into chunks, the rest of them empty."""
    data = encode(random_image("RGB", size=(8, 8), seed=38), "PNG")
    start = data.index(b"IDAT") - 4
    length = struct.unpack_from(">I", data, start)[0]
    pixels, end = data[start + 8 : start + 8 + length], data[start + 12 + length :]
    if kind == b"IDAT":
        cut = [pixels[i : i + 1] for i in range(len(pixels))]
        chunks = [png_chunk(b"IDAT", piece) for piece in cut + [b""] * max(0, count - len(cut))]
        return data[:start] + b"".join(chunks) + end
    return data[:start] + png_chunk(kind, b"") * count + data[start:]


def png_with_compressed_text(size: int = 300_000, kind: str = "zTXt") -> bytes:
    """A PNG whose one text chunk (`zTXt` or compressed `iTXt`) inflates to `size` bytes from about a kilobyte."""
    info = PngImagePlugin.PngInfo()
    text = "a" * size
    if kind == "zTXt":
        info.add_text("Comment", text, zip=True)
    else:
        info.add_itxt("Comment", text, lang="en", tkey="Kommentar", zip=True)
    return encode(random_image("RGB", size=(8, 8), seed=39), "PNG", pnginfo=info)


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
        "gif with a 1x1 first frame and large later frames": ("grow.gif", gif_small_first_frame(40), 422),
        "tiff with a 1x1 first page and large later pages": ("pages.tif", tiff_small_first_page(40), 422),
        "progressive jpeg with 64 scans": ("scans.jpg", jpeg_many_scans(64), 422),
        "jpeg with a bogus progression": ("bogus.jpg", jpeg_bogus_progression(), 422),
        "jpeg hiding a second jpeg": ("twice.jpg", jpeg_with_hidden_image(), 422),
        "jpeg hiding a zip before a last FFD9": ("hidden.jpg", jpeg_hiding_zip_before_eoi(), 422),
        "polyglot gif+zip": ("poly.gif", polyglot_gif_zip(), 422),
        "polyglot webp+html": ("poly.webp", polyglot_webp_html(), 422),
        "polyglot tiff+zip": ("poly.tif", polyglot_tiff_zip(), 422),
        "polyglot bmp+zip": ("poly.bmp", polyglot_bmp_zip(), 422),
        "png with a huge icc profile": ("icc.png", with_huge_icc("PNG"), 422),
        "png with 100000 empty chunks": ("chunks.png", png_with_chunks(100_000), 422),
        "png whose zTXt inflates to 300 KB": ("ztxt.png", png_with_compressed_text(), 422),
        "png whose iTXt inflates to 300 KB": ("itxt.png", png_with_compressed_text(kind="iTXt"), 422),
        "jpeg with a huge icc profile": ("icc.jpg", with_huge_icc("JPEG"), 422),
        "webp with a huge icc profile": ("icc.webp", with_huge_icc("WEBP"), 422),
        "tiff with a huge icc profile": ("icc.tif", with_huge_icc("TIFF"), 422),
        "gif with a huge icc profile": ("icc.gif", with_huge_icc("GIF"), 422),
        "bmp with a huge icc profile": ("icc.bmp", with_huge_icc("BMP"), 422),
        "filename with NUL": ("evil\x00.jpg", jpeg(seed=21), 400),
        "filename of 300 characters": ("a" * 296 + ".jpg", jpeg(seed=22), 400),
    }


def _ico() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, "ICO")
    return buffer.getvalue()
