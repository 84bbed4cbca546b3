"""Names, limits and small builders shared by the service tests."""

from __future__ import annotations

from PIL import Image

from aperture.domain.imaging.validation import Limits
from aperture.services.processing import Processor
from aperture.services.uploads import UploadService
from aperture.vision.base import Label
from tests.support.images import encode, random_image

UPLOADS = "aperture-uploads"
SOURCE = "aperture-source"
DERIVED = "aperture-derived"
TEAM = "team-a"
OTHER_TEAM = "team-b"
BY = {"key_id": "key_0123456789abcdef", "user_id": "usr_0123456789abcdef"}
LIMITS = Limits(
    max_file_bytes=2_000_000,
    max_pixels=4_000_000,
    max_frames=100,
    max_animation_pixels=40_000_000,
    max_metadata_bytes=100_000,
)
MAX_PIXELS = 50_000_000
EMBEDDING = [0.6, 0.8, 0.0, 0.0]


def png(seed: int = 0, size: tuple[int, int] = (37, 23)) -> bytes:
    """A small RGB PNG; different seeds give different bytes."""
    return encode(random_image("RGB", size=size, seed=seed), "PNG")


def upload_service(objects, images, limits: Limits = LIMITS, clock=None) -> UploadService:
    if clock is None:
        return UploadService(objects, images, UPLOADS, limits)
    return UploadService(objects, images, UPLOADS, limits, clock=clock)


def build_processor(objects, images, histograms, counters, identity, links, uploads=None, **changes) -> Processor:
    """A Processor over the fakes with FakeVision and the test buckets (`changes`: other fields)."""
    defaults = {"provider": FakeVision, "uploads_bucket": UPLOADS, "source_bucket": SOURCE, "max_pixels": MAX_PIXELS}
    return Processor(
        objects=objects,
        images=images,
        histograms=histograms,
        counters=counters,
        identity=identity,
        uploads=uploads or upload_service(objects, images),
        links=links,
        **{**defaults, **changes},
    )


class FakeVision:
    """A vision provider (`aperture.vision.base.VisionProvider`) with fixed answers; it notes what it was shown."""

    name = "fake-vision"
    dimensions = 4
    model = "fake-vision:r1"

    def __init__(self) -> None:
        self.analyzed: list[tuple[str, tuple[int, int]]] = []

    def analyze(self, image: Image.Image) -> tuple[list[Label], list[float]]:
        self.analyzed.append((image.mode, image.size))
        return [Label("cat", 0.91234567), Label("sofa", 0.4)], list(EMBEDDING)
