"""`aperture jobs ...` without a stack: reading the job file, finding and uploading local
inputs, watching, downloading (and refusing names that leave --out), listing. HTTP goes
to a fake API that answers by method and path."""

from __future__ import annotations

import io
import json
import os
import urllib.error
import urllib.parse
from email.message import Message
from pathlib import Path

import pytest
from click.testing import CliRunner

from aperture import cli
from aperture.cli import _retry as cli_retry
from aperture.cli import jobs as cli_jobs

KEY = "apk_" + "k" * 43
CLEAN = {"APERTURE_URL": None, "GATEWAY_URL": None, "APERTURE_API_KEY": None, "DEMO_API_KEY": None}
BASE = "http://127.0.0.1:8080"
JOB = "job_0123456789abcdef0123"
IMAGE_ID = "a" * 64
QUARTERS = ("top-left", "top-right", "bottom-left", "bottom-right")


class FakeAnswer(io.BytesIO):
    def __init__(self, status: int, body: bytes):
        super().__init__(body)
        self.status, self.headers = status, Message()


class FakeApi:
    """Answers (method, path) with the answers given to `on`, in order (the last one repeats)."""

    def __init__(self):
        self.routes: dict[tuple[str, str], list[tuple[int, object]]] = {}
        self.requests = []

    def on(self, method: str, path: str, *answers: tuple[int, object]) -> None:
        self.routes[(method, path)] = list(answers)

    def open(self, request, timeout):
        self.requests.append(request)
        key = (request.get_method(), urllib.parse.urlsplit(request.full_url).path)
        answers = self.routes.get(key)
        if not answers:
            raise AssertionError(f"unexpected request {key}")
        status, body, *extra = answers.pop(0) if len(answers) > 1 else answers[0]
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        if status >= 300:
            headers = Message()
            for name, value in (extra[0] if extra else {}).items():
                headers[name] = value
            raise urllib.error.HTTPError(request.full_url, status, "Reason", headers, io.BytesIO(raw))
        return FakeAnswer(status, raw)

    def sent(self, method: str, path: str) -> list:
        return [r for r in self.requests if (r.get_method(), urllib.parse.urlsplit(r.full_url).path) == (method, path)]


@pytest.fixture
def api(monkeypatch):
    fake = FakeApi()
    monkeypatch.setattr(cli, "_opener", fake)
    monkeypatch.setattr(cli_jobs, "_sleep", lambda seconds: None)
    monkeypatch.setattr(cli_retry, "_sleep", lambda seconds: None)
    return fake


def invoke(*args: str, **env: str | None):
    return CliRunner().invoke(cli.main, list(args), env={**CLEAN, "APERTURE_API_KEY": KEY, **env})


def job(status: str, items: list[dict] | None = None, **counts: int) -> dict:
    all_counts = {"queued": 0, "running": 0, "done": 0, "failed": 0, "cancelled": 0, **counts}
    view = {
        "job_id": JOB,
        "status": status,
        "total": sum(all_counts.values()),
        "counts": all_counts,
        "operations": ["resize=50", "split=True"],
        "created_at": "2026-01-02T03:04:05.123Z",
        "status_url": f"{BASE}/v1/jobs/{JOB}",
    }
    if items is not None:
        view["items"] = items
    return view


def item(index: int, state: str, outputs: list[str] = (), error: str | None = None, source: str = IMAGE_ID) -> dict:
    view = {
        "index": index,
        "input": source,
        "image_id": IMAGE_ID,
        "output": "x.png",
        "state": state,
        "attempts": 1,
        "outputs": [{"name": n, "url": f"{BASE}/v1/jobs/{JOB}/outputs/{n}"} for n in outputs],
    }
    if error:
        view["error"] = error
    return view


def multipart_files(request) -> list[tuple[str | None, bytes]]:
    """The file parts of a request as the API's own parser reads them."""
    from aperture.api.multipart import read_file_parts

    parts = read_file_parts(io.BytesIO(request.data), request.get_header("Content-type"), ("files",), max_parts=500)
    return [(part.filename, part.data) for part in parts]


def write_job(folder: Path, body: object, name: str = "job.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(body))
    return path


# -- the job file ---------------------------------------------------------------------


def test_a_job_file_that_is_not_json_exits_2_before_anything_is_sent(api, tmp_path):
    path = tmp_path / "job.json"
    path.write_text('{"images": [')

    result = invoke("jobs", "submit", str(path))

    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path} is not valid JSON: ")
    assert api.requests == []


