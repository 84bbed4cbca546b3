"""ImageService.deliver / original: bodies over the response limit become a signed URL of a copy (S8, S12).

API Gateway refuses responses over 32 MiB; a download larger than
APERTURE_MAX_RESPONSE_BYTES is written once (create-only, content-addressed,
per day) to the derived bucket and handed out as a V4 signed GET URL.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from aperture.services.deletion import ImageDeleter
from aperture.services.images import RESPONSE_LINK_SECONDS, Body, ImageService
from tests.unit.services.helpers import BY, DERIVED, MAX_PIXELS, TEAM, png, upload_service

NOW = dt.datetime(2024, 5, 1, 23, 30, tzinfo=dt.timezone.utc)
LIMIT = 1000


@pytest.fixture
def clock():
    moments = {"now": NOW}
    return moments


@pytest.fixture
def service(images, objects, counters, histograms, signer, clock) -> ImageService:
    return ImageService(
        images,
        objects,
        counters,
        ImageDeleter(objects, images, counters, histograms),
        max_pixels=MAX_PIXELS,
        max_response_bytes=LIMIT,
        derived_bucket=DERIVED,
        signer=signer,
        clock=lambda: clock["now"],
    )


def name_for(key: str, extension: str, day: str = "2024-05-01") -> str:
    digest = hashlib.sha256(key.encode() + b"\0" + extension.encode()).hexdigest()
    return f"responses/{day}/{digest}.{extension}"


def test_a_body_within_the_limit_is_answered_as_it_is(service, objects, signer):
    body = service.deliver("key", b"x" * LIMIT, "image/png", "png", "a.png")

    assert body == Body(b"x" * LIMIT)
    assert objects.names(DERIVED) == set() and signer.read_links == []


def test_a_larger_body_is_copied_to_derived_and_answered_with_a_signed_url(service, objects, signer):
    data = b"y" * (LIMIT + 1)

    body = service.deliver("key", data, "image/png", "png", "a.png")

    name = name_for("key", "png")
    assert body.data == b"" and body.url == f"https://storage.test/{DERIVED}/{name}?method=GET&expires=" + str(
        int((NOW + dt.timedelta(seconds=RESPONSE_LINK_SECONDS)).timestamp())
    )
    assert objects.names(DERIVED) == {name}
    info = objects.info(DERIVED, name)
    assert objects.read(info) == data and info.content_type == "image/png"
    assert signer.read_links == [
        (DERIVED, name, NOW + dt.timedelta(seconds=RESPONSE_LINK_SECONDS), 'inline; filename="a.png"')
    ]


def test_the_copy_is_written_once_a_day_and_reused(service, objects, signer, clock):
    data = b"z" * (LIMIT + 1)
    first = service.deliver("key", data, "image/png", "png", "a.png")
    generation = objects.info(DERIVED, name_for("key", "png")).generation

    again = service.deliver("key", data, "image/png", "png", "a.png")

    assert again.url == first.url
    assert objects.info(DERIVED, name_for("key", "png")).generation == generation, "create-only: not rewritten"
    clock["now"] = NOW + dt.timedelta(hours=1)  # the next day (UTC): a new copy, so none is signed past its life
    service.deliver("key", data, "image/png", "png", "a.png")
    assert objects.names(DERIVED) == {name_for("key", "png"), name_for("key", "png", "2024-05-02")}
    # other keys and formats get names of their own
    service.deliver("key", data, "image/jpeg", "jpg", "a.jpg")
    service.deliver("other", data, "image/png", "png", "a.png")
    assert len(objects.names(DERIVED)) == 4


def test_the_original_of_a_large_image_is_handed_off(service, objects, images, signer):
    uploads = upload_service(objects, images)
    data = png(seed=3, size=(64, 64))
    assert len(data) > LIMIT
    record = images.get(TEAM, uploads.add(TEAM, "big.png", data, BY).id)

    body = service.original(record, service.stored(record))

    [(bucket, name, _, disposition)] = signer.read_links
    assert body.url and name in body.url and bucket == DERIVED
    assert name == name_for(record.id, "png")
    assert objects.read(objects.info(DERIVED, name)) == data
    assert disposition == f'inline; filename="{record.id}.png"'


@pytest.mark.parametrize("limit, with_signer", [(0, True), (LIMIT, False)])
def test_without_a_limit_or_a_signer_every_body_is_answered(
    images, objects, counters, histograms, signer, limit, with_signer
):
    service = ImageService(
        images,
        objects,
        counters,
        ImageDeleter(objects, images, counters, histograms),
        max_pixels=MAX_PIXELS,
        max_response_bytes=limit,
        derived_bucket=DERIVED,
        signer=signer if with_signer else None,
    )

    assert service.deliver("key", b"q" * (LIMIT * 10), "image/png", "png", "a.png").data == b"q" * (LIMIT * 10)
    assert objects.names(DERIVED) == set()
