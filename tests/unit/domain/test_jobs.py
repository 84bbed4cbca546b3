"""Batch jobs (spec S9): the batch server's request and operation grammar, output names, job status."""

from __future__ import annotations

import pytest

from aperture.domain.errors import ApiError
from aperture.domain.jobs import (
    Counts,
    JobLimits,
    JobStatus,
    check_output,
    output_names,
    parse_operations,
    parse_request,
)

QUARTERS = ("-top-left", "-top-right", "-bottom-left", "-bottom-right")


def body(*outputs: str, operations: list[str] | None = None) -> dict:
    """A request writing each output from its own input."""
    images = [{"input": f"photo-{n}.jpg", "output": output} for n, output in enumerate(outputs)]
    return {"images": images, "operations": operations if operations is not None else []}


def refused(call, *args, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as error:
        call(*args, **kwargs)
    assert error.value.status == 400
    return error.value


def pipeline_of(*operations: str) -> str:
    return str(parse_operations(list(operations)))


# -- resize=F ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "canonical"),
    [
        ("resize=50", "resize:50%"),
        ("resize=50%", "resize:50%"),
        ("resize=100", "resize:100%"),
        ("resize=100%", "resize:100%"),
        ("resize=0.06", "resize:0.06%"),
        ("resize=12.5", "resize:12.5%"),
        ("Resize = 50 ", "resize:50%"),
    ],
)
def test_resize_takes_a_percentage_above_point_05_up_to_100(operation, canonical):
    assert pipeline_of(operation) == canonical


@pytest.mark.parametrize("value", ["0.05", "0.05%", "0", "-5", "100.01", "101", "200%"])
def test_resize_outside_the_open_closed_range_is_refused(value):
    error = refused(parse_operations, [f"resize={value}"])

    assert "operations[0]" in error.message
    assert "above 0.05 and at most 100" in error.message


@pytest.mark.parametrize("operation", ["resize", "resize=", "resize=abc", "resize=1e2", "resize=nan", "resize=50x50"])
def test_resize_without_a_plain_percentage_is_refused(operation):
    error = refused(parse_operations, [operation])

    assert "operations[0]" in error.message
    assert "resize" in error.message


# -- split=X -------------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["split=None", "split=false", "split=False", "split= False "])
def test_split_with_none_or_false_does_not_split(operation):
    pipeline = parse_operations([operation])

    assert not pipeline.splits
    assert str(pipeline) == ""


@pytest.mark.parametrize(
    "operation",
    [
        "split",
        "split=",
        "split=True",
        "split=true",
        "split=1",
        "split=0",
        "split=no",
        "split=FALSE",
        "split=none",
        "split=tl",
    ],
)
def test_split_with_any_other_value_splits_into_four(operation):
    pipeline = parse_operations([operation])

    assert pipeline.splits
    assert str(pipeline) == "split"


def test_split_twice_is_refused():
    error = refused(parse_operations, ["split=True", "split=yes"])

    assert "split" in error.message


def test_operations_after_a_split_apply_to_each_quarter():
    assert pipeline_of("resize=50", "split=True", "blur=5") == "resize:50%|split|blur:5"


# -- blur=K and the rest ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "canonical"),
    [("blur=5", "blur:5"), ("blur=4", "blur:5"), ("blur=5,2", "blur:5,2"), ("blur=0,2", "blur:13,2")],
)
def test_blur_is_an_opencv_kernel_size(operation, canonical):
    assert pipeline_of(operation) == canonical


@pytest.mark.parametrize("operation", ["blur=-1", "blur=x", "blur=2.5", "blur=", "blur"])
def test_a_bad_blur_is_refused(operation):
    error = refused(parse_operations, [operation])

    assert "blur" in error.message


def test_the_other_operations_keep_the_ops_grammar():
    assert pipeline_of("crop=0,0,10,10", "rotate=90", "flip=h", "grayscale", "quality=80") == (
        "crop:0,0,10,10|rotate:90|flip:h|grayscale|quality:80"
    )


def test_an_unknown_operation_is_refused_naming_it_and_its_position():
    error = refused(parse_operations, ["resize=50", "blur=3", "sharpen=2"])

    assert "'sharpen'" in error.message
    assert "operation 3" in error.message


@pytest.mark.parametrize("operations", ["resize=50", [1], ["resize=50", None], {"resize": 50}, None])
def test_operations_must_be_a_list_of_strings(operations):
    error = refused(parse_operations, operations)

    assert "operations must be a list of strings" in error.message


