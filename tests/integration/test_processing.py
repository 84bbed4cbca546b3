"""Processing (S7): the finalize trigger turns uploads into processed records,
through the real event path and directly through the Processor."""

from __future__ import annotations

import hashlib
import io
import time

import piexif
import pytest

from aperture.services.uploads import API_WRITE
from aperture.storage.counters import TeamCounters
from aperture.storage.histograms import HistogramStore
from aperture.storage.objects import ObjectStore
from tests.support import hostile
from tests.support.api import settled, upload
from tests.support.images import encode, random_image


def camera_jpeg(
    make="Canon",
    model="Canon EOS 5D Mark IV",
    when="2024:05:17 09:30:12",
    orientation=6,
    seed=0,
    size=(640, 480),
    gps=None,
) -> bytes:
    exif = {
        "0th": {
            piexif.ImageIFD.Make: make.encode(),
            piexif.ImageIFD.Model: model.encode(),
            piexif.ImageIFD.Orientation: orientation,
        },
        "Exif": {
            piexif.ExifIFD.DateTimeOriginal: when.encode(),
            piexif.ExifIFD.LensModel: b"EF24-70mm f/2.8L",
            piexif.ExifIFD.ExposureTime: (1, 250),
            piexif.ExifIFD.FNumber: (28, 10),
            piexif.ExifIFD.ISOSpeedRatings: 400,
        },
    }
    if gps:
        exif["GPS"] = gps
    buffer = io.BytesIO()
    random_image("RGB", size=size, seed=seed).save(buffer, "JPEG", quality=90, exif=piexif.dump(exif))
    return buffer.getvalue()


@pytest.fixture
def images(firestore_client):
    from aperture.storage.images import ImageStore

    return ImageStore(firestore_client)


def test_upload_becomes_processed_with_labels_and_embedding(gateway, make_caller, images, container):
    caller = make_caller("team-a", "member")
    [image_id] = upload(gateway, caller, ("cam.jpg", camera_jpeg()))

    record = settled(images, "team-a", image_id)

    assert record.status == "processed", record.error
    assert (record.format, record.width, record.height, record.frames) == ("JPEG", 640, 480, 1)
    assert record.camera == "Canon EOS 5D Mark IV"
    assert record.exif["make"] == "Canon" and record.exif["orientation"] == 6
    assert record.exif["captured"] == "2024:05:17 09:30:12"
    assert record.exif["exposure_time"] == pytest.approx(1 / 250) and record.exif["f_number"] == 2.8
    assert record.labels and all(isinstance(label, str) for label in record.labels)
    assert len(record.embedding) == container.vision.dimensions
    assert set(record.processing_ms) >= {"decode", "histograms", "exif", "labels", "firestore"}


def test_gps_is_stored_only_when_the_team_enables_it(gateway, make_caller, identity, images, firestore_client):
    gps = {
        piexif.GPSIFD.GPSLatitudeRef: b"S",
        piexif.GPSIFD.GPSLatitude: ((33, 1), (52, 1), (0, 1)),
        piexif.GPSIFD.GPSLongitudeRef: b"E",
        piexif.GPSIFD.GPSLongitude: ((151, 1), (12, 1), (36, 1)),
    }
    private = make_caller("team-a", "member")
    identity.create_team("team-gps", "GPS", gps_enabled=True)
    public = make_caller("team-gps", "member")
    data = camera_jpeg(gps=gps)

    [a] = upload(gateway, private, ("gps.jpg", data))
    [b] = upload(gateway, public, ("gps.jpg", data))

    assert "gps" not in settled(images, "team-a", a).exif
    stored = settled(images, "team-gps", b).exif["gps"]
    assert stored["latitude"] == pytest.approx(-33.8667, abs=1e-3) and stored["longitude"] == pytest.approx(
        151.21, abs=1e-2
    )


def test_same_event_three_times_counts_once(stack, gateway, make_caller, images, firestore_client):
    import requests
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    caller = make_caller("team-a", "member")
    [image_id] = upload(gateway, caller, ("once.jpg", camera_jpeg(seed=3)))
    record = settled(images, "team-a", image_id)
    blob = ObjectStore(__import__("google.cloud.storage", fromlist=["Client"]).Client(project=stack.project)).info(
        stack.uploads_bucket, record.object
    )
    event = CloudEvent(
        {
            "id": "replay-1",
            "source": f"//storage.googleapis.com/projects/_/buckets/{stack.uploads_bucket}",
            "type": "google.cloud.storage.object.v1.finalized",
            "subject": f"objects/{record.object}",
        },
        {
            "bucket": stack.uploads_bucket,
            "name": record.object,
            "generation": str(blob.generation),
            "size": str(blob.size),
        },
    )
    headers, body = to_binary(event)

    statuses = [
        requests.post(stack.function_url("process"), headers=headers, data=body, timeout=60).status_code
        for _ in range(3)
    ]

    assert statuses == [200, 200, 200]
    totals = TeamCounters(firestore_client).totals("team-a")
    assert sum(totals.days.values()) == 1 and totals.formats == {"JPEG": 1}
    assert totals.cameras == {"Canon EOS 5D Mark IV": 1}


