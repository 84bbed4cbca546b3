"""Structure walks of GIF, WebP, TIFF and BMP uploads: what every frame costs, how much
metadata there is, and where the image really ends — read from headers and block
structure, before any pixel is decoded.

Each walk counts frames (pages) at the size the decoder will give them into a
`Budget` (refused as soon as a limit is passed) and refuses bytes after the
image's real end (polyglots). Damage the walk cannot judge (a file cut short
inside pixel data) is left to the decoder, which refuses it afterwards.
"""

from __future__ import annotations

import struct

import numpy as np

from aperture.domain.imaging.limits import Budget, Rejected, refuse_trailing

# -- GIF --------------------------------------------------------------------------------------


def check_gif(data: bytes, budget: Budget) -> None:
    """Every image descriptor is a frame. Pillow grows the canvas to hold a frame
    that reaches past it and composites every later frame onto it, so a frame
    costs the canvas as it is after that frame (a 1x1 first frame does not make
    4000x4000 later frames cheap). Extensions other than graphic control
    (comments, application data such as ICC profiles and XMP, plain text) are
    metadata. The image ends at the trailer (0x3B)."""
    if len(data) < 13:
        return  # the decoder refuses it
    width, height, packed = struct.unpack_from("<HHB", data, 6)
    pos = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    canvas_w, canvas_h = width, height
    while pos < len(data):
        kind = data[pos]
        if kind == 0x3B:  # trailer
            refuse_trailing("GIF", data, pos + 1)
            return
        if kind == 0x00:  # stray block terminators some encoders leave: padding
            pos += 1
            continue
        if kind == 0x21:  # extension: label, then sub-blocks
            if pos + 1 >= len(data):
                return
            label = data[pos + 1]
            pos, size = _sub_blocks(data, pos + 2)
            if label != 0xF9:
                budget.add_metadata(size)
        elif kind == 0x2C:  # image descriptor, local colour table, LZW code size, sub-blocks
            if pos + 10 > len(data):
                return
            left, top, w, h, local = struct.unpack_from("<HHHHB", data, pos + 1)
            canvas_w, canvas_h = max(canvas_w, left + w), max(canvas_h, top + h)
            budget.frame(canvas_w, canvas_h)
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
            pos, _ = _sub_blocks(data, pos)
        else:
            raise Rejected(422, f"corrupt GIF block structure (byte 0x{kind:02x} at {pos}; polyglot or damage)")
    # Cut short, or no trailer: the decoder judges what is there.


def _sub_blocks(data: bytes, pos: int) -> tuple[int, int]:
    """Skip a chain of data sub-blocks; returns where it ends and how many data bytes it held."""
    size = 0
    end = len(data)
    while pos < end:
        length = data[pos]
        pos += 1
        if length == 0:
            return pos, size
        pos += length
        size += length
    return end, size


# -- WebP -------------------------------------------------------------------------------------

_WEBP_METADATA = (b"ICCP", b"EXIF", b"XMP ")


def check_webp(data: bytes, budget: Budget, canvas: tuple[int, int]) -> None:
    """The image ends where the RIFF size says. Every ANMF chunk is a frame,
    decoded onto the whole canvas; ICCP, EXIF and XMP chunks are metadata."""
    if len(data) < 12:
        return
    end = 8 + struct.unpack_from("<I", data, 4)[0]
    refuse_trailing("WebP", data, end)
    end = min(end, len(data))
    pos, frames, chunks = 12, 0, 0
    while pos + 8 <= end:
        chunks += 1
        if chunks > budget.limits.max_frames + 16:
            raise Rejected(422, f"WebP has more than {budget.limits.max_frames + 16} chunks")
        kind = data[pos : pos + 4]
        size = struct.unpack_from("<I", data, pos + 4)[0]
        if kind in _WEBP_METADATA:
            budget.add_metadata(size)
        elif kind == b"ANMF":
            frames += 1
            budget.frame(*canvas)
        pos += 8 + size + (size & 1)
    if frames == 0:
        budget.frame(*canvas)


# -- BMP --------------------------------------------------------------------------------------