def test_a_missing_job_file_is_a_usage_error(api, tmp_path):
    result = invoke("jobs", "submit", str(tmp_path / "nope.json"))

    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert api.requests == []


def test_no_key_exits_2_before_reading_or_sending(api, tmp_path):
    path = write_job(tmp_path, {"images": []})

    result = invoke("jobs", "submit", str(path), APERTURE_API_KEY=None)

    assert result.exit_code == 2 and result.stderr.startswith("error: no API key")
    assert api.requests == []


def test_local_inputs_resolve_against_the_json_files_folder(tmp_path, monkeypatch):
    folder = tmp_path / "batch"
    (folder / "pics").mkdir(parents=True)
    (folder / "pics" / "a.png").write_bytes(b"a")
    (folder / "sub").mkdir()
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(b"e")
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "pics").mkdir()
    (tmp_path / "cwd" / "pics" / "b.png").write_bytes(b"b")  # only relative to the working directory
    monkeypatch.chdir(tmp_path / "cwd")
    body = {
        "images": [
            {"input": "pics/a.png", "output": "1.png"},
            {"input": IMAGE_ID, "output": "2.png"},
            {"input": str(elsewhere), "output": "3.png"},
            {"input": "pics/b.png", "output": "4.png"},
            {"input": "sub", "output": "5.png"},  # a folder is not a file
            {"input": "teams/t/abc.png", "output": "6.png"},
            {"input": "nul\x00.png", "output": "7.png"},
            "not an object",
            {"input": 7, "output": "9.png"},
        ]
    }

    found = cli_jobs.local_inputs(body, folder)

    assert [(f.index, f.written, f.path) for f in found] == [
        (0, "pics/a.png", (folder / "pics" / "a.png").resolve()),
        (2, str(elsewhere), elsewhere.resolve()),
    ]


@pytest.mark.parametrize("body", [[], "x", {"images": "a.png"}, {"operations": []}])
def test_bodies_of_another_shape_have_no_local_inputs(tmp_path, body):
    (tmp_path / "a.png").write_bytes(b"a")

    assert cli_jobs.local_inputs(body, tmp_path) == []


def test_batches_respect_the_file_and_byte_limits():
    sizes = [(Path(f"{n}"), size) for n, size in enumerate([10, 10, 10, 50, 5, 200, 1])]

    assert [[p.name for p in batch] for batch in cli_jobs.batches(sizes, max_files=2, max_bytes=60)] == [
        ["0", "1"],
        ["2", "3"],
        ["4"],
        ["5"],  # larger than a request: alone, and the API decides
        ["6"],
    ]


def test_multipart_bodies_parse_with_the_apis_own_parser():
    files = [("a.png", b"\x89PNG\r\n--not-a-boundary\r\n"), ('qu"ote\r\n.png', b""), ("caf\u00e9.jpg", b"\xff\xd8")]

    body, content_type = cli_jobs.multipart(files)

    class Request:
        data = body

        @staticmethod
        def get_header(name):
            return content_type

    assert multipart_files(Request) == [
        ("a.png", files[0][1]),
        ("qu%22ote%0D%0A.png", b""),
        ("caf\u00e9.jpg", b"\xff\xd8"),
    ]


# -- submit ---------------------------------------------------------------------------


def accepted(total: int = 2) -> tuple[int, dict]:
    return 202, {"job_id": JOB, "status_url": f"{BASE}/v1/jobs/{JOB}", "status": "queued", "total": total}