def test_no_operations_is_a_plain_copy():
    assert pipeline_of() == ""
    assert parse_request({"images": [{"input": "a.jpg", "output": "a.png"}]}).operations == ()


# -- limits --------------------------------------------------------------------------------------


def test_at_most_the_limit_of_operations():
    parse_operations(["rotate=90"] * 20)

    error = refused(parse_operations, ["rotate=90"] * 21)

    assert error.message == "21 operations; the limit is 20"


def test_the_operations_limit_is_the_callers():
    limits = JobLimits(max_operations=2)
    parse_operations(["rotate=90", "grayscale"], limits)

    error = refused(parse_operations, ["rotate=90", "grayscale", "blur=3"], limits)

    assert "the limit is 2" in error.message


def test_at_most_1000_images_in_a_job():
    outputs = [f"out/{n}.png" for n in range(1001)]
    assert len(parse_request(body(*outputs[:1000])).items) == 1000

    error = refused(parse_request, body(*outputs))

    assert error.message == "1001 images in one job; the limit is 1000"


# -- the request ---------------------------------------------------------------------------------


def test_a_request_keeps_items_in_order_and_the_operations_as_written():
    request = parse_request(body("a.png", "thumbs/b.jpg", operations=["resize=50", "split=True"]))

    assert [(item.input, item.output) for item in request.items] == [
        ("photo-0.jpg", "a.png"),
        ("photo-1.jpg", "thumbs/b.jpg"),
    ]
    assert request.operations == ("resize=50", "split=True")
    assert str(request.pipeline) == "resize:50%|split"


@pytest.mark.parametrize(
    ("request_body", "reason"),
    [
        ([], "body must be a JSON object"),
        ({"operations": []}, "images must be a non-empty list"),
        ({"images": []}, "images must be a non-empty list"),
        ({"images": {"input": "a", "output": "b"}}, "images must be a non-empty list"),
        ({"images": [{"input": "a", "output": "b"}], "priority": 1}, "unknown field(s): priority"),
    ],
)
def test_a_malformed_body_is_refused(request_body, reason):
    assert reason in refused(parse_request, request_body).message


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("a.png", "each image is"),
        ({"output": "a.png"}, "each image is"),
        ({"input": "x", "output": "a.png", "extra": 1}, "each image is"),
        ({"input": "", "output": "a.png"}, "input must be"),
        ({"input": "   ", "output": "a.png"}, "input must be"),
        ({"input": 5, "output": "a.png"}, "input must be"),
        ({"input": "x" * 1025, "output": "a.png"}, "input must be"),
        ({"input": "x"}, "output must be"),
        ({"input": "x", "output": 5}, "output must be"),
    ],
)
def test_an_item_error_names_the_item(entry, reason):
    request_body = {"images": [{"input": "good.jpg", "output": "good.png"}, entry]}

    error = refused(parse_request, request_body)

    assert error.message.startswith("images[1]: ")
    assert reason in error.message


def test_an_operation_error_comes_before_any_item_error():
    request_body = {"images": ["not an item"], "operations": ["resize=500"]}

    assert "operations[0]" in refused(parse_request, request_body).message


# -- outputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output",
    [
        "a.png",
        "thumbs/a.jpg",
        "x/y/z/a.JPEG",
        "a.tif",
        "a.webp",
        "no-extension",
        "a_b-c.d.gif",
        "a..png",
        "x" * 196 + ".png",
    ],
)
def test_an_output_is_a_relative_name(output):
    assert check_output(output, "images[0]") == output


def test_an_output_is_stripped_of_surrounding_space():
    assert check_output("  a.png ", "images[0]") == "a.png"


@pytest.mark.parametrize("output", ["..", "../a.png", "a/../b.png", "a/..", "./a.png", "a/./b.png", "/a.png", "/"])
def test_an_output_that_leaves_the_jobs_prefix_is_refused(output):
    error = refused(check_output, output, "images[3]")

    assert error.message.startswith("images[3]: ")
    assert "must stay under the job's prefix" in error.message


@pytest.mark.parametrize("output", ["a//b.png", "a/", "a/b/"])
def test_an_output_with_an_empty_segment_is_refused(output):
    assert "no empty segments" in refused(check_output, output, "images[0]").message