_BMP_RLE = (1, 2)  # RLE8, RLE4: the compressed size is in the header


def check_bmp(data: bytes, budget: Budget) -> None:
    """The image ends at the end of its pixel data (offset + size, computed from
    width, height and bit depth for uncompressed bitmaps) or of its embedded
    ICC profile (BITMAPV5HEADER), whichever is later. The profile is metadata."""
    if len(data) < 26:
        return
    file_size, pixels_at, header = struct.unpack_from("<I4xII", data, 2)
    if header == 12:  # OS/2 BITMAPCOREHEADER
        width, height, _, bits = struct.unpack_from("<HHHH", data, 18)
        compression, image_size = 0, 0
    elif header >= 40 and len(data) >= 14 + 40:
        width, height, _, bits, compression, image_size = struct.unpack_from("<iiHHII", data, 18)
    else:
        return  # the decoder refuses a header it does not know
    budget.frame(abs(width), abs(height))
    if compression in _BMP_RLE:
        size = image_size or max(file_size - pixels_at, 0)
    else:
        size = (abs(width) * bits + 31) // 32 * 4 * abs(height)
    end = pixels_at + size
    if header >= 124 and len(data) >= 14 + 124:
        colour_space, profile_at, profile_size = (
            struct.unpack_from("<I", data, 14 + 56)[0],
            *struct.unpack_from("<II", data, 14 + 112),
        )
        if colour_space == 0x4D424544 and profile_size:  # 'MBED': an embedded profile
            budget.add_metadata(profile_size)
            end = max(end, 14 + profile_at + profile_size)
    if size > 0:
        refuse_trailing("BMP", data, end)


# -- TIFF -------------------------------------------------------------------------------------

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
_INTEGER_TYPES = {3: "u2", 4: "u4", 13: "u4", 16: "u8", 18: "u8"}
_WIDTH, _LENGTH = 256, 257
# (offsets, byte counts): strips, tiles, old-style JPEG streams
_EXTENTS = ((273, 279), (324, 325), (513, 514))
_SUB_IFDS = 330
_METADATA_IFDS = (34665, 34853, 40965)  # EXIF, GPS, Interoperability: everything in them is metadata
# Tags that describe the pixels rather than the picture: never metadata.
_STRUCTURAL = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 274, 277, 278, 279, 280, 281, 282, 283, 284, 286, 287}
    | {290, 291, 292, 293, 296, 297, 301, 317, 318, 319, 320, 321, 322, 323, 324, 325, 330, 332, 338, 339, 340}
    | {341, 343, 347, 513, 514, 515, 529, 530, 531, 532}
    | set(_METADATA_IFDS)
)
MAX_TIFF_ENTRIES = 100_000  # directory entries walked in all, far above any real file


def check_tiff(data: bytes, budget: Budget) -> None:
    """Every directory of the main chain is a page, decoded at its own size.

    The image ends at the furthest byte any directory refers to: the header,
    each directory (main chain, SubIFDs, EXIF/GPS/Interoperability and their
    chains), every value stored outside its entry, and every strip, tile or
    old-style JPEG stream (offset + byte count). Bytes after that end are
    refused (padding excepted); bytes inside it that nothing refers to are not
    judged. Values of tags that do not describe the pixels (ICC profile, XMP,
    IPTC, Photoshop data, descriptions…) and whole EXIF/GPS directories are metadata.
    """
    tiff = _Tiff(data, budget)
    tiff.walk()
    refuse_trailing("TIFF", data, tiff.end)


