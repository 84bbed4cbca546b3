"""Reading file parts out of a multipart/form-data body, fast.

python-multipart's parser finds boundaries with bytes.find, about five times
faster than werkzeug's form parser on large uploads, and here every part is
kept in memory (the body is already capped by the caller), never spooled to disk.
A part's bytes are kept as views of the chunks they arrived in and joined once
when the part ends: one copy, where slicing and appending made three.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from aperture.api.errors import ApiError

CHUNK = 256 * 1024


@dataclass
class FilePart:
    field: str
    filename: str | None
    data: bytes


def read_file_parts(
    stream: BinaryIO,
    content_type: str,
    fields: tuple[str, ...],
    max_parts: int,
    on_file: Callable[[FilePart], None] | None = None,
) -> list[FilePart]:
    """The file parts whose form field is in `fields`, in order; 400 if the body is not valid multipart.

    `on_file` sees each such part as soon as it is complete, while later parts
    are still arriving (uploads start validating early).
    """
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "multipart body without a boundary")
    parts: list[FilePart] = []
    state: dict = {}

    def on_part_begin() -> None:
        state.update(headers={}, field=b"", value=b"", data=[])

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"].append(memoryview(data)[start:end])

    def on_part_end() -> None:
        if len(parts) >= max_parts:
            raise ApiError(413, f"more than {max_parts} parts in one request")
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        if name in fields:
            parts.append(
                FilePart(
                    name, None if filename is None else filename.decode("utf-8", "replace"), b"".join(state["data"])
                )
            )
            if on_file is not None:
                on_file(parts[-1])
        state["data"] = []  # release the chunks this part's views held

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        while chunk := stream.read(CHUNK):
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise ApiError(400, f"malformed multipart body: {exc}") from None
    return parts