def test_corrupt_object_is_failed_not_retried_forever(stack, storage_client, images, make_caller, identity):
    make_caller("team-a", "member")  # the team must exist for its images to be processed
    good = hostile.jpeg(size=(300, 200), seed=9)
    image_id = hashlib.sha256(good).hexdigest()
    # A record made by an upload whose object was then replaced with garbage by someone with bucket access.
    from aperture.domain.imaging.validation import Limits
    from aperture.services.uploads import UploadService

    service = UploadService(
        ObjectStore(storage_client), images, stack.uploads_bucket, Limits(10**8, 10**8, 100, 10**9, 10**6)
    )
    service.add("team-a", "x.jpg", good, {"test": True})
    blob = storage_client.bucket(stack.uploads_bucket).blob(f"teams/team-a/{image_id}.jpg")
    blob.upload_from_string(good[:200], content_type="image/jpeg")

    record = settled(images, "team-a", image_id)
    time.sleep(1.0)

    assert record.status == "failed" and record.error
    assert images.get("team-a", image_id).status == "failed"
    log = (stack.log_dir / "bridge.log").read_text()
    assert "giving up" not in log


def test_plain_client_upload_under_a_team_prefix_is_processed(stack, storage_client, make_caller, images):
    make_caller("team-a", "member")
    data = camera_jpeg(seed=12)
    image_id = hashlib.sha256(data).hexdigest()

    storage_client.bucket(stack.uploads_bucket).blob("teams/team-a/holiday.jpg").upload_from_string(data)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and images.get("team-a", image_id) is None:
        time.sleep(0.1)
    record = settled(images, "team-a", image_id)
    assert record.status == "processed" and record.object == f"teams/team-a/{image_id}.jpg"
    assert record.uploaded_by["plain_client"] is True
    names = [b.name for b in storage_client.list_blobs(stack.uploads_bucket, prefix="teams/team-a/")]
    while time.monotonic() < deadline and "teams/team-a/holiday.jpg" in names:
        time.sleep(0.1)
        names = [b.name for b in storage_client.list_blobs(stack.uploads_bucket, prefix="teams/team-a/")]
    assert names == [f"teams/team-a/{image_id}.jpg"]


def test_plain_client_garbage_or_unknown_team_is_removed(stack, storage_client, make_caller, images, firestore_client):
    make_caller("team-a", "member")
    bucket = storage_client.bucket(stack.uploads_bucket)
    bucket.blob("teams/team-a/notes.jpg").upload_from_string(b"not an image")
    bucket.blob("teams/ghost-team/x.jpg").upload_from_string(hostile.jpeg(seed=13))

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and list(storage_client.list_blobs(stack.uploads_bucket, prefix="teams/")):
        time.sleep(0.1)
    assert list(storage_client.list_blobs(stack.uploads_bucket, prefix="teams/")) == []
    assert list(firestore_client.collection("images").stream()) == []


def test_source_objects_get_their_histograms_ahead_of_the_first_request(
    stack, storage_client, firestore_client, source_bucket, unique, container
):
    from aperture.services.processing import Processor

    name = f"{unique}/prewarm.png"
    source_bucket.blob(name).upload_from_string(encode(random_image("RGB", seed=14)))
    info = ObjectStore(storage_client).info(stack.source_bucket, name)
    processor = container.processor
    prewarming = Processor(**{**processor.__dict__, "prewarm_source": True})

    first = prewarming.handle(info)
    second = prewarming.handle(info)

    assert (first, second) == ("histograms stored", "histograms already stored")
    assert HistogramStore(firestore_client).get(stack.source_bucket, name, info.generation) is not None


def test_object_written_before_its_api_record_waits_for_the_record(stack, storage_client, gateway, make_caller, images):
    # Arrange: the upload API writes an object as soon as the file is valid, and
    # commits its record later; here the record comes a good second later.
    member = make_caller("team-a", "member")
    data = camera_jpeg(seed=13)
    image_id = hashlib.sha256(data).hexdigest()
    blob = storage_client.bucket(stack.uploads_bucket).blob(f"teams/team-a/{image_id}.jpg")
    blob.metadata = dict(API_WRITE)
    blob.upload_from_string(data, content_type="image/jpeg")
    time.sleep(1.5)  # the finalize event has reached `process` meanwhile
    assert images.get("team-a", image_id) is None, "process filed the object itself"

    # Act: the record arrives (the same bytes through the API: the object is there already)
    response = gateway.post("/v1/images", headers=member.headers, files=[("files", ("late.jpg", data, "image/jpeg"))])

    # Assert: the API made the image, and it is processed as the API's
    assert response.status_code == 201, response.text
    assert response.json()["files"][0]["status"] == "created"
    record = settled(images, "team-a", image_id)
    assert record.status == "processed", record.error
    assert record.uploaded_by["key_id"] == member.key_id
