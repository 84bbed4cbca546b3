"""The images API's downloads over the response limit: 307 to a signed URL (S8, S12).

Through ImagesApi with the real ImageService over in-memory repositories and
a small APERTURE_MAX_RESPONSE_BYTES: what a client gets for the original and
for a conversion, below and above the limit, and for HEAD and If-None-Match.
"""

from __future__ import annotations

import io

import flask
import pytest
from PIL import Image

from aperture.api.image_links import ImageLinks
from aperture.api.images import ImagesApi
from aperture.api.stats import StatsAnswers
from aperture.config import Config
from aperture.domain.links import Links
from aperture.domain.records import Principal
from aperture.services.deletion import ImageDeleter
from aperture.services.images import ImageService
from aperture.services.stats import StatsService
from tests.unit import fakes
from tests.unit.services.helpers import BY, DERIVED, MAX_PIXELS, TEAM, png, upload_service

PRINCIPAL = Principal(BY["key_id"], BY["user_id"], TEAM, "member")
APP = flask.Flask(__name__)


@pytest.fixture
def world():
    objects, images = fakes.FakeObjectStore(), fakes.FakeImageStore()
    counters, histograms, signer = fakes.FakeTeamCounters(), fakes.FakeHistogramStore(), fakes.FakeUrlSigner()
    record = images.get(TEAM, upload_service(objects, images).add(TEAM, "p.png", png(seed=5, size=(80, 60)), BY).id)

    def api(limit: int) -> ImagesApi:
        service = ImageService(
            images,
            objects,
            counters,
            ImageDeleter(objects, images, counters, histograms),
            max_pixels=MAX_PIXELS,
            max_response_bytes=limit,
            derived_bucket=DERIVED,
            signer=signer,
        )
        stats = StatsAnswers(StatsService(objects, histograms, max_pixels=MAX_PIXELS), "no-cache")
        return ImagesApi(service, stats, ImageLinks(Links(b"k" * 32), "https://api.example"))

    return api, record, objects, signer


def call(api: ImagesApi, path: str, method: str = "GET", headers: dict | None = None) -> flask.Response:
    with APP.test_request_context(path, method=method, headers=headers or {}):
        return api.router(flask.request, PRINCIPAL)


def test_the_default_limit_is_under_the_gateways_32_mib():
    assert 0 < Config().max_response_bytes <= 32 * 1024 * 1024 - 1024 * 1024


def test_an_original_within_the_limit_is_answered_directly(world):
    api, record, objects, signer = world

    response = call(api(10_000_000), f"/v1/images/{record.id}/original")

    assert response.status_code == 200
    assert response.get_data() == objects.read(objects.info(record.bucket, record.object))
    assert signer.read_links == []


def test_a_larger_original_is_a_redirect_to_a_signed_url_of_its_copy(world):
    api, record, objects, signer = world

    response = call(api(100), f"/v1/images/{record.id}/original")

    assert response.status_code == 307
    [(bucket, name, _, _)] = signer.read_links
    assert response.headers["Location"].startswith(f"https://storage.test/{bucket}/{name}?")
    assert bucket == DERIVED and name.startswith("responses/")
    assert objects.read(objects.info(DERIVED, name)) == objects.read(objects.info(record.bucket, record.object))
    assert response.headers["ETag"] == f'"{record.id}"'
    assert response.headers["Cache-Control"] == "private, no-store", "the signed URL expires: never cache the 307"
    assert response.get_data() == b""


def test_head_and_revalidation_are_never_redirected(world):
    api, record, objects, signer = world
    images = api(100)

    head = call(images, f"/v1/images/{record.id}/original", method="HEAD")
    fresh = call(images, f"/v1/images/{record.id}/original", headers={"If-None-Match": f'"{record.id}"'})

    assert head.status_code == 200 and int(head.headers["Content-Length"]) > 100
    assert fresh.status_code == 304
    assert signer.read_links == [] and objects.names(DERIVED) == set()


def test_a_conversion_over_the_limit_is_a_redirect_with_the_same_bytes(world):
    api, record, objects, signer = world
    path = f"/v1/images/{record.id}.png?resize=200%25"

    direct = call(api(10_000_000), path)
    redirected = call(api(1000), path)

    assert direct.status_code == 200 and len(direct.get_data()) > 1000
    assert redirected.status_code == 307 and redirected.get_data() == b""
    [(bucket, name, _, disposition)] = signer.read_links
    assert name.startswith(f"renditions/{record.team}/{record.id}/")  # the cached rendition itself, no copy
    assert redirected.headers["Location"].startswith(f"https://storage.test/{bucket}/{name}?")
    copy = objects.read(objects.info(DERIVED, name))
    assert copy == direct.get_data()
    assert Image.open(io.BytesIO(copy)).size == (160, 120)
    assert disposition == f'inline; filename="{record.id}.png"'
    assert redirected.headers["ETag"] == direct.headers["ETag"]
    # the same conversion again reuses that copy
    again = call(api(1000), path)
    assert again.headers["Location"] == redirected.headers["Location"]
    assert len(objects.names(DERIVED)) == 1


def test_a_small_conversion_is_answered_directly_even_with_a_small_limit(world):
    api, record, objects, signer = world

    response = call(api(1000), f"/v1/images/{record.id}.jpg?resize=8x8")

    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    # no copy under responses/ and no link: only the rendition cache's entry
    assert signer.read_links == [] and [n.split("/")[0] for n in objects.names(DERIVED)] == ["renditions"]