def test_submit_uploads_local_files_and_sends_their_ids(api, tmp_path):
    folder = tmp_path / "batch"
    (folder / "pics").mkdir(parents=True)
    (folder / "pics" / "one.png").write_bytes(b"one")
    body = {
        "images": [
            {"input": "pics/one.png", "output": "out/one.png"},
            {"input": IMAGE_ID, "output": "out/two.png"},
            {"input": str(folder / "pics" / "one.png"), "output": "out/again.png"},  # the same file: uploaded once
        ],
        "operations": ["resize=50"],
    }
    path = write_job(folder, body)
    uploaded = {"filename": "one.png", "id": "b" * 64, "status": "created"}
    api.on("POST", "/v1/images", (201, {"files": [uploaded], "mapping": {"one.png": "b" * 64}}))
    api.on("POST", "/v1/jobs", accepted(3))

    result = invoke("jobs", "submit", str(path))

    assert result.exit_code == 0, result.output
    [upload] = api.sent("POST", "/v1/images")
    assert multipart_files(upload) == [("one.png", b"one")]
    assert upload.get_header("X-api-key") == KEY
    [submit] = api.sent("POST", "/v1/jobs")
    assert json.loads(submit.data) == {
        "images": [
            {"input": "b" * 64, "output": "out/one.png"},
            {"input": IMAGE_ID, "output": "out/two.png"},
            {"input": "b" * 64, "output": "out/again.png"},
        ],
        "operations": ["resize=50"],
    }
    printed = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert printed == {"job_id": JOB, "status": "queued", "total": "3", "status_url": f"{BASE}/v1/jobs/{JOB}"}
    assert "uploading 1 local file (3 bytes)" in result.stderr and "uploaded: 1 new, 0 already there" in result.stderr
    assert json.loads(path.read_text()) == body  # the file itself is left as it was


def test_submit_without_local_files_uploads_nothing_and_prints_json(api, tmp_path):
    path = write_job(tmp_path, {"images": [{"input": IMAGE_ID, "output": "o.png"}], "operations": ["blur=5"]})
    api.on("POST", "/v1/jobs", accepted(1))

    result = invoke("--json", "jobs", "submit", str(path))

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["job_id"] == JOB
    assert [r.get_method() for r in api.requests] == ["POST"] and result.stderr == ""


def test_submit_reads_stdin_with_inputs_relative_to_the_working_directory(api, tmp_path, monkeypatch):
    (tmp_path / "here.png").write_bytes(b"here")
    monkeypatch.chdir(tmp_path)
    api.on("POST", "/v1/images", (200, {"files": [{"filename": "here.png", "id": "c" * 64, "status": "duplicate"}]}))
    api.on("POST", "/v1/jobs", accepted(1))
    body = json.dumps({"images": [{"input": "here.png", "output": "o.png"}], "operations": []})

    result = CliRunner().invoke(cli.main, ["jobs", "submit", "-"], input=body, env={**CLEAN, "APERTURE_API_KEY": KEY})

    assert result.exit_code == 0, result.output
    assert json.loads(api.sent("POST", "/v1/jobs")[0].data)["images"][0]["input"] == "c" * 64
    assert "0 new, 1 already there" in result.stderr


def test_uploads_go_in_several_requests(api, tmp_path, monkeypatch):
    monkeypatch.setattr(cli_jobs, "UPLOAD_MAX_FILES", 2)
    for n in range(5):
        (tmp_path / f"{n}.png").write_bytes(b"x" * n)
    path = write_job(tmp_path, {"images": [{"input": f"{n}.png", "output": f"{n}.png"} for n in range(5)]})

    def uploaded(*numbers):
        return 201, {"files": [{"filename": f"{n}.png", "id": f"{n}" * 64, "status": "created"} for n in numbers]}

    api.on("POST", "/v1/images", uploaded(0, 1), uploaded(2, 3), uploaded(4))
    api.on("POST", "/v1/jobs", accepted(5))

    result = invoke("jobs", "submit", str(path))

    assert result.exit_code == 0, result.output
    assert [[name for name, _ in multipart_files(r)] for r in api.sent("POST", "/v1/images")] == [
        ["0.png", "1.png"],
        ["2.png", "3.png"],
        ["4.png"],
    ]
    sent = json.loads(api.sent("POST", "/v1/jobs")[0].data)
    assert [i["input"] for i in sent["images"]] == [f"{n}" * 64 for n in range(5)]


def test_a_refused_file_stops_before_the_job_is_submitted(api, tmp_path):
    (tmp_path / "good.png").write_bytes(b"g")
    (tmp_path / "notes.txt").write_bytes(b"n")
    path = write_job(
        tmp_path, {"images": [{"input": "good.png", "output": "g.png"}, {"input": "notes.txt", "output": "n.png"}]}
    )
    answer = {
        "files": [
            {"filename": "good.png", "id": "d" * 64, "status": "created"},
            {"filename": "notes.txt", "id": None, "status": "rejected", "error": "not an image", "status_code": 422},
        ],
        "mapping": {"good.png": "d" * 64},
    }
    api.on("POST", "/v1/images", (201, answer))

    result = invoke("jobs", "submit", str(path))

    assert result.exit_code == 1
    assert "refused 1 of the job's local files; the job was not submitted" in result.stderr
    assert "  notes.txt: error 422: not an image" in result.stderr
    assert api.sent("POST", "/v1/jobs") == []


