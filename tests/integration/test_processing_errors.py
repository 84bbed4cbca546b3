"""Processing failures on the local stack (#19 item 2): a permanent one fails the record at
once, with the reason, and the event is not retried."""

from __future__ import annotations

import hashlib
import time

from aperture.domain.imaging.validation import Limits
from aperture.services.uploads import UploadService
from aperture.storage.images import ImageStore
from aperture.storage.objects import ObjectStore
from tests.support import hostile
from tests.support.api import settled


def test_an_undecodable_upload_that_slipped_past_validation_fails_at_once(
    stack, storage_client, firestore_client, make_caller
):
    make_caller("team-a", "member")  # the team must exist for its images to be processed
    images = ImageStore(firestore_client)
    good = hostile.jpeg(size=(120, 80), seed=31)
    image_id = hashlib.sha256(good).hexdigest()
    # The record an upload made; the object under the team path, written directly, does not decode.
    UploadService(
        ObjectStore(storage_client), images, stack.uploads_bucket, Limits(10**8, 10**8, 100, 10**9, 10**6)
    ).add("team-a", "x.jpg", good, {"test": True})
    name = f"teams/team-a/{image_id}.jpg"
    storage_client.bucket(stack.uploads_bucket).blob(name).upload_from_string(
        b"\xff\xd8\xff\xe0" + b"\x00" * 300, content_type="image/jpeg"
    )

    record = settled(images, "team-a", image_id)
    time.sleep(1.0)  # room for a redelivery, were there one

    assert record.status == "failed"
    assert record.error and "gave up" not in record.error
    stored = images.get("team-a", image_id)
    assert (stored.status, stored.error) == ("failed", record.error)
    assert stored.attempts == 1, "a permanent failure is not retried"
    log = (stack.log_dir / "bridge.log").read_text()
    assert "giving up" not in log
    assert "retry later" not in "\n".join(line for line in log.splitlines() if image_id in line)
