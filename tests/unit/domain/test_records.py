"""The records and their rules: roles are ordered (member < admin < owner), team
isolation answers 404, and what a client sees of an image record."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from aperture.domain.errors import ApiError
from aperture.domain.records import (
    Analysis,
    ImageRecord,
    ImageStatus,
    LabelScore,
    Principal,
    UploadLink,
    object_name,
    role_at_least,
)

CREATED = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
IMAGE_ID = "ab" * 32


# -- roles -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "role,needed,allowed",
    [
        ("member", "member", True),
        ("admin", "member", True),
        ("owner", "member", True),
        ("member", "admin", False),
        ("admin", "admin", True),
        ("owner", "admin", True),
        ("admin", "owner", False),
        ("owner", "owner", True),
    ],
)
def test_roles_are_ordered(role, needed, allowed):
    principal = Principal("key_x", "usr_x", "team-a", role)
    try:
        principal.require_role(needed)
        passed = True
    except ApiError as exc:
        assert exc.status == 403
        passed = False

    assert passed is allowed


def test_an_unknown_role_reaches_nothing():
    assert not role_at_least("superuser", "member")


def test_any_of_several_roles_is_enough():
    assert role_at_least("admin", "admin", "owner")


def test_another_teams_resource_is_404_like_a_missing_one():
    principal = Principal("key_x", "usr_x", "team-a", "admin")

    with pytest.raises(ApiError) as error:
        principal.require_team("team-b", "image")

    assert (error.value.status, error.value.message) == (404, "image not found")


def test_an_owner_reaches_other_teams_only_where_owners_are_allowed():
    owner = Principal("key_x", "usr_x", "platform", "owner")

    owner.require_team("team-b", "team", owner_allowed=True)
    with pytest.raises(ApiError):
        owner.require_team("team-b", "team")


def test_a_team_image_lives_under_its_team_and_content_id():
    assert object_name("team-a", IMAGE_ID, "png") == f"teams/team-a/{IMAGE_ID}.png"


# -- image records -----------------------------------------------------------------------------


def pending_record(**changes) -> ImageRecord:
    record = ImageRecord(
        team="team-a",
        id=IMAGE_ID,
        filename="photo.png",
        format="PNG",
        mime_type="image/png",
        extension="png",
        size=1234,
        width=40,
        height=30,
        frames=1,
        mode="RGB",
        bucket="aperture-uploads",
        object=object_name("team-a", IMAGE_ID, "png"),
        created_at=CREATED,
        uploaded_by={"key_id": "key_x", "user_id": "usr_x"},
    )
    return dataclasses.replace(record, **changes)


def analysis(**changes) -> Analysis:
    values = dict(
        format="PNG",
        mode="RGB",
        width=40,
        height=30,
        frames=1,
        size=1234,
        exif={"camera": "Canon EOS R5", "captured_at": CREATED - dt.timedelta(days=1)},
        labels=[LabelScore("cat", 0.9123456789), LabelScore("sofa", 0.4)],
        embedding=[0.6, 0.8, 0.0],
        provider="local",
        embedding_model="local:test",
        generation="17",
        histograms={"bucket": "aperture-uploads", "name": "teams/team-a/x.png", "generation": "17"},
        processed_at=CREATED + dt.timedelta(seconds=5),
        processing_ms={"decode": 1.5},
    )
    values.update(changes)
    return Analysis(**values)


def test_a_view_never_shows_the_embedding_the_bucket_or_the_histograms():
    view = pending_record().with_analysis(analysis()).view()

    assert not {"embedding", "bucket", "histograms"} & set(view)


def test_a_view_shows_how_many_dimensions_the_embedding_has():
    view = pending_record().with_analysis(analysis()).view()

    assert view["embedding_dimensions"] == 3


def test_a_processed_view_shows_labels_status_and_facts():
    view = pending_record().with_analysis(analysis()).view()

    assert view["status"] == "processed"
    assert view["labels"] == ["cat", "sofa"]
    assert view["label_scores"] == [{"name": "cat", "score": 0.912346}, {"name": "sofa", "score": 0.4}]
    assert (view["camera"], view["captured_at"]) == ("Canon EOS R5", CREATED - dt.timedelta(days=1))
    assert (view["id"], view["object"], view["filename"]) == (IMAGE_ID, f"teams/team-a/{IMAGE_ID}.png", "photo.png")


def test_a_pending_view_has_no_labels_and_no_unset_fields():
    view = pending_record().view()

    assert view["status"] == "pending"
    assert not {"labels", "label_scores", "embedding_dimensions", "error", "exif", "processed_at"} & set(view)


def test_a_failed_view_says_why():
    view = pending_record(status=ImageStatus.FAILED, error="cannot decode image data").view()

    assert (view["status"], view["error"]) == ("failed", "cannot decode image data")


def test_only_processed_and_failed_records_are_finished():
    assert not pending_record().finished
    assert pending_record(status=ImageStatus.PROCESSED).finished
    assert pending_record(status=ImageStatus.FAILED).finished


def test_an_analysis_keeps_the_uploads_own_fields():
    record = pending_record(status=ImageStatus.FAILED, error="earlier failure")

    done = record.with_analysis(analysis(width=41))

    assert (done.team, done.id, done.filename, done.created_at, done.uploaded_by) == (
        record.team,
        record.id,
        record.filename,
        record.created_at,
        record.uploaded_by,
    )
    assert (done.status, done.error, done.width, done.generation) == (ImageStatus.PROCESSED, None, 41, "17")


# -- upload links ------------------------------------------------------------------------------


def test_an_upload_link_expires_at_its_expiry_time():
    link = UploadLink("0123456789abcdef", "team-a", 3, CREATED, CREATED - dt.timedelta(hours=1), {})

    assert not link.expired(CREATED - dt.timedelta(microseconds=1))
    assert link.expired(CREATED)