def test_a_refused_upload_request_shows_the_apis_message_and_the_files(api, tmp_path):
    (tmp_path / "big.tif").write_bytes(b"b")
    path = write_job(tmp_path, {"images": [{"input": "big.tif", "output": "b.png"}]})
    api.on("POST", "/v1/images", (413, {"error": {"code": 413, "message": "request is 40000000 bytes"}}))

    result = invoke("jobs", "submit", str(path))

    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "error 413: request is 40000000 bytes (uploading big.tif)"
    assert api.sent("POST", "/v1/jobs") == []


def test_a_refused_job_shows_the_apis_400_message(api, tmp_path):
    path = write_job(tmp_path, {"images": [{"input": IMAGE_ID, "output": "a.png"}], "operations": ["frobnicate=1"]})
    message = "operations: unknown operation 'frobnicate' (operation 1)"
    api.on("POST", "/v1/jobs", (400, {"error": {"code": 400, "message": message}}))

    result = invoke("jobs", "submit", str(path))

    assert result.exit_code == 1
    assert result.stderr.strip() == f"error 400: {message}"
    assert result.stdout == ""


# -- watch ------------------------------------------------------------------------------


def test_watch_polls_until_done_and_exits_0(api):
    api.on(
        "GET",
        f"/v1/jobs/{JOB}",
        (200, job("queued", [item(0, "queued"), item(1, "queued")], queued=2)),
        (200, job("running", [item(0, "done", ["a.png"]), item(1, "running")], done=1, running=1)),
        (200, job("done", [item(0, "done", ["a.png"]), item(1, "done", ["b.png"])], done=2)),
    )

    result = invoke("jobs", "watch", JOB)

    assert result.exit_code == 0, result.output
    assert len(api.sent("GET", f"/v1/jobs/{JOB}")) == 3
    printed = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert printed["status"] == "done" and printed["items"] == "2: 2 done, 0 failed, 0 cancelled"
    assert printed["created"] == "2026-01-02 03:04:05Z"
    assert f"{JOB} queued" in result.stderr and f"{JOB} done" in result.stderr  # the bar's label, off a terminal


def test_watch_of_a_partial_job_prints_each_problem_and_exits_1(api):
    items = [
        item(0, "done", ["a.png"]),
        item(1, "failed", error="gave up after 5 deliveries: boom"),
        item(2, "cancelled", source="teams/t/x.png"),
    ]
    api.on("GET", f"/v1/jobs/{JOB}", (200, job("partial", items, done=1, failed=1, cancelled=1)))

    result = invoke("jobs", "watch", JOB)

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert f"images[1] ({IMAGE_ID}): failed: gave up after 5 deliveries: boom" in lines
    assert "images[2] (teams/t/x.png): cancelled" in lines
    assert lines[-1] == f"error: job {JOB} ended partial: 1 done, 1 failed, 1 cancelled of 3"
    assert "status      partial" in result.stdout


def test_watch_lists_at_most_fifty_problems(api):
    items = [item(n, "failed", error="bad") for n in range(60)]
    api.on("GET", f"/v1/jobs/{JOB}", (200, job("failed", items, failed=60)))

    result = invoke("jobs", "watch", JOB)

    problems = [line for line in result.stderr.splitlines() if line.startswith("images[")]
    assert len(problems) == 50
    assert f"… and 10 more: aperture jobs get {JOB}" in result.stderr


def test_watch_rides_out_a_few_transient_errors(api):
    api.on(
        "GET",
        f"/v1/jobs/{JOB}",
        (200, job("running", [item(0, "running")], running=1)),
        (503, {"error": {"code": 503, "message": "busy"}}),
        (502, b"<html>bad gateway</html>"),
        (200, job("done", [item(0, "done", ["a.png"])], done=1)),
    )

    result = invoke("jobs", "watch", JOB)

    assert result.exit_code == 0, result.output
    assert len(api.sent("GET", f"/v1/jobs/{JOB}")) == 4


