"""Image records made straight in a test, as an upload would have made them (a 37 x 23 PNG)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from aperture.domain.records import ImageRecord, object_name


def pending_record(team: str, data: bytes, bucket: str = "aperture-uploads", **changes: Any) -> ImageRecord:
    """The `pending` record of `data` (a PNG) in `team`, made now unless `created_at` says otherwise."""
    image_id = hashlib.sha256(data).hexdigest()
    fields: dict[str, Any] = {
        "team": team,
        "id": image_id,
        "filename": "lost.png",
        "format": "PNG",
        "mime_type": "image/png",
        "extension": "png",
        "size": len(data),
        "width": 37,
        "height": 23,
        "frames": 1,
        "mode": "RGB",
        "bucket": bucket,
        "object": object_name(team, image_id, "png"),
        "created_at": dt.datetime.now(dt.timezone.utc),
        "uploaded_by": {"key_id": "key_test", "user_id": "usr_test"},
    }
    return ImageRecord(**{**fields, **changes})
