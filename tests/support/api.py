"""Small helpers for tests that drive the API through the gateway."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aperture.domain.records import ImageRecord


def upload(gateway, caller, *items: tuple[str, bytes]) -> list[str | None]:
    """POST files to /v1/images as `caller`; their ids (None for rejected ones)."""
    response = gateway.post(
        "/v1/images",
        headers=caller.headers,
        files=[("files", (name, data, "application/octet-stream")) for name, data in items],
    )
    assert response.status_code in (200, 201), response.text
    return [f["id"] for f in response.json()["files"]]


def settled(images, team: str, image_id: str, timeout: float = 60.0) -> ImageRecord:
    """The record once `process` is done with it (processed or failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = images.get(team, image_id)
        if record and record.status != "pending":
            return record
        time.sleep(0.1)
    raise AssertionError(f"{image_id} still pending: {images.get(team, image_id)}")
