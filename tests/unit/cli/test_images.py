"""`aperture upload`, `images ls|get|rm`, `get` and `stats` without a stack, and the retry
helper every command shares. HTTP goes to the fake API of test_jobs.py; uploads are read
by the API's own multipart parser and answered per file, as the API does."""

from __future__ import annotations

import hashlib
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
from aperture.cli import images as cli_images
from tests.unit.cli.test_jobs import BASE, CLEAN, KEY, FakeAnswer, FakeApi

PNG = b"\x89PNG\r\n\x1a\n"
MiB = 1024 * 1024


class UploadApi(FakeApi):
    """A FakeApi that also answers POST /v1/images as the API does: it reads the streamed
    body (checking its Content-Length), parses it with the API's parser and answers each
    part: PNG-looking bytes are created (then duplicate), anything else rejected."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()
        self.uploads: list[list[tuple[str, bytes]]] = []
        self.before_read = None  # called with the request before its body is read
        self.upload_status: list[tuple[int, object]] = []  # answers to give instead, first

    def open(self, request, timeout):
        if (request.get_method(), urllib.parse.urlsplit(request.full_url).path) != ("POST", "/v1/images"):
            return super().open(request, timeout)
        self.requests.append(request)
        if self.before_read:
            self.before_read(request)
        body = request.data.read()  # may raise, as http.client's send would
        assert len(body) == int(request.get_header("Content-length"))
        if self.upload_status:
            status, answer = self.upload_status.pop(0)
            raw = json.dumps(answer).encode()
            if status >= 300:
                raise urllib.error.HTTPError(request.full_url, status, "Reason", Message(), io.BytesIO(raw))
            return FakeAnswer(status, raw)
        from aperture.api.multipart import read_file_parts

        parts = read_file_parts(io.BytesIO(body), request.get_header("Content-type"), ("files",), max_parts=500)
        self.uploads.append([(p.filename, p.data) for p in parts])
        files = []
        for part in parts:
            digest = hashlib.sha256(part.data).hexdigest()
            if not part.data.startswith(PNG):
                files.append({"filename": part.filename, "id": None, "status": "rejected", "error": "not an image"})
                files[-1]["status_code"] = 422
            else:
                files.append(
                    {
                        "filename": part.filename,
                        "id": digest,
                        "status": "duplicate" if digest in self.seen else "created",
                    }
                )
                self.seen.add(digest)
        status = 201 if any(f["status"] == "created" for f in files) else 200
        if all(f["status"] == "rejected" for f in files):
            status = 422
            raise urllib.error.HTTPError(
                request.full_url, 422, "Reason", Message(), io.BytesIO(json.dumps({"files": files}).encode())
            )
        return FakeAnswer(status, json.dumps({"files": files}).encode())

    def sent_files(self) -> list[str]:
        return sorted(name for batch in self.uploads for name, _ in batch)


@pytest.fixture
def api(monkeypatch):
    fake = UploadApi()
    monkeypatch.setattr(cli, "_opener", fake)
    monkeypatch.setattr(cli_retry, "_sleep", lambda seconds: None)
    return fake


def invoke(*args: str, input: str | None = None):  # noqa: A002
    return CliRunner().invoke(cli.main, list(args), env={**CLEAN, "APERTURE_API_KEY": KEY}, input=input)


def image(seed: int) -> bytes:
    return PNG + bytes([seed]) * 10


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def summary(stdout: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in stdout.splitlines() if line.strip())


# -- finding files ----------------------------------------------------------------------


def test_folders_are_walked_sorted_without_hidden_entries_or_links_out_of_the_tree(tmp_path):
    root = tmp_path / "pics"
    write(root / "b.png", image(1))
    write(root / "a" / "z.png", image(2))
    write(root / "a" / "deeper" / "y.png", image(3))
    write(root / ".hidden.png", image(4))
    write(root / ".git" / "x.png", image(5))
    outside = write(tmp_path / "outside" / "secret.png", image(6))
    (root / "out.png").symlink_to(outside)
    (root / "outdir").symlink_to(outside.parent, target_is_directory=True)
    (root / "inside.png").symlink_to(root / "b.png")  # the same file again: sent once
    (root / "broken.png").symlink_to(tmp_path / "nothing")
    write(root / "a" / "c.png", image(7))
    (root / "same.png").symlink_to(root / "a" / "c.png")

    found, notes = cli_images.collect([str(root)])

    assert [f.shown for f in found] == [  # a folder's files, then its folders; a link inside the tree is
        str(root / "b.png"),  # followed (the file is sent once, under the first name met)
        str(root / "same.png"),
        str(root / "a" / "z.png"),
        str(root / "a" / "deeper" / "y.png"),
    ]
    assert notes == [
        f"skipped {root / 'broken.png'}: a broken symbolic link",
        f"skipped {root / 'out.png'}: a symbolic link out of {root}",
    ]
    assert all(not f.done for f in found)


def test_named_files_are_taken_as_they_are_and_only_once(tmp_path):
    hidden = write(tmp_path / ".named.png", image(1))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    found, _ = cli_images.collect([str(hidden), str(tmp_path / ".named.png"), str(fifo)])

    assert [(f.shown, f.result.get("error")) for f in found] == [(str(hidden), None), (str(fifo), "not a regular file")]


# -- upload -----------------------------------------------------------------------------


def test_upload_summarises_created_duplicate_and_rejected_and_exits_1(api, tmp_path):
    write(tmp_path / "a.png", image(1))
    write(tmp_path / "sub" / "b.png", image(2))
    write(tmp_path / "sub" / "copy.png", image(1))
    write(tmp_path / "notes.txt", b"hello")

    result = invoke("upload", str(tmp_path), "--parallel", "1")

    assert result.exit_code == 1, result.output
    assert summary(result.stdout) == {"created": "2", "duplicate": "1", "rejected": "1"}
    assert f"{tmp_path / 'notes.txt'}: error 422: not an image" in result.stderr
    assert result.stderr.rstrip().endswith("error: 1 of 4 files rejected")
    [batch] = api.uploads  # --parallel 1: one request
    assert batch == [("a.png", image(1)), ("notes.txt", b"hello"), ("b.png", image(2)), ("copy.png", image(1))]
    assert api.requests[0].get_header("X-api-key") == KEY


def test_upload_of_images_only_exits_0_and_json_lists_every_file(api, tmp_path):
    for n in range(8):
        write(tmp_path / f"{n}.png", image(n))

    result = invoke("--json", "upload", str(tmp_path), "--progress")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # the bar went to stderr
    assert (report["created"], report["duplicate"], report["rejected"]) == (8, 0, 0)
    assert [f["path"] for f in report["files"]] == [str(tmp_path / f"{n}.png") for n in range(8)]
    assert report["files"][0] == {
        "path": str(tmp_path / "0.png"),
        "filename": "0.png",
        "size": len(image(0)),
        "status": "created",
        "id": hashlib.sha256(image(0)).hexdigest(),
    }
    assert "uploading 8 files" in result.stderr and "8 created" in result.stderr
    assert sorted(len(batch) for batch in api.uploads) == [2, 2, 2, 2]  # --parallel 4: four requests


def test_a_file_over_the_limit_is_rejected_without_a_request(api, tmp_path):
    with open(tmp_path / "huge.png", "wb") as file:
        file.truncate(25 * MiB + 1)
    write(tmp_path / "ok.png", image(1))

    result = invoke("upload", str(tmp_path))

    assert result.exit_code == 1
    assert f"{tmp_path / 'huge.png'}: larger than the API's limit of 25.0 MiB per file" in result.stderr
    assert api.sent_files() == ["ok.png"]


def test_requests_stay_within_the_apis_limits(tmp_path):
    files = [cli_images.LocalFile(tmp_path / f"{n}", str(n), size) for n, size in enumerate([20 * MiB] * 3 + [1] * 250)]

    planned = cli_images.plan_batches(files, 1)

    assert all(len(b) <= 100 and sum(f.size for f in b) <= 31 * MiB for b in planned)
    assert sum(len(b) for b in planned) == 253


def test_a_file_that_vanishes_or_cannot_be_read_is_rejected_with_the_reason(api, tmp_path):
    gone = write(tmp_path / "gone.png", image(1))
    locked = write(tmp_path / "locked.png", image(2))
    kept = write(tmp_path / "kept.png", image(3))
    found, _ = cli_images.collect([str(tmp_path)])
    gone.unlink()
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads anything
        locked.chmod(0o644)

    cli_images.upload_batch(cli.ApiClient(BASE, KEY), found)

    results = {f.path.name: f.result for f in found}
    assert results["gone.png"] == {"status": "rejected", "id": None, "error": "cannot read: No such file or directory"}
    if not os.access(locked, os.R_OK):
        assert results["locked.png"]["error"] == "cannot read: Permission denied"
    assert results["kept.png"]["status"] == "created"
    assert kept.name in api.sent_files() and "gone.png" not in api.sent_files()


def test_a_file_that_shrinks_while_it_is_sent_is_rejected_and_the_others_are_sent_again(api, tmp_path):
    write(tmp_path / "a.png", image(1))
    shrinking = write(tmp_path / "b.png", image(2))
    write(tmp_path / "c.png", image(3))

    def shrink(request):
        if shrinking.stat().st_size:
            shrinking.write_bytes(b"")

    api.before_read = shrink

    result = invoke("upload", str(tmp_path), "--parallel", "1")

    assert result.exit_code == 1
    assert summary(result.stdout) == {"created": "2", "duplicate": "0", "rejected": "1"}
    assert f"{shrinking}: the file got shorter while it was being sent" in result.stderr
    assert api.sent_files() == ["a.png", "c.png"]
    assert len(api.requests) == 2  # the first one was cut short


def test_transient_failures_are_retried(api, tmp_path):
    write(tmp_path / "a.png", image(1))
    api.upload_status = [(503, {"error": {"code": 503, "message": "busy"}})]

    result = invoke("upload", str(tmp_path))

    assert result.exit_code == 0, result.output
    assert summary(result.stdout)["created"] == "1" and len(api.requests) == 2


def test_a_key_that_does_not_work_stops_the_upload(api, tmp_path):
    write(tmp_path / "a.png", image(1))
    api.upload_status = [(401, {"error": {"code": 401, "message": "invalid API key"}})]

    result = invoke("upload", str(tmp_path))

    assert result.exit_code == 1
    assert result.stderr.rstrip().endswith("error 401: invalid API key") and result.stdout == ""


def test_a_refusal_of_the_whole_request_rejects_its_files(api, tmp_path):
    write(tmp_path / "a.png", image(1))
    api.upload_status = [(413, {"error": {"code": 413, "message": "request too large"}})]

    result = invoke("upload", str(tmp_path))

    assert result.exit_code == 1
    assert f"{tmp_path / 'a.png'}: error 413: request too large" in result.stderr


def test_the_body_is_streamed_with_its_length(tmp_path):
    path = write(tmp_path / 'we"ird\nname.png', image(1))
    local = cli_images.LocalFile(path, str(path), path.stat().st_size)
    with open(path, "rb") as file:
        body = cli_images.MultipartBody([cli_images._FilePart(local, file, local.size)], boundary="B")
        raw = b"".join(iter(lambda: body.read(7), b""))

    assert len(raw) == body.length
    assert raw == (
        b'--B\r\nContent-Disposition: form-data; name="files"; filename="we%22ird%0Aname.png"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + image(1) + b"\r\n--B--\r\n"
    )


# -- images ls / get / rm ---------------------------------------------------------------

ID = "a" * 64
RECORD = {
    "id": ID,
    "filename": "cat.png",
    "format": "PNG",
    "extension": "png",
    "width": 30,
    "height": 20,
    "size": 2048,
    "status": "processed",
    "labels": ["tabby cat"],
    "created_at": "2026-01-02T03:04:05.123Z",
}


def query(request) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.full_url).query))


def test_images_ls_sends_the_filters_and_follows_the_cursor_with_all(api):
    api.on(
        "GET",
        "/v1/images",
        (200, {"images": [RECORD], "next_cursor": "c1"}),
        (200, {"images": [{**RECORD, "id": "b" * 64}], "next_cursor": None}),
    )

    result = invoke("images", "list", "--format", "png", "--label", "tabby cat", "--after", "2026-01-01", "--all")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "FILENAME", "FORMAT", "PIXELS", "SIZE", "STATUS", "CREATED"]
    assert lines[1].split() == [ID, "cat.png", "PNG", "30x20", "2.0", "KiB", "processed", "2026-01-02", "03:04:05Z"]
    assert len(lines) == 3
    first, second = (query(r) for r in api.requests)
    assert first == {"format": "png", "label": "tabby cat", "after": "2026-01-01", "limit": "200"}
    assert second == {**first, "cursor": "c1"}


def test_images_ls_notes_the_next_page(api):
    api.on("GET", "/v1/images", (200, {"images": [RECORD], "next_cursor": "c1"}))

    result = invoke("images", "ls", "--limit", "1")

    assert result.exit_code == 0
    assert "more: aperture images ls --cursor c1" in result.stderr and "c1" not in result.stdout


def test_images_get_shows_the_record(api):
    api.on("GET", f"/v1/images/{ID}", (200, RECORD))

    shown = summary(invoke("images", "get", ID).stdout)
    as_json = json.loads(invoke("images", "get", ID, "--json").stdout)

    assert (shown["id"], shown["pixels"], shown["size"], shown["labels"]) == (ID, "30x20", "2048 bytes", "tabby cat")
    assert as_json == RECORD


def test_images_rm_asks_first(api):
    result = invoke("images", "rm", ID, input="n\n")

    assert result.exit_code == 1 and "Aborted" in result.stderr
    assert api.requests == []


def test_images_rm_reports_each_404_and_deletes_the_others(api):
    api.on("DELETE", f"/v1/images/{ID}", (204, b""))
    api.on("DELETE", f"/v1/images/{'b' * 64}", (404, {"error": {"code": 404, "message": "image not found"}}))

    result = invoke("images", "rm", "--yes", ID, "b" * 64, ID)

    assert result.exit_code == 1
    assert result.stdout.strip() == f"deleted {ID}"
    assert f"{'b' * 64}: error 404: image not found" in result.stderr
    assert "error: 1 of 2 images not deleted" in result.stderr
    assert len(api.requests) == 2  # an id named twice is deleted once


# -- get ----------------------------------------------------------------------------------


def test_get_downloads_the_original_under_its_default_name(api, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    api.on("GET", f"/v1/images/{ID}", (200, RECORD))
    api.on("GET", f"/v1/images/{ID}/original", (200, b"original bytes"))

    result = invoke("get", ID)

    assert result.exit_code == 0, result.output
    assert (tmp_path / f"{ID}.png").read_bytes() == b"original bytes"
    assert f"wrote {ID}.png (14 bytes)" in result.stderr and result.stdout == ""


def test_get_converts_with_ops_and_follows_a_signed_link_without_the_key(api, tmp_path):
    signed = "https://storage.test/derived/x.webp?X-Goog-Signature=abc"
    api.on("GET", f"/v1/images/{ID}.webp", (307, b"", {"Location": signed}))
    api.on("GET", "/derived/x.webp", (200, b"webp bytes"))

    result = invoke("get", ID, "--as", "webp", "--ops", "resize:256x256|rotate:90", "-o", str(tmp_path / "o.webp"))

    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.webp").read_bytes() == b"webp bytes"
    first, fetched = api.requests
    assert query(first) == {"ops": "resize:256x256|rotate:90"}
    assert fetched.full_url == signed and fetched.get_header("X-api-key") is None


def test_get_ops_without_as_keeps_the_images_format(api, tmp_path):
    api.on("GET", f"/v1/images/{ID}", (200, RECORD))
    api.on("GET", f"/v1/images/{ID}.png", (200, b"png"))

    result = invoke("get", ID, "--ops", "grayscale", "-o", str(tmp_path))

    assert result.exit_code == 0, result.output
    assert (tmp_path / f"{ID}.png").read_bytes() == b"png"


def test_get_to_stdout(api):
    api.on("GET", f"/v1/images/{ID}/original", (200, b"\x00\xffraw"))

    result = invoke("get", ID, "-o", "-")

    assert result.exit_code == 0 and result.stdout_bytes == b"\x00\xffraw"
    assert len(api.requests) == 1


def test_get_never_replaces_a_file_without_force(api, tmp_path):
    taken = write(tmp_path / "taken.png", b"mine")
    api.on("GET", f"/v1/images/{ID}/original", (200, b"theirs"))

    refused = invoke("get", ID, "-o", str(taken))
    assert refused.exit_code == 2 and refused.stderr.startswith(f"error: {taken} exists; pass --force")
    assert api.requests == [] and taken.read_bytes() == b"mine"

    assert invoke("get", ID, "-o", str(taken), "--force").exit_code == 0
    assert taken.read_bytes() == b"theirs"


def test_get_shows_the_apis_refusal_and_leaves_no_file(api, tmp_path):
    api.on("GET", f"/v1/images/{ID}.svg", (400, {"error": {"code": 400, "message": "unsupported format 'svg'"}}))

    result = invoke("get", ID, "--as", "svg", "-o", str(tmp_path / "x.svg"))

    assert result.exit_code == 1 and result.stderr.strip() == "error 400: unsupported format 'svg'"
    assert list(tmp_path.iterdir()) == []


# -- stats ----------------------------------------------------------------------------------

STATS = {
    "uploads_per_day": [{"date": f"2026-01-{d:02d}", "uploads": u} for d, u in ((1, 0), (2, 4), (3, 10))],
    "total_images": 14,
    "most_popular_format": "JPEG",
    "formats": {"PNG": 4, "JPEG": 10},
    "top_cameras": [{"camera": "Canon EOS R5", "images": 7}],
}


def test_stats_prints_totals_a_bar_chart_and_top_cameras(api):
    api.on("GET", "/v1/stats", (200, STATS))

    result = invoke("stats")

    assert result.exit_code == 0, result.output
    head, chart, cameras = result.stdout.rstrip("\n").split("\n\n")
    assert summary(head) == {"images": "14", "most_popular": "JPEG", "formats": "JPEG 10, PNG 4"}
    assert chart.splitlines() == [
        "uploads per day (UTC, last 3 days)",
        "2026-01-01   0",
        "2026-01-02   4  " + "#" * 16,
        "2026-01-03  10  " + "#" * 40,
    ]
    assert cameras.splitlines() == ["CAMERA        IMAGES", "Canon EOS R5  7"]
    assert json.loads(invoke("stats", "--json").stdout) == STATS


# -- the shared retry helper ------------------------------------------------------------------


def test_with_retries_rides_out_transient_failures_only(monkeypatch):
    waits = []
    monkeypatch.setattr(cli_retry, "_sleep", waits.append)
    failures = [cli.ApiError(503, "busy"), cli.CliError("error: cannot reach x")]

    def flaky():
        if failures:
            raise failures.pop(0)
        return "ok"

    assert cli_retry.with_retries(flaky, 5) == "ok" and waits == [1.0, 2.0]
    with pytest.raises(cli.ApiError) as refused:
        cli_retry.with_retries(lambda: (_ for _ in ()).throw(cli.ApiError(404, "nope")), 5)
    assert refused.value.status == 404 and waits == [1.0, 2.0]
    with pytest.raises(cli.ApiError):
        cli_retry.with_retries(lambda: (_ for _ in ()).throw(cli.ApiError(429, "slow down")), 2)
    assert waits == [1.0, 2.0, 1.0, 2.0]