def test_watch_of_a_missing_job_fails_at_once(api):
    api.on("GET", f"/v1/jobs/{JOB}", (404, {"error": {"code": 404, "message": "job not found"}}))

    result = invoke("jobs", "watch", JOB)

    assert result.exit_code == 1 and result.stderr.strip() == "error 404: job not found"
    assert len(api.requests) == 1


def test_watch_gives_up_after_too_many_failures_in_a_row(api):
    api.on(
        "GET",
        f"/v1/jobs/{JOB}",
        (200, job("running", [item(0, "running")], running=1)),
        (503, {"error": {"code": 503, "message": "busy"}}),
    )

    result = invoke("jobs", "watch", JOB)

    assert result.exit_code == 1 and result.stderr.strip().endswith("error 503: busy")
    assert len(api.requests) == 2 + cli_jobs.POLL_RETRIES


def test_submit_watch_json_prints_only_the_finished_job(api, tmp_path):
    path = write_job(tmp_path, {"images": [{"input": IMAGE_ID, "output": "o.png"}], "operations": []})
    api.on("POST", "/v1/jobs", accepted(1))
    api.on("GET", f"/v1/jobs/{JOB}", (200, job("done", [item(0, "done", ["o.png"])], done=1)))

    result = invoke("jobs", "submit", str(path), "--watch", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "done"


# -- get and downloads ----------------------------------------------------------------


def test_get_shows_the_items(api):
    items = [
        item(0, "done", [f"out/a-{q}.png" for q in QUARTERS[:2]]),
        item(1, "failed", error="the input image was deleted"),
    ]
    api.on("GET", f"/v1/jobs/{JOB}", (200, job("partial", items, done=1, failed=1)))

    result = invoke("jobs", "get", JOB)

    assert result.exit_code == 0, result.output
    head, rows = result.stdout.split("\n\n")
    assert "status      partial" in head and "operations  resize=50 split=True" in head
    lines = rows.splitlines()
    assert lines[0].split() == ["INDEX", "INPUT", "STATE", "OUTPUTS", "ERROR"]
    assert lines[1].split() == ["0", IMAGE_ID, "done", "out/a-top-left.png,", "out/a-top-right.png", "-"]
    assert lines[2].split()[:4] == ["1", IMAGE_ID, "failed", "-"]
    assert lines[2].endswith("the input image was deleted")


def test_get_out_downloads_every_output_into_folders(api, tmp_path):
    names = [f"out/a-{q}.png" for q in QUARTERS] + ["top.webp", "deep/er/b c.png"]
    items = [item(0, "done", names[:4]), item(1, "done", names[4:]), item(2, "cancelled")]
    api.on("GET", f"/v1/jobs/{JOB}", (200, job("partial", items, done=2, cancelled=1)))
    for name in names:
        api.on("GET", f"/v1/jobs/{JOB}/outputs/{urllib.parse.quote(name)}", (200, f"bytes of {name}".encode()))
    out = tmp_path / "downloads"

    result = invoke("jobs", "get", JOB, "--out", str(out))

    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(names)
    assert all((out / name).read_bytes() == f"bytes of {name}".encode() for name in names)
    assert "downloaded 6 outputs" in result.stderr
    downloads = [r for r in api.requests if "/outputs/" in r.full_url]
    assert {r.full_url for r in downloads} == {f"{BASE}/v1/jobs/{JOB}/outputs/{urllib.parse.quote(n)}" for n in names}
    assert all(r.get_header("X-api-key") == KEY for r in downloads)


def test_an_output_over_the_gateways_limit_is_fetched_from_its_signed_link_without_the_key(api, tmp_path):
    signed = "https://storage.test/derived/jobs/big.png?X-Goog-Signature=abc"
    api.on("GET", f"/v1/jobs/{JOB}", (200, job("done", [item(0, "done", ["big.png"])], done=1)))
    api.on("GET", f"/v1/jobs/{JOB}/outputs/big.png", (307, b"", {"Location": signed}))
    api.on("GET", "/derived/jobs/big.png", (200, b"the big bytes"))
    out = tmp_path / "downloads"

    result = invoke("jobs", "get", JOB, "--out", str(out))

    assert result.exit_code == 0, result.output
    assert (out / "big.png").read_bytes() == b"the big bytes"
    [fetched] = [r for r in api.requests if r.full_url == signed]
    assert fetched.get_header("X-api-key") is None


@pytest.mark.parametrize("name", ["../escape.png", "/etc/passwd", "a//b.png", "a/./b.png", "a\\..\\b.png", "C:x.png"])
def test_get_out_refuses_names_that_leave_the_folder_and_downloads_nothing(api, tmp_path, name):
    items = [item(0, "done", ["fine.png"]), item(1, "done", [name])]
    api.on("GET", f"/v1/jobs/{JOB}", (200, job("done", items, done=2)))
    out = tmp_path / "out"

    result = invoke("jobs", "get", JOB, "--out", str(out))

    assert result.exit_code == 1
    assert f"error: refusing to download outputs whose names leave {out}" in result.stderr
    assert repr(name) in result.stderr
    assert [r for r in api.requests if "/outputs/" in r.full_url] == []
    assert not out.exists()


def test_a_link_inside_the_folder_cannot_carry_a_download_out(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    os.symlink(outside, out / "sub")

    with pytest.raises(ValueError, match="outside"):
        cli_jobs.target_for(out, "sub/x.png")
    assert cli_jobs.target_for(out, "sub2/x.png") == out / "sub2" / "x.png"


def test_a_failed_download_leaves_no_partial_file_and_exits_1(api, tmp_path):
    items = [item(0, "done", ["ok.png", "gone.png"])]
    api.on("GET", f"/v1/jobs/{JOB}", (200, job("done", items, done=1)))
    api.on("GET", f"/v1/jobs/{JOB}/outputs/ok.png", (200, b"ok"))
    api.on("GET", f"/v1/jobs/{JOB}/outputs/gone.png", (404, {"error": {"code": 404, "message": "output not found"}}))
    out = tmp_path / "out"

    result = invoke("jobs", "get", JOB, "--out", str(out))

    assert result.exit_code == 1
    assert "error: 1 of 2 outputs were not downloaded:\n  gone.png: error 404: output not found" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ok.png"]


# -- ls and cancel ----------------------------------------------------------------------


def test_ls_shows_a_page_and_says_where_the_next_starts(api):
    api.on("GET", "/v1/jobs", (200, {"jobs": [job("running", running=1, done=2)], "next_cursor": JOB}))

    result = invoke("jobs", "ls", "--limit", "1")

    assert result.exit_code == 0, result.output
    assert api.requests[0].full_url == f"{BASE}/v1/jobs?limit=1"
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["JOB_ID", "STATUS", "TOTAL", "DONE", "FAILED", "CANCELLED", "CREATED", "OPERATIONS"]
    assert lines[1].split() == [
        JOB,
        "running",
        "3",
        "2",
        "0",
        "0",
        "2026-01-02",
        "03:04:05Z",
        "resize=50",
        "split=True",
    ]
    assert f"more: aperture jobs ls --cursor {JOB}" in result.stderr


def test_ls_all_follows_the_cursor(api):
    second = dict(job("done", done=1), job_id="job_" + "1" * 20)
    api.on(
        "GET",
        "/v1/jobs",
        (200, {"jobs": [job("done", done=1)], "next_cursor": JOB}),
        (200, {"jobs": [second], "next_cursor": None}),
    )

    result = invoke("--json", "jobs", "list", "--all")  # `list` is `ls`

    assert result.exit_code == 0, result.output
    assert [j["job_id"] for j in json.loads(result.stdout)["jobs"]] == [JOB, second["job_id"]]
    assert [r.full_url for r in api.requests] == [f"{BASE}/v1/jobs", f"{BASE}/v1/jobs?cursor={JOB}"]


def test_ls_without_jobs(api):
    api.on("GET", "/v1/jobs", (200, {"jobs": [], "next_cursor": None}))

    assert invoke("jobs", "ls").stdout == "no jobs\n"


def test_cancel_sends_delete_with_the_id_as_one_segment(api):
    api.on("DELETE", "/v1/jobs/..%2Fkeys", (200, job("cancelled", cancelled=2)))

    result = invoke("jobs", "cancel", "../keys")

    assert result.exit_code == 0, result.output
    assert api.requests[0].full_url == f"{BASE}/v1/jobs/..%2Fkeys"
    assert "status      cancelled" in result.stdout
