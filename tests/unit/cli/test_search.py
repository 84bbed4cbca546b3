"""`aperture search` and `aperture reindex` without a stack: what is sent, the table, paging
through the team's images, which images are re-embedded, retries, the summary and the exit
code. HTTP goes to the fake API of test_jobs.py, which answers by method and path."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from aperture import cli
from aperture.cli import _retry as cli_retry
from aperture.cli import search as cli_search
from tests.unit.cli.test_jobs import FakeApi, invoke

MODEL = "cloud:multimodalembedding@001:512"
OLD = "local:minilm-efficientnet:384"


@pytest.fixture
def api(monkeypatch):
    fake = FakeApi()
    monkeypatch.setattr(cli, "_opener", fake)
    monkeypatch.setattr(cli_retry, "_sleep", lambda seconds: None)
    return fake


def query(request) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.full_url).query))


def ident(n: int) -> str:
    return f"{n:x}" * 64 if n < 16 else f"{n:064x}"


def image(n: int, status: str = "processed", model: str | None = MODEL) -> dict:
    view = {"id": ident(n), "filename": f"img-{n}.jpg", "status": status, "format": "JPEG", "labels": ["x"]}
    if model is not None:
        view["embedding_model"] = model
    return view


def summary(stdout: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in stdout.splitlines() if line.strip())


def embedding(n: int) -> str:
    return f"/v1/images/{ident(n)}/embedding"


def changed(n: int, value: bool = True) -> tuple[int, dict]:
    return 200, {"id": ident(n), "embedding_model": MODEL, "changed": value}


def error(status: int, message: str) -> tuple[int, dict]:
    return status, {"error": {"code": status, "message": message}}


# -- search ------------------------------------------------------------------------------

HITS = {
    "embedding_model": MODEL,
    "results": [
        {"id": ident(1), "score": 0.3123456, "filename": "coffee.jpg", "labels": ["cup", "espresso"], "format": "JPEG"},
        {"id": ident(2), "score": 0.05, "filename": "cat.jpg", "labels": [], "format": "JPEG"},
    ],
}


def test_search_prints_score_id_filename_and_labels(api):
    api.on("GET", "/v1/search", (200, HITS))

    result = invoke("search", "cup of coffee")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SCORE", "ID", "FILENAME", "LABELS"]
    assert lines[1].split(None, 3) == ["0.312", ident(1), "coffee.jpg", "cup, espresso"]
    assert lines[2].split() == ["0.050", ident(2), "cat.jpg", "-"]
    assert query(api.requests[0]) == {"q": "cup of coffee"}  # the API's defaults for the rest
    assert result.stderr == ""


def test_search_sends_its_options(api):
    api.on("GET", "/v1/search", (200, HITS))

    result = invoke(
        "search", "a cat & a dog?", "--limit", "5", "--min-score", "0.00001", "--format", "png", "--camera", "Canon EOS"
    )

    assert result.exit_code == 0, result.output
    assert query(api.requests[0]) == {
        "q": "a cat & a dog?",
        "limit": "5",
        "min_score": "0.00001",  # never 1e-05, which the API would refuse
        "format": "png",
        "camera": "Canon EOS",
    }


@pytest.mark.parametrize(
    "value, sent", [(-1.0, "-1"), (0.0, "0"), (-0.0, "0"), (0.35, "0.35"), (1.0, "1"), (1e-12, "0"), (-0.5, "-0.5")]
)
def test_min_score_is_sent_as_a_plain_decimal(value, sent):
    assert cli_search.decimal(value) == sent


def test_search_json_is_the_apis_answer(api):
    api.on("GET", "/v1/search", (200, HITS))

    result = invoke("search", "coffee", "--json")

    assert result.exit_code == 0 and json.loads(result.stdout) == HITS


def test_no_results_says_so_and_how_to_see_more(api):
    api.on("GET", "/v1/search", (200, {"embedding_model": MODEL, "results": []}))

    plain = invoke("search", "zebra")
    explicit = invoke("search", "zebra", "--min-score", "0.5")

    assert plain.exit_code == 0 and plain.stdout.strip() == "no results"
    assert "--min-score lowers it" in plain.stderr
    assert explicit.stdout.strip() == "no results" and explicit.stderr == ""


def test_the_apis_refusal_is_shown_and_exits_1(api):
    api.on("GET", "/v1/search", error(400, "q must be a non-empty search text"))

    result = invoke("search", "   ")

    assert result.exit_code == 1 and result.stderr.strip() == "error 400: q must be a non-empty search text"


@pytest.mark.parametrize("args", [["--limit", "0"], ["--limit", "101"], ["--min-score", "2"], ["--min-score", "x"], []])
def test_bad_options_exit_2_before_anything_is_sent(api, args):
    result = invoke("search", *(["coffee"] if args else []), *args)

    assert result.exit_code == 2 and api.requests == []


# -- reindex -----------------------------------------------------------------------------


def model_answer(model: str = MODEL) -> tuple[int, dict]:
    return 200, {"embedding_model": model, "default_min_score": 0.08}


def test_reindex_re_embeds_the_processed_images_of_another_model_across_pages(api):
    api.on("GET", "/v1/search/model", model_answer())
    api.on(
        "GET",
        "/v1/images",
        (200, {"images": [image(1), image(2, model=OLD), image(3, "pending", None)], "next_cursor": "c1"}),
        (200, {"images": [image(4, model=None), image(5, "failed", None), image(6, model=OLD)], "next_cursor": None}),
    )
    for n in (2, 4, 6):
        api.on("POST", embedding(n), changed(n))

    result = invoke("reindex")

    assert result.exit_code == 0, result.output
    posted = [urllib.parse.urlsplit(r.full_url).path for r in api.requests if r.get_method() == "POST"]
    assert posted == [embedding(2), embedding(4), embedding(6)]
    pages = [query(r) for r in api.sent("GET", "/v1/images")]
    assert pages == [{"limit": "200"}, {"limit": "200", "cursor": "c1"}]
    assert summary(result.stdout) == {
        "embedding_model": MODEL,
        "images": "6",
        "to_reembed": "3",
        "reembedded": "3",
        "already_current": "1",
        "not_processed": "2",
        "deleted": "0",
        "failed": "0",
    }
    assert "6 images: 3 to re-embed, 1 already current, 2 not processed" in result.stderr
    assert "re-embedding" in result.stderr  # the progress bar's label, off a terminal


def test_a_second_run_finds_everything_current_and_sends_nothing(api):
    api.on("GET", "/v1/search/model", model_answer())
    api.on("GET", "/v1/images", (200, {"images": [image(1), image(2), image(3, "pending", None)]}))

    result = invoke("reindex")

    assert result.exit_code == 0, result.output
    assert [r.get_method() for r in api.requests] == ["GET", "GET"]
    printed = summary(result.stdout)
    assert (printed["reembedded"], printed["already_current"], printed["not_processed"]) == ("0", "2", "1")


def test_what_the_api_answers_for_each_image_is_counted(api):
    api.on("GET", "/v1/search/model", model_answer())
    api.on("GET", "/v1/images", (200, {"images": [image(n, model=OLD) for n in range(1, 6)]}))
    api.on("POST", embedding(1), changed(1))
    api.on("POST", embedding(2), changed(2, False))  # someone else re-embedded it meanwhile
    api.on("POST", embedding(3), error(409, "this image is pending; only processed images are re-embedded"))
    api.on("POST", embedding(4), error(404, "image not found"))  # deleted meanwhile
    api.on("POST", embedding(5), error(503, "busy"), error(429, "slow down"), changed(5))  # ridden out

    result = invoke("reindex")

    assert result.exit_code == 0, result.output
    printed = summary(result.stdout)
    assert (printed["reembedded"], printed["already_current"], printed["not_processed"], printed["deleted"]) == (
        "2",
        "1",
        "1",
        "1",
    )
    assert len(api.sent("POST", embedding(5))) == 3


def test_failures_are_listed_and_exit_1_after_the_others_are_done(api):
    api.on("GET", "/v1/search/model", model_answer())
    api.on("GET", "/v1/images", (200, {"images": [image(1, model=OLD), image(2, model=OLD), image(3, model=OLD)]}))
    api.on("POST", embedding(1), error(500, "internal error (request id abc)"))  # keeps failing
    api.on("POST", embedding(2), error(422, "cannot decode the image"))  # not retried
    api.on("POST", embedding(3), changed(3))

    result = invoke("reindex")

    assert result.exit_code == 1
    printed = summary(result.stdout)
    assert (printed["reembedded"], printed["failed"]) == ("1", "2")
    assert f"{ident(1)} (img-1.jpg): error 500: internal error (request id abc)" in result.stderr
    assert f"{ident(2)} (img-2.jpg): error 422: cannot decode the image" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        "error: 2 of 3 images were not re-embedded; run `aperture reindex`"
    )
    assert len(api.sent("POST", embedding(1))) == cli_search.RETRIES + 1
    assert len(api.sent("POST", embedding(2))) == 1


def test_a_key_that_stops_working_stops_the_run(api):
    api.on("GET", "/v1/search/model", model_answer())
    api.on("GET", "/v1/images", (200, {"images": [image(1, model=OLD), image(2, model=OLD)]}))
    api.on("POST", embedding(1), error(401, "invalid API key"))

    result = invoke("reindex")

    assert result.exit_code == 1 and result.stderr.splitlines()[-1] == "error 401: invalid API key"
    assert api.sent("POST", embedding(2)) == []


def test_dry_run_counts_and_changes_nothing(api):
    api.on("GET", "/v1/search/model", model_answer())
    api.on("GET", "/v1/images", (200, {"images": [image(1), image(2, model=OLD), image(3, model=OLD)]}))

    result = invoke("reindex", "--dry-run", "--json")

    assert result.exit_code == 0, result.output
    assert [r.get_method() for r in api.requests] == ["GET", "GET"]
    assert json.loads(result.stdout) == {
        "embedding_model": MODEL,
        "images": 3,
        "to_reembed": 2,
        "reembedded": 0,
        "already_current": 1,
        "not_processed": 0,
        "deleted": 0,
        "failed": 0,
        "failures": [],
        "dry_run": True,
    }


def test_json_lists_every_failure(api):
    api.on("GET", "/v1/search/model", model_answer())
    api.on("GET", "/v1/images", (200, {"images": [image(1, model=OLD)]}))
    api.on("POST", embedding(1), error(400, "nope"))

    result = invoke("--json", "reindex")

    assert result.exit_code == 1
    assert json.loads(result.stdout)["failures"] == [{"id": ident(1), "error": "error 400: nope"}]


def test_reindex_without_the_search_function_fails_at_once(api):
    api.on("GET", "/v1/search/model", error(404, "no route for /v1/search/model"))

    result = invoke("reindex")

    assert result.exit_code == 1 and result.stderr.strip() == "error 404: no route for /v1/search/model"
    assert len(api.requests) == 1


def test_paging_rides_out_a_transient_error(api):
    api.on("GET", "/v1/search/model", model_answer())
    api.on(
        "GET",
        "/v1/images",
        (200, {"images": [image(1)], "next_cursor": "c1"}),
        error(503, "busy"),
        (200, {"images": [image(2)], "next_cursor": None}),
    )

    result = invoke("reindex")

    assert result.exit_code == 0, result.output
    assert summary(result.stdout)["already_current"] == "2"
    assert [query(r).get("cursor") for r in api.sent("GET", "/v1/images")] == [None, "c1", "c1"]


def test_ctrl_c_stops_with_130_and_says_how_to_go_on(api, monkeypatch):
    api.on("GET", "/v1/search/model", model_answer())
    api.on("GET", "/v1/images", (200, {"images": [image(1, model=OLD), image(2, model=OLD)]}))
    api.on("POST", embedding(1), changed(1))
    answer = api.open

    def interrupted(request, timeout):
        if request.full_url.endswith(embedding(2)):
            raise KeyboardInterrupt
        return answer(request, timeout)

    monkeypatch.setattr(api, "open", interrupted)

    result = invoke("reindex")

    assert result.exit_code == 130 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "stopped after 1 re-embedded; run `aperture reindex` again to go on (images already re-embedded are skipped)"
    )


def test_no_key_exits_2_before_anything_is_sent(api):
    result = invoke("reindex", APERTURE_API_KEY=None)

    assert result.exit_code == 2 and result.stderr.startswith("error: no API key") and api.requests == []
