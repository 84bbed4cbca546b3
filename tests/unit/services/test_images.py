"""ImageService: a team's images, found, listed, read, rendered and deleted, team by team (spec S8)."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from PIL import Image

from aperture.domain import transforms
from aperture.domain.errors import ApiError
from aperture.domain.records import Contribution, ImageRecord, Totals
from aperture.runtime.timing import Timings
from aperture.services.deletion import ImageDeleter
from aperture.services.images import STATS_DAYS, ImageService, stats_view
from tests.unit.services.helpers import BY, MAX_PIXELS, OTHER_TEAM, TEAM, UPLOADS, png, upload_service

START = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def service(images, objects, counters, histograms) -> ImageService:
    deleter = ImageDeleter(objects, images, counters, histograms)
    return ImageService(images, objects, counters, deleter, max_pixels=MAX_PIXELS)


@pytest.fixture
def filed(objects, images):
    """Files images one minute apart; returns their records, oldest first."""
    moments = iter(START + dt.timedelta(minutes=n) for n in range(1000))
    uploads = upload_service(objects, images, clock=lambda: next(moments))

    def file(*seeds: int, team: str = TEAM) -> list[ImageRecord]:
        ids = [uploads.add(team, f"img-{seed}.png", png(seed=seed), BY).id for seed in seeds]
        return [images.get(team, image_id) for image_id in ids]

    return file


def refused(call, *args, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as error:
        call(*args, **kwargs)
    return error.value


def list_all(service, team=TEAM, **options) -> list[ImageRecord]:
    arguments = {"filters": {}, "after": None, "before": None, "limit": 50, "start_after": None, **options}
    return service.list(team, **arguments)


# -- find ---------------------------------------------------------------------------------------


def test_find_gives_the_teams_record(service, filed):
    [record] = filed(1)

    assert service.find(TEAM, record.id) == record


@pytest.mark.parametrize("image_id", ["", "abc", "../../etc/passwd", "A" * 64, "g" * 64, "0" * 63])
def test_find_answers_404_for_a_malformed_id(service, images, image_id):
    images.get = lambda team, image_id: pytest.fail("a malformed id must not be looked up")

    error = refused(service.find, TEAM, image_id)

    assert (error.status, error.message) == (404, "image not found")


def test_find_answers_404_for_a_missing_image(service):
    assert refused(service.find, TEAM, "0" * 64).status == 404


def test_find_answers_404_for_another_teams_image_exactly_as_for_a_missing_one(service, filed):
    [theirs] = filed(2, team=OTHER_TEAM)

    error = refused(service.find, TEAM, theirs.id)

    assert (error.status, error.message) == (404, "image not found")


# -- list ---------------------------------------------------------------------------------------


def test_list_gives_the_teams_images_newest_first(service, filed):
    oldest, middle, newest = filed(1, 2, 3)
    filed(4, team=OTHER_TEAM)

    assert [r.id for r in list_all(service)] == [newest.id, middle.id, oldest.id]


def test_list_pages_with_a_cursor(service, filed):
    oldest, middle, newest = filed(1, 2, 3)

    first = list_all(service, limit=2)
    rest = list_all(service, limit=2, start_after=first[-1].id)

    assert [r.id for r in first] == [newest.id, middle.id]
    assert [r.id for r in rest] == [oldest.id]


def test_list_with_a_cursor_at_a_deleted_image_is_a_400(service, filed):
    _, middle, _ = filed(1, 2, 3)
    service.delete(middle)

    error = refused(list_all, service, start_after=middle.id)

    assert error.status == 400
    assert "cursor" in error.message


def test_list_keeps_to_the_time_range(service, filed):
    records = filed(1, 2, 3, 4)

    chosen = list_all(service, after=START + dt.timedelta(minutes=1), before=START + dt.timedelta(minutes=3))

    assert [r.id for r in chosen] == [records[2].id, records[1].id]


def test_list_filters_by_format(service, filed, objects, images):
    [png_record] = filed(1)
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(jpeg, "JPEG")
    upload_service(objects, images).add(TEAM, "red.jpg", jpeg.getvalue(), BY)

    assert [r.id for r in list_all(service, filters={"format": "PNG"})] == [png_record.id]


# -- read, render, delete -----------------------------------------------------------------------


def test_stored_gives_the_objects_current_generation_and_read_its_bytes(service, filed):
    [record] = filed(5)

    info = service.stored(record)

    assert service.read(info) == png(seed=5)


def test_stored_answers_404_when_the_bytes_are_gone(service, filed, objects):
    [record] = filed(6)
    objects.delete(UPLOADS, record.object)

    assert refused(service.stored, record).status == 404


def test_render_applies_the_pipeline_and_the_format(service, filed):
    [record] = filed(7)

    out = service.render(record, transforms.parse_ops("resize:50%"), "jpg", Timings())

    assert (out.mime_type, out.width, out.height) == ("image/jpeg", 19, 12)
    assert Image.open(io.BytesIO(out.data)).format == "JPEG"


def test_render_answers_400_for_an_operation_the_image_cannot_take(service, filed):
    [record] = filed(8)

    error = refused(service.render, record, transforms.parse_ops("crop:10,10,200,200"), "png", Timings())

    assert error.status == 400
    assert "does not fit" in error.message


def test_render_answers_422_when_the_stored_bytes_are_not_an_image(service, filed, objects):
    [record] = filed(9)
    objects.delete(UPLOADS, record.object)
    objects.put(UPLOADS, record.object, b"no longer an image")

    assert refused(service.render, record, transforms.parse_ops(""), "png", Timings()).status == 422


def test_delete_removes_the_record_and_the_object(service, filed, images, objects):
    [record] = filed(10)

    service.delete(record)

    assert images.get(TEAM, record.id) is None
    assert objects.names(UPLOADS) == set()


# -- upload statistics ----------------------------------------------------------------------------


def test_upload_stats_has_thirty_days_ending_today_zero_filled(service, counters):
    counters.add(TEAM, "a" * 64, Contribution("2024-05-20", "PNG", None))
    counters.add(TEAM, "b" * 64, Contribution("2024-05-20", "JPEG", "Canon EOS R5"))
    counters.add(TEAM, "c" * 64, Contribution("2024-05-01", "PNG", None))  # outside the 30 days

    view = service.upload_stats(TEAM, dt.date(2024, 5, 31))

    days = view["uploads_per_day"]
    assert len(days) == STATS_DAYS == 30
    assert (days[0]["date"], days[-1]["date"]) == ("2024-05-02", "2024-05-31")
    assert {d["date"]: d["uploads"] for d in days if d["uploads"]} == {"2024-05-20": 2}
    assert sum(d["uploads"] for d in days) == 2


def test_upload_stats_totals_formats_and_cameras(service, counters):
    counters.add(TEAM, "a" * 64, Contribution("2024-05-20", "PNG", None))
    counters.add(TEAM, "b" * 64, Contribution("2024-05-20", "JPEG", "Canon EOS R5"))
    counters.add(TEAM, "c" * 64, Contribution("2024-05-21", "PNG", "Canon EOS R5"))
    counters.add(OTHER_TEAM, "d" * 64, Contribution("2024-05-21", "GIF", None))

    view = service.upload_stats(TEAM, dt.date(2024, 5, 31))

    assert (view["total_images"], view["most_popular_format"]) == (3, "PNG")
    assert view["formats"] == {"PNG": 2, "JPEG": 1}
    assert view["top_cameras"] == [{"camera": "Canon EOS R5", "images": 2}]


def test_upload_stats_of_a_team_without_images(service):
    view = service.upload_stats(TEAM, dt.date(2024, 5, 31))

    assert (view["total_images"], view["most_popular_format"], view["formats"], view["top_cameras"]) == (
        0,
        None,
        {},
        [],
    )
    assert all(day["uploads"] == 0 for day in view["uploads_per_day"])


def test_deleted_images_leave_the_statistics(service, counters):
    contribution = Contribution("2024-05-20", "PNG", "Pixel 8")
    counters.add(TEAM, "a" * 64, contribution)
    counters.remove(TEAM, "a" * 64, contribution)

    view = service.upload_stats(TEAM, dt.date(2024, 5, 31))

    assert (view["total_images"], view["formats"], view["top_cameras"]) == (0, {}, [])


def test_stats_view_never_shows_negative_counts_and_ranks_cameras_by_count_then_name():
    totals = Totals(
        days={"2024-05-31": -1}, formats={"PNG": 1}, cameras={"b-cam": 2, "a-cam": 2, "c-cam": 5, "gone": 0}
    )

    view = stats_view(totals, dt.date(2024, 5, 31))

    assert view["uploads_per_day"][-1] == {"date": "2024-05-31", "uploads": 0}
    assert [c["camera"] for c in view["top_cameras"]] == ["c-cam", "a-cam", "b-cam"]


def test_stats_view_names_the_format_first_by_count_then_by_name_on_a_tie():
    view = stats_view(Totals(formats={"JPEG": 2, "PNG": 2, "GIF": 1}), dt.date(2024, 5, 31))

    assert view["most_popular_format"] == "PNG"


def test_stats_view_keeps_ten_cameras():
    view = stats_view(Totals(cameras={f"cam-{n:02}": n + 1 for n in range(15)}), dt.date(2024, 5, 31))

    assert [c["camera"] for c in view["top_cameras"]] == [f"cam-{n:02}" for n in range(14, 4, -1)]