@pytest.mark.parametrize("output", ["", "a b.png", "a\\b.png", "é.png", "a\n.png", "a?.png", "a:b.png", "x" * 201])
def test_an_output_with_other_characters_or_too_long_is_refused(output):
    error = refused(check_output, output, "images[0]")

    assert "must be 1-200 characters of letters, digits" in error.message


@pytest.mark.parametrize("output", ["a.txt", "a.jpe", "thumbs/a.heic", "a.PDF"])
def test_an_output_with_an_extension_we_do_not_write_is_refused(output):
    error = refused(check_output, output, "images[0]")

    assert "no format we write" in error.message


def test_an_output_error_in_a_request_names_the_item():
    error = refused(parse_request, body("ok.png", "ok2.png", "../escape.png"))

    assert error.message.startswith("images[2]: output '../escape.png'")


def test_two_items_writing_the_same_output_are_refused():
    error = refused(parse_request, body("a.png", "b.png", "a.png"))

    assert error.message == "images[2]: output 'a.png' is written by another image of this job"


def test_outputs_differing_only_in_the_case_of_the_extension_are_the_same_output():
    assert "is written by another image" in refused(parse_request, body("a.png", "a.PNG")).message


def test_split_outputs_clashing_with_another_items_are_refused_naming_a_quarter():
    error = refused(parse_request, body("a.png", "A.png", "a.PNG", operations=["split=True"]))

    assert error.message == "images[2]: output 'a-bottom-left.png' is written by another image of this job"


def test_a_split_item_never_writes_its_output_name_itself():
    request = parse_request(body("a.png", "a-top-right.png", operations=["split=True"]))

    assert [item.output for item in request.items] == ["a.png", "a-top-right.png"]


def test_the_same_output_name_in_other_folders_is_fine():
    assert len(parse_request(body("a/x.png", "b/x.png", "x.png")).items) == 3


# -- output_names --------------------------------------------------------------------------------


def test_without_a_split_an_item_writes_its_output():
    assert output_names("thumbs/a.png", parse_operations(["resize=50"])) == ["thumbs/a.png"]


def test_a_split_writes_four_outputs_with_the_quarter_before_the_extension():
    names = output_names("thumbs/a.png", parse_operations(["split=True"]))

    assert names == [f"thumbs/a{quarter}.png" for quarter in QUARTERS]


def test_an_output_without_extension_takes_the_given_one():
    no_split, split = parse_operations([]), parse_operations(["split=1"])

    assert output_names("a", no_split, "jpg") == ["a.jpg"]
    assert output_names("a", split, "jpg") == [f"a{quarter}.jpg" for quarter in QUARTERS]
    assert output_names("a", split) == [f"a{quarter}" for quarter in QUARTERS]


def test_an_outputs_own_extension_wins_over_the_given_one():
    assert output_names("dir.v2/a.webp", parse_operations([]), "png") == ["dir.v2/a.webp"]


def test_a_dot_in_a_folder_name_is_no_extension():
    assert output_names("dir.v2/a", parse_operations(["split=1"]), "png")[0] == "dir.v2/a-top-left.png"


# -- Counts.status -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "status"),
    [
        (Counts(queued=3), JobStatus.QUEUED),
        (Counts(queued=2, cancelled=1), JobStatus.QUEUED),
        (Counts(queued=2, running=1), JobStatus.RUNNING),
        (Counts(running=3), JobStatus.RUNNING),
        (Counts(queued=2, done=1), JobStatus.RUNNING),
        (Counts(queued=2, failed=1), JobStatus.RUNNING),
        (Counts(running=1, done=1, failed=1), JobStatus.RUNNING),
        (Counts(running=1, cancelled=2), JobStatus.RUNNING),
        (Counts(done=3), JobStatus.DONE),
        (Counts(failed=3), JobStatus.FAILED),
        (Counts(failed=1, cancelled=2), JobStatus.FAILED),
        (Counts(done=2, failed=1), JobStatus.PARTIAL),
        (Counts(done=1, cancelled=2), JobStatus.PARTIAL),
        (Counts(done=1, failed=1, cancelled=1), JobStatus.PARTIAL),
        (Counts(cancelled=3), JobStatus.CANCELLED),
    ],
)
def test_a_jobs_status_follows_its_counts(counts, status):
    assert counts.status() is status


def test_counts_total_every_state():
    assert Counts(queued=1, running=2, done=3, failed=4, cancelled=5).total == 15