class _Tiff:
    def __init__(self, data: bytes, budget: Budget):
        self.data = data
        self.budget = budget
        order = data[:2]
        if order not in (b"II", b"MM"):
            raise Rejected(422, "corrupt TIFF header")
        self.order = "<" if order == b"II" else ">"
        version = struct.unpack_from(self.order + "H", data, 2)[0]
        self.big = version == 43
        if self.big:  # BigTIFF: 8-byte offsets and counts, 20-byte entries
            self.entry, self.inline, self.count_format, self.offset_format = 20, 8, "Q", "Q"
            self.first = struct.unpack_from(self.order + "Q", data, 8)[0]
            self.end = 16
        else:
            self.entry, self.inline, self.count_format, self.offset_format = 12, 4, "I", "I"
            self.first = struct.unpack_from(self.order + "I", data, 4)[0]
            self.end = 8
        self.visited: set[int] = set()
        self.entries = 0

    def walk(self) -> None:
        offset = self.first
        while offset:
            if offset in self.visited:
                raise Rejected(422, "corrupt TIFF structure (directories form a loop)")
            offset = self._directory(offset, page=True, metadata=False)

    def _directory(self, offset: int, *, page: bool, metadata: bool) -> int:
        """Read one directory (a page counts into the budget); returns the next directory's offset."""
        data, order = self.data, self.order
        self.visited.add(offset)
        count_size = 8 if self.big else 2
        if offset + count_size > len(data):
            raise Rejected(422, "corrupt TIFF structure (a directory past the end of the file)")
        entries = struct.unpack_from(order + ("Q" if self.big else "H"), data, offset)[0]
        self.entries += entries
        if self.entries > MAX_TIFF_ENTRIES:
            raise Rejected(422, f"TIFF has more than {MAX_TIFF_ENTRIES} directory entries")
        next_at = offset + count_size + entries * self.entry
        end = next_at + self.inline
        if end > len(data):
            raise Rejected(422, "corrupt TIFF structure (a directory past the end of the file)")
        self.end = max(self.end, end)
        if metadata:
            self.budget.add_metadata(end - offset)
        values: dict[int, tuple[int, int, int]] = {}  # tag -> (type, count, where the values are)
        layout = order + "HH" + self.count_format
        for n in range(entries):
            at = offset + count_size + n * self.entry
            tag, kind, count = struct.unpack_from(layout, data, at)
            unit = _TYPE_SIZES.get(kind)
            if unit is None:
                continue  # a type no reader knows: ignored, as libtiff does
            size = unit * count
            where = at + 4 + (8 if self.big else 4)
            if size > self.inline:
                where = struct.unpack_from(order + self.offset_format, data, where)[0]
                if where + size > len(data):
                    raise Rejected(422, f"corrupt TIFF structure (tag {tag}'s value runs past the end of the file)")
                self.end = max(self.end, where + size)
                if metadata or tag not in _STRUCTURAL:
                    self.budget.add_metadata(size)
            values[tag] = (kind, count, where)
        if page:
            self.budget.frame(self._integer(values, _WIDTH), self._integer(values, _LENGTH))
        for offsets_tag, counts_tag in _EXTENTS:
            if offsets_tag in values and counts_tag in values:
                starts, sizes = self._integers(values[offsets_tag]), self._integers(values[counts_tag])
                n = min(len(starts), len(sizes))
                if n:
                    self.end = max(self.end, int((starts[:n] + sizes[:n]).max()))
        for tag in (_SUB_IFDS, *_METADATA_IFDS):
            if tag in values:
                for child in self._integers(values[tag]).tolist():
                    self._chain(int(child), metadata=tag != _SUB_IFDS)
        return int(struct.unpack_from(order + self.offset_format, data, next_at)[0])

    def _chain(self, offset: int, *, metadata: bool) -> None:
        while offset and offset not in self.visited:
            offset = self._directory(offset, page=False, metadata=metadata)

    def _integer(self, values: dict[int, tuple[int, int, int]], tag: int) -> int:
        found = self._integers(values[tag]) if tag in values else np.zeros(0, np.uint64)
        if len(found) != 1:
            raise Rejected(422, f"corrupt TIFF structure (tag {tag} missing or not one number)")
        return int(found[0])

    def _integers(self, value: tuple[int, int, int]) -> np.ndarray:
        kind, count, where = value
        dtype = _INTEGER_TYPES.get(kind)
        if dtype is None:
            return np.zeros(0, np.uint64)
        array = np.frombuffer(self.data, np.dtype(self.order + dtype), count=count, offset=where)
        return array.astype(np.uint64)
