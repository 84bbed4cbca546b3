"""Sample photographs for the source bucket: IMG_1.jpg … IMG_10.jpg.

Real photographs from the images scikit-image ships in its wheel (read as
files; nothing is downloaded), re-encoded as JPEG where they are not already.
"""

from __future__ import annotations

import io
from importlib import resources

from PIL import Image

# Photographs only (no synthetic test patterns), in a fixed order.
PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "camera.png",
    "moon.png",
    "ihc.png",
)


def sample_photos() -> dict[str, bytes]:
    """{"IMG_1.jpg": jpeg bytes, …} in a stable order."""
    data_dir = resources.files("skimage") / "data"
    samples = {}
    for index, filename in enumerate(PHOTOS, start=1):
        raw = (data_dir / filename).read_bytes()
        if not filename.endswith(".jpg"):
            buffer = io.BytesIO()
            Image.open(io.BytesIO(raw)).convert(
                "RGB" if filename != "camera.png" and filename != "moon.png" else "L"
            ).save(buffer, "JPEG", quality=92)
            raw = buffer.getvalue()
        samples[f"IMG_{index}.jpg"] = raw
    return samples


def seed_source_bucket(client, bucket: str) -> list[str]:
    names = []
    for name, data in sample_photos().items():
        client.bucket(bucket).blob(name).upload_from_string(data, content_type="image/jpeg")
        names.append(name)
    return names
