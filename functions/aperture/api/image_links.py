"""The image URLs the API hands out (spec S11): signed, so a browser opens them
without a key. One home for their shapes, used by the images, search and jobs
functions, and for the predicates saying which paths accept a signature."""

from __future__ import annotations

import re
from dataclasses import dataclass

import flask

from aperture.domain.links import Links
from aperture.domain.records import ImageRecord

# A gallery thumbnail: fits a 256-px box, JPEG (small, and every browser shows it).
THUMBNAIL_OPS = "resize:256x256"
THUMBNAIL_FORMAT = "jpg"

_CONVERTED = re.compile(r"/v1/images/[0-9a-f]{64}\.[A-Za-z]{3,4}")
_ORIGINAL = re.compile(r"/v1/images/[0-9a-f]{64}/original")
_JOB_OUTPUT = re.compile(r"/v1/jobs/[^/]+/outputs/.+")


def image_download(path: str) -> bool:
    """Paths of the images function a signed link may open: a conversion or the original."""
    return bool(_CONVERTED.fullmatch(path) or _ORIGINAL.fullmatch(path))


def job_output(path: str) -> bool:
    """Paths of the jobs function a signed link may open: one output of a job."""
    return bool(_JOB_OUTPUT.fullmatch(path))


@dataclass(frozen=True)
class ImageLinks:
    links: Links
    public_url: str = ""

    def base(self, request: flask.Request) -> str:
        return self.public_url or request.host_url.rstrip("/")

    def url(self, base: str, path: str, team: str, params: list[tuple[str, str]], expires: int | None = None) -> str:
        return base + self.links.sign(path, params, team, expires)

    def thumbnail(self, base: str, record: ImageRecord) -> str:
        return self.url(base, f"/v1/images/{record.id}.{THUMBNAIL_FORMAT}", record.team, [("ops", THUMBNAIL_OPS)])

    def original(self, base: str, record: ImageRecord) -> str:
        return self.url(base, f"/v1/images/{record.id}/original", record.team, [])

    def record_urls(self, base: str, record: ImageRecord) -> dict[str, str]:
        return {"thumbnail_url": self.thumbnail(base, record), "original_url": self.original(base, record)}
