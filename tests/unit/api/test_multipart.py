"""read_file_parts: file parts out of a multipart body, whatever pieces it arrives in."""

from __future__ import annotations

import os

import pytest

from aperture.api.errors import ApiError
from aperture.api.multipart import read_file_parts

BOUNDARY = "----aperture-test-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


class _Trickle:
    """A body stream that hands out at most `step` bytes per read, as a slow socket would."""

    def __init__(self, body: bytes, step: int):
        self._body, self._pos, self._step = body, 0, step

    def read(self, size: int = -1) -> bytes:
        size = self._step if size is None or size < 0 else min(size, self._step)
        piece = self._body[self._pos : self._pos + size]
        self._pos += len(piece)
        return piece


def _body(parts: list[tuple[str, str | None, bytes]]) -> bytes:
    out = b""
    for field, filename, data in parts:
        disposition = f'form-data; name="{field}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


@pytest.mark.parametrize("step", [1, 7, 64, 4096, 1 << 20])
def test_parts_come_out_whole_whatever_the_read_sizes(step):
    # Arrange: data full of boundary look-alikes, so partial matches span reads
    tricky = (b"\r\n--" + BOUNDARY.encode()[:-1] + b"x") * 50
    files = [
        ("files", "a.jpg", os.urandom(30_000) + tricky),
        ("files", "b.png", tricky + os.urandom(5_000)),
        ("image_files", "c.gif", b""),
        ("files", "d.bin", b"\r\n--\r\n"),
    ]
    body = _body(files[:2] + [("note", None, b"not a file")] + files[2:])
    seen = []

    # Act
    parts = read_file_parts(
        _Trickle(body, step),
        CONTENT_TYPE,
        ("files", "image_files"),
        max_parts=10,
        on_file=lambda part: seen.append(part.filename),
    )

    # Assert
    assert [(p.field, p.filename, p.data) for p in parts] == files
    assert all(type(p.data) is bytes for p in parts)
    assert seen == ["a.jpg", "b.png", "c.gif", "d.bin"]


def test_a_body_that_is_not_multipart_is_a_400():
    with pytest.raises(ApiError) as refused:
        read_file_parts(_Trickle(b"garbage without any boundary", 8), CONTENT_TYPE, ("files",), max_parts=10)

    assert refused.value.status == 400


def test_more_parts_than_allowed_is_a_413():
    body = _body([("files", f"{i}.jpg", b"x") for i in range(4)])

    with pytest.raises(ApiError) as refused:
        read_file_parts(_Trickle(body, 1 << 16), CONTENT_TYPE, ("files",), max_parts=3)

    assert refused.value.status == 413
