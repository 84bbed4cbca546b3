"""JobService and JobWorker: batch jobs submitted, followed, cancelled and run item by item (spec S9)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

import pytest
from google.api_core import exceptions as gexc
from PIL import Image

from aperture.domain import transforms
from aperture.domain.errors import ApiError
from aperture.domain.jobs import Counts, ItemState, JobLimits, JobStatus
from aperture.domain.records import ImageRecord, Principal
from aperture.services.jobs import Faults, InjectedFault, JobService, JobWorker
from tests.support.images import encode, random_image
from tests.unit.fakes import FakeUrlSigner, raising
from tests.unit.services.helpers import BY, DERIVED, MAX_PIXELS, OTHER_TEAM, TEAM, UPLOADS, png, upload_service

START = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
MEMBER = Principal(BY["key_id"], BY["user_id"], TEAM, "member")
OUTSIDER = Principal("key_fedcba9876543210", "usr_fedcba9876543210", OTHER_TEAM, "owner")
QUARTERS = ("top-left", "top-right", "bottom-left", "bottom-right")


@pytest.fixture
def service(job_store, job_queue, images, objects) -> JobService:
    moments = iter(START + dt.timedelta(minutes=n) for n in range(1000))
    return job_service(job_store, job_queue, images, objects, clock=lambda: next(moments))


def job_service(
    job_store,
    job_queue,
    images,
    objects,
    limits: JobLimits = JobLimits(),
    clock=None,
    render_limits: transforms.Limits = transforms.DEFAULT_LIMITS,
) -> JobService:
    return JobService(
        job_store,
        job_queue,
        images,
        objects,
        derived_bucket=DERIVED,
        limits=limits,
        clock=clock or (lambda: START),
        render_limits=render_limits,
    )


@pytest.fixture
def worker(job_store, objects) -> JobWorker:
    return JobWorker(job_store, objects, derived_bucket=DERIVED, max_pixels=MAX_PIXELS)


@pytest.fixture
def uploaded(objects, images):
    """Uploads a small PNG (by seed) and returns its record."""
    uploads = upload_service(objects, images)

    def upload(seed: int = 1, filename: str | None = None, team: str = TEAM, data: bytes | None = None) -> ImageRecord:
        result = uploads.add(team, filename or f"img-{seed}.png", data or png(seed=seed), BY)
        return images.get(team, result.id)

    return upload


def job(*pairs: tuple[str, str], operations: tuple[str, ...] = ()) -> dict:
    return {"images": [{"input": source, "output": output} for source, output in pairs], "operations": list(operations)}


def refused(call, *args, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as error:
        call(*args, **kwargs)
    return error.value


def nothing_stored(job_store, job_queue, team: str = TEAM) -> bool:
    return job_store.list(team, limit=100) == [] and job_queue.published == []


def counts(job_store, job_id: str) -> Counts:
    return job_store.get(job_id)[1]


def state(job_store, job_id: str, index: int = 0):
    return job_store.item(job_id, index).item


def stored_image(objects, name: str) -> Image.Image:
    info = objects.info(DERIVED, name)
    image = Image.open(io.BytesIO(objects.read(info)))
    image.load()
    return image


def rendered(data: bytes, operations: list[str], extension: str) -> list[transforms.Rendered]:
    return transforms.render(data, transforms.parse_job_ops(operations), extension, max_pixels=MAX_PIXELS)


# -- submit -------------------------------------------------------------------------------------


def test_submit_stores_the_job_and_its_items_queued(service, job_store, uploaded):
    first, second = uploaded(1), uploaded(2)

    submitted = service.submit(
        MEMBER, job((first.id, "out/a.png"), (second.id, "out/b.jpg"), operations=("resize=50", "blur=5"))
    )

    stored, job_counts = job_store.get(submitted.job_id)
    assert stored == submitted
    assert (stored.team, stored.total, stored.created_at) == (TEAM, 2, START)
    assert stored.operations == ("resize=50", "blur=5")
    assert stored.pipeline == "resize:50%|blur:5"
    assert stored.created_by == BY
    assert not stored.cancelled
    assert job_counts == Counts(queued=2)
    assert job_counts.status() is JobStatus.QUEUED
    items = job_store.items(submitted.job_id)
    assert [(i.index, i.input, i.image_id, i.output, i.extension, i.state) for i in items] == [
        (0, first.id, first.id, "out/a.png", "png", ItemState.QUEUED),
        (1, second.id, second.id, "out/b.jpg", "jpg", ItemState.QUEUED),
    ]
    assert [(i.source_bucket, i.source_object) for i in items] == [(UPLOADS, first.object), (UPLOADS, second.object)]


def test_submit_publishes_one_message_per_item(service, job_queue, uploaded):
    records = [uploaded(seed) for seed in (1, 2, 3)]

    submitted = service.submit(MEMBER, job(*((r.id, f"{n}.png") for n, r in enumerate(records))))

    assert job_queue.items() == [(submitted.job_id, 0), (submitted.job_id, 1), (submitted.job_id, 2)]
    assert all(attributes == {"team": TEAM, "job_id": submitted.job_id} for _, attributes in job_queue.published)


def test_submit_gives_each_job_its_own_id(service, uploaded):
    record = uploaded()

    ids = {service.submit(MEMBER, job((record.id, "a.png"))).job_id for _ in range(5)}

    assert len(ids) == 5


@pytest.mark.parametrize("spelling", ["id", "object", "filename"])
def test_submit_resolves_an_id_an_object_name_or_a_filename(service, job_store, uploaded, spelling):
    record = uploaded(7, filename="holiday.png")
    source = {"id": record.id, "object": f"teams/{TEAM}/{record.id}.png", "filename": "holiday.png"}[spelling]

    submitted = service.submit(MEMBER, job((source, "a.png")))

    [item] = job_store.items(submitted.job_id)
    assert (item.input, item.image_id, item.source_object) == (source, record.id, record.object)


def test_an_output_without_extension_takes_the_inputs_format(service, job_store, uploaded):
    record = uploaded()

    submitted = service.submit(MEMBER, job((record.id, "thumbs/a")))

    assert [item.extension for item in job_store.items(submitted.job_id)] == ["png"]


def test_an_outputs_extension_chooses_the_format(service, job_store, uploaded):
    record = uploaded()

    submitted = service.submit(MEMBER, job((record.id, "a.JPEG"), (record.id, "b.tif")))

    assert [item.extension for item in job_store.items(submitted.job_id)] == ["jpg", "tiff"]


def test_submit_refuses_a_bad_operation_and_stores_nothing(service, job_store, job_queue, uploaded):
    record = uploaded()

    error = refused(service.submit, MEMBER, job((record.id, "a.png"), operations=("resize=50", "sharpen=1")))

    assert error.status == 400
    assert "'sharpen'" in error.message
    assert nothing_stored(job_store, job_queue)


def test_submit_refuses_a_missing_input_naming_the_item(service, job_store, job_queue, uploaded):
    record = uploaded()

    error = refused(service.submit, MEMBER, job((record.id, "a.png"), ("0" * 64, "b.png")))

    assert (error.status, error.message) == (404, f"images[1]: input {'0' * 64!r} not found among your team's images")
    assert nothing_stored(job_store, job_queue)


@pytest.mark.parametrize("spelling", ["id", "object", "filename"])
def test_another_teams_input_is_not_found(service, job_store, job_queue, uploaded, spelling):
    theirs = uploaded(5, filename="theirs.png", team=OTHER_TEAM)
    source = {"id": theirs.id, "object": theirs.object, "filename": "theirs.png"}[spelling]

    error = refused(service.submit, MEMBER, job((source, "a.png")))

    assert error.status == 404
    assert error.message.startswith("images[0]: input ")
    assert nothing_stored(job_store, job_queue)


def test_an_object_name_under_the_team_with_a_malformed_id_is_not_found(service, uploaded):
    uploaded()

    assert refused(service.submit, MEMBER, job((f"teams/{TEAM}/nope.png", "a.png"))).status == 404


def test_submit_refuses_an_input_that_failed_processing(service, job_store, job_queue, images, uploaded):
    record = uploaded()
    images.mark_failed(TEAM, record.id, "truncated file", "1")

    error = refused(service.submit, MEMBER, job((record.id, "a.png")))

    assert error.status == 400
    assert error.message == f"images[0]: input {record.id!r} is not a readable image (truncated file)"
    assert nothing_stored(job_store, job_queue)


def test_submit_refuses_a_filename_shared_by_several_images(service, job_store, job_queue, uploaded):
    uploaded(1, filename="same.png")
    uploaded(2, filename="same.png")

    error = refused(service.submit, MEMBER, job(("same.png", "a.png")))

    assert error.status == 400
    assert "several of your images are named 'same.png'" in error.message
    assert nothing_stored(job_store, job_queue)


def test_submit_refuses_an_output_over_the_pixel_limit_naming_the_item_and_its_size(
    job_store, job_queue, images, objects, uploaded
):
    small, large = uploaded(1), uploaded(2, data=png(seed=2, size=(60, 40)))
    service = job_service(job_store, job_queue, images, objects, limits=JobLimits(max_output_pixels=2000))

    error = refused(service.submit, MEMBER, job((small.id, "a.png"), (large.id, "b.png"), operations=("rotate=90",)))

    assert error.status == 400
    assert error.message.startswith("images[1] (60x40): ")
    assert "2400 pixels" in error.message
    assert nothing_stored(job_store, job_queue)


def test_submit_refuses_an_item_over_the_render_memory_budget_before_queueing_anything(
    job_store, job_queue, images, objects, uploaded
):
    small, large = uploaded(1), uploaded(2, data=png(seed=2, size=(600, 400)))
    budget = transforms.Limits(max_render_bytes=5 * 2**20)
    service = job_service(job_store, job_queue, images, objects, render_limits=budget)

    error = refused(service.submit, MEMBER, job((small.id, "a.png"), (large.id, "b.webp"), operations=("blur=5",)))

    assert error.status == 400
    assert error.message.startswith("images[1] (600x400): the render would need about ")
    assert error.message.endswith("the limit is 5 MiB: ask for a smaller size")
    assert nothing_stored(job_store, job_queue)


def test_submit_accepts_items_within_the_render_memory_budget(job_store, job_queue, images, objects, uploaded):
    small = uploaded(1)
    service = job_service(
        job_store, job_queue, images, objects, render_limits=transforms.Limits(max_render_bytes=5 * 2**20)
    )

    submitted = service.submit(MEMBER, job((small.id, "a.webp"), operations=("blur=5",)))

    assert submitted.total == 1
    assert len(job_queue.published) == 1


def test_submit_refuses_a_crop_outside_an_input(service, job_store, job_queue, uploaded):
    record = uploaded()  # 37x23

    error = refused(service.submit, MEMBER, job((record.id, "a.png"), operations=("crop=0,0,30,30",)))

    assert error.status == 400
    assert error.message.startswith("images[0] (37x23): ")
    assert nothing_stored(job_store, job_queue)


def test_submit_needs_a_member_key(service, job_store, job_queue, uploaded):
    record = uploaded()
    nobody = dataclasses.replace(MEMBER, role="viewer")

    assert refused(service.submit, nobody, job((record.id, "a.png"))).status == 403
    assert nothing_stored(job_store, job_queue)


def test_a_queue_failure_cancels_the_job_and_answers_503(service, job_store, job_queue, uploaded):
    record = uploaded()
    job_queue.publish = raising(gexc.ServiceUnavailable("pubsub down"))

    error = refused(service.submit, MEMBER, job((record.id, "a.png"), (record.id, "b.png")))

    assert (error.status, error.headers) == (503, {"Retry-After": "10"})
    [(stored, job_counts)] = job_store.list(TEAM, limit=10)
    assert stored.cancelled
    assert job_counts == Counts(cancelled=2)
    assert job_counts.status() is JobStatus.CANCELLED


def test_submit_refuses_outputs_that_clash_once_the_inputs_extension_is_added(service, job_store, job_queue, uploaded):
    first, second = uploaded(1), uploaded(2)

    error = refused(service.submit, MEMBER, job((first.id, "a"), (second.id, "a.png")))

    assert error.status == 400
    assert nothing_stored(job_store, job_queue)


def rotated_jpeg(size=(40, 20), orientation: int = 6) -> bytes:
    picture = random_image("RGB", size=size, seed=4)
    exif = picture.getexif()
    exif[0x0112] = orientation  # 6: stored 40x20, shown 20x40
    return encode(picture, "JPEG", exif=exif.tobytes())


def test_submit_plans_on_the_upright_size_of_a_pending_exif_rotated_input(service, job_store, job_queue, uploaded):
    record = uploaded(data=rotated_jpeg(), filename="rotated.jpg")  # pending: `process` has not read its EXIF

    error = refused(service.submit, MEMBER, job((record.id, "a.png"), operations=("crop=0,0,30,10",)))

    assert record.exif is None
    assert error.status == 400
    assert error.message.startswith("images[0] (20x40): ")
    assert nothing_stored(job_store, job_queue)


def test_submit_accepts_a_crop_inside_the_upright_size_of_a_pending_rotated_input(service, job_queue, uploaded):
    record = uploaded(data=rotated_jpeg(), filename="rotated.jpg")

    submitted = service.submit(MEMBER, job((record.id, "a.png"), operations=("crop=0,0,10,30",)))

    assert submitted.total == 1


@pytest.mark.parametrize(
    ("fmt", "exif", "planned"),
    [("JPEG", None, "40x20"), ("JPEG", {"orientation": 6}, "20x40"), ("TIFF", {"orientation": 6}, "40x20")],
)
def test_a_record_made_before_orientations_were_stored_plans_on_its_processed_exif(
    service, images, uploaded, fmt, exif, planned
):
    record = uploaded(data=rotated_jpeg(), filename="rotated.jpg")
    older = dataclasses.replace(record, id="a" * len(record.id), format=fmt, orientation=None, exif=exif)
    images.create(older)

    error = refused(service.submit, MEMBER, job((older.id, "a.png"), operations=("crop=0,0,50,50",)))

    assert error.message.startswith(f"images[0] ({planned}): ")


# -- get, list, cancel --------------------------------------------------------------------------


def test_get_gives_the_job_its_counts_and_its_items(service, uploaded):
    record = uploaded()
    submitted = service.submit(MEMBER, job((record.id, "a.png"), (record.id, "b.png")))

    view = service.get(MEMBER, submitted.job_id)

    assert view.job == submitted
    assert view.counts == Counts(queued=2)
    assert [item.output for item in view.items] == ["a.png", "b.png"]


def test_get_without_items(service, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))

    assert service.get(MEMBER, submitted.job_id, with_items=False).items is None


def test_another_teams_job_is_not_found(service, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))

    error = refused(service.get, OUTSIDER, submitted.job_id)

    assert (error.status, error.message) == (404, "job not found")


@pytest.mark.parametrize("job_id", ["", "job_", "job_0123", "job_" + "g" * 20, "../jobs", "JOB_" + "0" * 20])
def test_a_malformed_job_id_is_not_found_without_a_lookup(service, job_store, job_id):
    job_store.get = lambda job_id: pytest.fail("a malformed id must not be looked up")

    assert refused(service.get, MEMBER, job_id).status == 404


def test_a_missing_job_is_not_found(service):
    assert refused(service.get, MEMBER, "job_" + "0" * 20).status == 404


def test_list_gives_the_teams_jobs_newest_first(service, uploaded):
    record, theirs = uploaded(1), uploaded(2, team=OTHER_TEAM)
    oldest, middle, newest = (service.submit(MEMBER, job((record.id, f"{n}.png"))) for n in range(3))
    service.submit(OUTSIDER, job((theirs.id, "x.png")))

    page, cursor = service.list(MEMBER, limit=10, start_after=None)

    assert [view.job.job_id for view in page] == [newest.job_id, middle.job_id, oldest.job_id]
    assert all(view.counts == Counts(queued=1) and view.items is None for view in page)
    assert cursor is None


def test_list_pages_with_a_cursor(service, uploaded):
    record = uploaded()
    submitted = [service.submit(MEMBER, job((record.id, f"{n}.png"))) for n in range(5)]
    newest_first = [j.job_id for j in reversed(submitted)]

    first, cursor = service.list(MEMBER, limit=2, start_after=None)
    second, cursor2 = service.list(MEMBER, limit=2, start_after=cursor)
    last, end = service.list(MEMBER, limit=2, start_after=cursor2)

    assert [v.job.job_id for v in first + second + last] == newest_first
    assert (cursor, cursor2, end) == (newest_first[1], newest_first[3], None)


def test_a_full_last_page_has_no_cursor(service, uploaded):
    record = uploaded()
    for n in range(2):
        service.submit(MEMBER, job((record.id, f"{n}.png")))

    page, cursor = service.list(MEMBER, limit=2, start_after=None)

    assert (len(page), cursor) == (2, None)


def test_a_cursor_at_another_teams_job_is_a_400(service, uploaded):
    theirs = service.submit(OUTSIDER, job((uploaded(team=OTHER_TEAM).id, "x.png")))

    error = refused(service.list, MEMBER, limit=10, start_after=theirs.job_id)

    assert error.status == 400
    assert "cursor" in error.message


@pytest.mark.parametrize("limit", [0, -1, 101])
def test_list_limit_is_1_to_100(service, limit):
    assert refused(service.list, MEMBER, limit=limit, start_after=None).status == 400


def test_cancel_cancels_the_items_not_started(service, worker, job_store, objects, uploaded):
    record = uploaded()
    submitted = service.submit(MEMBER, job((record.id, "a.png"), (record.id, "b.png"), (record.id, "c.png")))
    worker.run(submitted.job_id, 0)
    objects.read = raising(gexc.ServiceUnavailable("storage down"))
    with pytest.raises(gexc.ServiceUnavailable):
        worker.run(submitted.job_id, 1)  # left running, to be delivered again

    view = service.cancel(MEMBER, submitted.job_id)

    assert view.job.cancelled
    assert [item.state for item in view.items] == [ItemState.DONE, ItemState.RUNNING, ItemState.CANCELLED]
    assert view.counts == Counts(running=1, done=1, cancelled=1)
    assert view.counts.status() is JobStatus.RUNNING


def test_cancelling_twice_changes_nothing_more(service, job_store, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))
    service.cancel(MEMBER, submitted.job_id)

    view = service.cancel(MEMBER, submitted.job_id)

    assert view.counts == Counts(cancelled=1)
    assert view.counts.status() is JobStatus.CANCELLED
    assert job_store.raw_counts(submitted.job_id) == {"queued": 0, "cancelled": 1}


def test_another_team_cannot_cancel_a_job(service, job_store, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))

    error = refused(service.cancel, OUTSIDER, submitted.job_id)

    assert error.status == 404
    assert counts(job_store, submitted.job_id) == Counts(queued=1)
    assert not job_store.get(submitted.job_id)[0].cancelled


# -- outputs ------------------------------------------------------------------------------------


def test_output_gives_a_finished_items_bytes(service, worker, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "thumbs/a.png"), operations=("resize=50",)))
    worker.run(submitted.job_id, 0)

    info, body = service.output(MEMBER, submitted.job_id, "thumbs/a.png")

    assert (info.bucket, info.name) == (DERIVED, f"jobs/{TEAM}/{submitted.job_id}/thumbs/a.png")
    assert body.url is None
    assert Image.open(io.BytesIO(body.data)).size == (19, 12)  # 37x23 halved, rounded


def test_an_output_over_the_response_limit_is_a_signed_link_to_the_object(
    job_store, job_queue, images, objects, worker, uploaded
):
    signer = FakeUrlSigner()
    service = JobService(
        job_store,
        job_queue,
        images,
        objects,
        derived_bucket=DERIVED,
        limits=JobLimits(),
        clock=lambda: START,
        signer=signer,
        max_response_bytes=10,
    )
    submitted = service.submit(
        MEMBER,
        job(
            (uploaded().id, "big.png"),
        ),
    )
    worker.run(submitted.job_id, 0)

    info, body = service.output(MEMBER, submitted.job_id, "big.png")

    assert body.data == b"" and body.url is not None
    assert signer.read_links == [(DERIVED, info.name, START + dt.timedelta(hours=1), 'attachment; filename="big.png"')]


def test_output_of_an_item_not_finished_is_not_found(service, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))

    assert refused(service.output, MEMBER, submitted.job_id, "a.png").status == 404


def test_output_is_only_for_the_callers_job(service, worker, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))
    worker.run(submitted.job_id, 0)

    error = refused(service.output, OUTSIDER, submitted.job_id, "a.png")

    assert error.status == 404


def test_output_is_only_an_output_of_that_job(service, worker, objects, uploaded):
    record = uploaded()
    mine = service.submit(MEMBER, job((record.id, "a.png")))
    other = service.submit(MEMBER, job((record.id, "b.png")))
    worker.run(other.job_id, 0)
    objects.put(DERIVED, f"jobs/{TEAM}/{mine.job_id}/planted.png", b"not ours")

    for name in ("b.png", "planted.png", f"../{other.job_id}/b.png", "a.png"):
        assert refused(service.output, MEMBER, mine.job_id, name).status == 404


def test_output_whose_object_was_removed_is_not_found(service, worker, objects, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))
    worker.run(submitted.job_id, 0)
    objects.delete(DERIVED, f"jobs/{TEAM}/{submitted.job_id}/a.png")

    assert refused(service.output, MEMBER, submitted.job_id, "a.png").status == 404


# -- the worker ---------------------------------------------------------------------------------


def test_run_renders_writes_the_output_and_finishes_the_item(service, worker, job_store, objects, uploaded):
    record = uploaded(3)
    submitted = service.submit(MEMBER, job((record.id, "out/a.png"), operations=("resize=50", "blur=3")))

    outcome = worker.run(submitted.job_id, 0)

    name = f"jobs/{TEAM}/{submitted.job_id}/out/a.png"
    [expected] = rendered(png(seed=3), ["resize=50", "blur=3"], "png")
    assert outcome == "done"
    assert objects.read(objects.info(DERIVED, name)) == expected.data
    assert objects.info(DERIVED, name).content_type == "image/png"
    assert objects.metadata(DERIVED, name) == {"aperture-job": submitted.job_id}
    item = state(job_store, submitted.job_id)
    assert (item.state, item.attempts, item.outputs, item.error) == (ItemState.DONE, 1, ("out/a.png",), None)
    assert item.started_at is not None and item.finished_at is not None and item.worker
    assert counts(job_store, submitted.job_id) == Counts(done=1)


def test_run_writes_the_format_the_output_asks_for(service, worker, objects, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.jpg"), (uploaded().id, "b")))

    worker.run(submitted.job_id, 0)
    worker.run(submitted.job_id, 1)

    prefix = f"jobs/{TEAM}/{submitted.job_id}/"
    assert stored_image(objects, prefix + "a.jpg").format == "JPEG"
    assert stored_image(objects, prefix + "b.png").format == "PNG"  # the input's format


def test_run_of_a_split_writes_four_quarters(service, worker, job_store, objects, uploaded):
    record = uploaded(2)
    submitted = service.submit(MEMBER, job((record.id, "q/a.png"), operations=("split=True", "grayscale")))

    assert worker.run(submitted.job_id, 0) == "done"

    names = [f"q/a-{quarter}.png" for quarter in QUARTERS]
    assert state(job_store, submitted.job_id).outputs == tuple(names)
    expected = rendered(png(seed=2), ["split=True", "grayscale"], "png")
    prefix = f"jobs/{TEAM}/{submitted.job_id}/"
    assert [objects.read(objects.info(DERIVED, prefix + n)) for n in names] == [out.data for out in expected]
    assert [stored_image(objects, prefix + n).size for n in names] == [(18, 11), (19, 11), (18, 12), (19, 12)]


def test_a_finished_items_duplicate_delivery_is_a_no_op(service, worker, job_store, objects, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))
    worker.run(submitted.job_id, 0)
    before = state(job_store, submitted.job_id)
    name = f"jobs/{TEAM}/{submitted.job_id}/a.png"
    generation = objects.info(DERIVED, name).generation

    outcome = worker.run(submitted.job_id, 0)

    assert outcome == "duplicate: already done"
    assert state(job_store, submitted.job_id) == before
    assert objects.info(DERIVED, name).generation == generation
    assert job_store.raw_counts(submitted.job_id) == {"queued": 0, "running": 0, "done": 1}


def test_two_racing_deliveries_claim_the_item_once(service, worker, job_store, objects, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))
    read_before_the_other_claimed = job_store.item(submitted.job_id, 0)
    job_store.start(read_before_the_other_claimed, "other-worker")
    job_store.item = lambda job_id, index: read_before_the_other_claimed

    outcome = worker.run(submitted.job_id, 0)

    del job_store.item
    item = state(job_store, submitted.job_id)
    assert outcome == "duplicate: another delivery changed the item"
    assert (item.state, item.attempts, item.worker) == (ItemState.RUNNING, 1, "other-worker")
    assert counts(job_store, submitted.job_id) == Counts(running=1)
    assert objects.names(DERIVED) == set()


def test_a_delivery_whose_item_changed_while_rendering_does_not_finish_it(service, worker, job_store, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))
    start = job_store.start

    def start_then_another_write(current, name):
        claimed = start(current, name)
        job_store.touch(submitted.job_id, 0)
        return claimed

    job_store.start = start_then_another_write

    outcome = worker.run(submitted.job_id, 0)

    assert outcome == "duplicate: finished by another delivery"
    assert state(job_store, submitted.job_id).state is ItemState.RUNNING
    assert counts(job_store, submitted.job_id) == Counts(running=1)


def test_a_transient_error_is_noted_and_raised_for_redelivery(service, worker, job_store, objects, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))
    objects.read = raising(gexc.ServiceUnavailable("storage down"))

    with pytest.raises(gexc.ServiceUnavailable):
        worker.run(submitted.job_id, 0)

    item = state(job_store, submitted.job_id)
    assert (item.state, item.attempts) == (ItemState.RUNNING, 1)
    assert item.error == "ServiceUnavailable: 503 storage down"
    assert item.finished_at is None
    assert counts(job_store, submitted.job_id) == Counts(running=1)
    assert objects.names(DERIVED) == set()


def test_a_redelivery_after_a_transient_error_finishes_the_item(service, worker, job_store, objects, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))
    objects.read = raising(gexc.ServiceUnavailable("storage down"))
    for _ in range(2):
        with pytest.raises(gexc.ServiceUnavailable):
            worker.run(submitted.job_id, 0)
    del objects.read

    outcome = worker.run(submitted.job_id, 0)

    item = state(job_store, submitted.job_id)
    assert outcome == "done"
    assert (item.state, item.attempts, item.error) == (ItemState.DONE, 3, None)
    assert job_store.raw_counts(submitted.job_id) == {"queued": 0, "running": 0, "done": 1}


def test_an_undecodable_input_fails_the_item_for_good(service, worker, job_store, objects, uploaded):
    record = uploaded()
    submitted = service.submit(MEMBER, job((record.id, "a.png"), (record.id, "b.png")))
    objects.put(UPLOADS, record.object, b"these bytes are no image")

    outcome = worker.run(submitted.job_id, 0)

    item = state(job_store, submitted.job_id)
    assert outcome.startswith("failed: ")
    assert (item.state, item.attempts) == (ItemState.FAILED, 1)
    assert item.error and item.finished_at is not None
    assert counts(job_store, submitted.job_id) == Counts(queued=1, failed=1)
    assert worker.run(submitted.job_id, 0) == "duplicate: already failed"


def test_a_deleted_input_fails_the_item(service, worker, job_store, objects, uploaded):
    record = uploaded()
    submitted = service.submit(MEMBER, job((record.id, "a.png")))
    objects.delete(UPLOADS, record.object)

    outcome = worker.run(submitted.job_id, 0)

    assert outcome == f"failed: the input image {record.id} was deleted"
    assert state(job_store, submitted.job_id).error == f"the input image {record.id} was deleted"
    assert counts(job_store, submitted.job_id).status() is JobStatus.FAILED


def test_an_item_that_cannot_take_the_operations_fails(service, worker, job_store, objects, uploaded):
    record = uploaded()
    submitted = service.submit(MEMBER, job((record.id, "a.png"), operations=("crop=0,0,30,20",)))
    objects.put(UPLOADS, record.object, png(seed=9, size=(10, 10)))  # replaced by a smaller image

    assert worker.run(submitted.job_id, 0).startswith("failed: ")
    assert "crop" in state(job_store, submitted.job_id).error


def test_every_item_runs_to_a_job_status(service, worker, job_store, objects, uploaded):
    record, doomed = uploaded(1), uploaded(2)
    submitted = service.submit(MEMBER, job((record.id, "a.png"), (doomed.id, "b.png")))
    objects.delete(UPLOADS, doomed.object)

    worker.run(submitted.job_id, 0)
    worker.run(submitted.job_id, 1)

    assert counts(job_store, submitted.job_id) == Counts(done=1, failed=1)
    assert counts(job_store, submitted.job_id).status() is JobStatus.PARTIAL


def test_a_cancelled_item_is_not_run(service, worker, job_store, objects, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))
    service.cancel(MEMBER, submitted.job_id)

    outcome = worker.run(submitted.job_id, 0)

    assert outcome == "duplicate: already cancelled"
    assert state(job_store, submitted.job_id).attempts == 0
    assert objects.names(DERIVED) == set()


def test_a_message_for_no_item_is_ignored(worker, job_store):
    assert worker.run("job_" + "0" * 20, 0) == "gone: no such item"


# -- injected faults ----------------------------------------------------------------------------


def test_faults_parse_once_and_always_names():
    assert Faults.parse(" once:flaky , always:poison,,bogus:x,once:other") == Faults(("flaky", "other"), ("poison",))
    assert Faults.parse("") == Faults()


def test_a_once_fault_fails_the_first_run_only(service, job_store, objects, uploaded):
    worker = JobWorker(
        job_store, objects, derived_bucket=DERIVED, max_pixels=MAX_PIXELS, faults=Faults(once=("flaky",))
    )
    submitted = service.submit(MEMBER, job((uploaded().id, "flaky.png"), (uploaded().id, "fine.png")))

    with pytest.raises(InjectedFault):
        worker.run(submitted.job_id, 0)
    noted = state(job_store, submitted.job_id).error
    second = worker.run(submitted.job_id, 0)

    assert noted == "InjectedFault: injected fault on 'flaky.png' (attempt 1)"
    assert second == "done"
    assert state(job_store, submitted.job_id).attempts == 2
    assert worker.run(submitted.job_id, 1) == "done"


def test_an_always_fault_fails_every_run(service, job_store, objects, uploaded):
    faults = Faults(always=("poison",))
    worker = JobWorker(job_store, objects, derived_bucket=DERIVED, max_pixels=MAX_PIXELS, faults=faults)
    submitted = service.submit(MEMBER, job((uploaded().id, "poison.png")))

    for _ in range(3):
        with pytest.raises(InjectedFault):
            worker.run(submitted.job_id, 0)

    item = state(job_store, submitted.job_id)
    assert (item.state, item.attempts) == (ItemState.RUNNING, 3)
    assert item.error == "InjectedFault: injected fault on 'poison.png' (attempt 3)"
    assert objects.names(DERIVED) == set()


# -- give_up (the dead letter) ------------------------------------------------------------------


def test_give_up_fails_the_item_with_its_last_error(service, job_store, objects, uploaded):
    faults = Faults(always=("poison",))
    worker = JobWorker(job_store, objects, derived_bucket=DERIVED, max_pixels=MAX_PIXELS, faults=faults)
    submitted = service.submit(MEMBER, job((uploaded().id, "poison.png")))
    for _ in range(5):
        with pytest.raises(InjectedFault):
            worker.run(submitted.job_id, 0)

    outcome = worker.give_up(submitted.job_id, 0, 5)

    item = state(job_store, submitted.job_id)
    assert outcome == "failed"
    assert item.state is ItemState.FAILED
    assert item.error == "gave up after 5 deliveries: InjectedFault: injected fault on 'poison.png' (attempt 5)"
    assert counts(job_store, submitted.job_id) == Counts(failed=1)
    assert job_store.raw_counts(submitted.job_id) == {"queued": 0, "running": 0, "failed": 1}


def test_give_up_of_an_item_that_never_ran_says_so(service, worker, job_store, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))

    assert worker.give_up(submitted.job_id, 0, 5) == "failed"

    assert state(job_store, submitted.job_id).error == "gave up after 5 deliveries: no error recorded"
    assert counts(job_store, submitted.job_id) == Counts(failed=1)


def test_give_up_of_a_finished_item_does_nothing(service, worker, job_store, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))
    worker.run(submitted.job_id, 0)
    before = state(job_store, submitted.job_id)

    outcome = worker.give_up(submitted.job_id, 0, 5)

    assert outcome == "nothing to do"
    assert state(job_store, submitted.job_id) == before
    assert counts(job_store, submitted.job_id) == Counts(done=1)


def test_give_up_of_no_item_does_nothing(worker):
    assert worker.give_up("job_" + "0" * 20, 3, 5) == "nothing to do"


def test_give_up_loses_to_a_concurrent_change(service, worker, job_store, uploaded):
    submitted = service.submit(MEMBER, job((uploaded().id, "a.png")))
    stale = job_store.item(submitted.job_id, 0)
    job_store.touch(submitted.job_id, 0)
    job_store.item = lambda job_id, index: stale

    outcome = worker.give_up(submitted.job_id, 0, 5)

    del job_store.item
    assert outcome == "changed meanwhile"
    assert state(job_store, submitted.job_id).state is ItemState.QUEUED
