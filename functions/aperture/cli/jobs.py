"""`aperture jobs ...`: batch jobs (spec S9) through `/v1/jobs` (usage in docs/cli.md).

* `submit FILE.json [--watch]`: the job body as `POST /v1/jobs` takes it. An
  `input` that names an existing local file (a relative path resolves against
  the JSON file's folder) is uploaded first (`POST /v1/images`, several files
  per request) and replaced by the image id it got; the file itself is not changed.
* `watch JOB_ID`: polls `GET /v1/jobs/JOB_ID` until the job is finished, with a
  progress bar on stderr; exit 0 when it ended `done`, 1 otherwise.
* `get JOB_ID [--out DIR]`: the job and its items; `--out` downloads every output.
* `ls`, `cancel JOB_ID`.

The API checks the job; this module only reads the file, uploads, and shows.
Progress and notes go to stderr, so stdout stays what `--json` promises.
"""

from __future__ import annotations

import copy
import json
import sys
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from aperture.cli import (
    ApiClient,
    ApiError,
    CliError,
    ConfigError,
    Group,
    Response,
    Settings,
    cell,
    fields,
    main,
    output,
    pass_settings,
    segment,
    table,
)
from aperture.cli._retry import with_retries

ACTIVE = frozenset({"queued", "running"})  # every other status is final
STATES = ("done", "failed", "cancelled", "running", "queued")
FINISHED_STATES = ("done", "failed", "cancelled")
UPLOAD_MAX_FILES = 100  # files per upload request (the API's APERTURE_MAX_FILES_PER_REQUEST)
UPLOAD_MAX_BYTES = 31 * 1024 * 1024  # file bytes per request: bodies are capped at 32 MiB, framing included
DOWNLOAD_WORKERS = 8
POLL_RETRIES = 5  # consecutive failed polls (network, 429, 5xx) a watch rides out
SHOWN_PROBLEMS = 50  # per-item lines printed after a job that did not end done
DEFAULT_INTERVAL = 1.0

T = TypeVar("T")

_sleep = time.sleep  # between two polls of a watch (tests replace it; retries wait in _retry)


# -- the job file --------------------------------------------------------------------


def load_job(path: str) -> tuple[Any, Path]:
    """The JSON in `path` ('-' reads stdin) and the folder its relative inputs resolve against."""
    base = Path.cwd() if path == "-" else Path(path).absolute().parent
    try:
        with click.open_file(path, "rb") as file:
            raw = file.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(raw.decode("utf-8-sig")), base
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None


@dataclass(frozen=True)
class LocalInput:
    index: int  # images[index]
    written: str  # the input as the file has it
    path: Path  # the local file it names, resolved


def local_file(source: str, base: Path) -> Path | None:
    """The existing regular file `source` names (relative to `base`), else None."""
    candidate = Path(source)
    if not candidate.is_absolute():
        candidate = base / candidate
    try:
        return candidate.resolve() if candidate.is_file() else None
    except (OSError, ValueError):  # NUL in the name, a path too long for the OS, a loop of links
        return None


def local_inputs(body: Any, base: Path) -> list[LocalInput]:
    """The `images[i].input`s that are local files. A body of another shape has none: the API
    refuses it with its own message."""
    images = body.get("images") if isinstance(body, dict) else None
    if not isinstance(images, list):
        return []
    found = []
    for index, entry in enumerate(images):
        source = entry.get("input") if isinstance(entry, dict) else None
        if isinstance(source, str) and source.strip():
            path = local_file(source, base)
            if path is not None:
                found.append(LocalInput(index, source, path))
    return found


def with_ids(body: Mapping[str, Any], inputs: Sequence[LocalInput], ids: Mapping[Path, str]) -> dict[str, Any]:
    """A copy of `body` whose local inputs are replaced by their image ids."""
    out = copy.deepcopy(dict(body))
    for local in inputs:
        out["images"][local.index]["input"] = ids[local.path]
    return out


# -- uploads -------------------------------------------------------------------------


def batches(sizes: Sequence[tuple[T, int]], max_files: int, max_bytes: int) -> list[list[T]]:
    """Files (of any kind, with their sizes) grouped in order into requests of at most
    `max_files` files and `max_bytes` bytes (a larger file goes alone, and the API says
    whether it takes it). `aperture upload` uses it too."""
    out: list[list[T]] = []
    current: list[T] = []
    used = 0
    for path, size in sizes:
        if current and (len(current) >= max_files or used + size > max_bytes):
            out.append(current)
            current, used = [], 0
        current.append(path)
        used += size
    if current:
        out.append(current)
    return out


def multipart(files: Sequence[tuple[str, bytes]], field: str = "files", boundary: str = "") -> tuple[bytes, str]:
    """A multipart/form-data body with one part per (filename, bytes), and its Content-Type."""
    boundary = boundary or f"aperture-{uuid.uuid4().hex}"
    chunks: list[bytes] = []
    for name, data in files:
        chunks += [part_head(boundary, field, name), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def part_head(boundary: str, field: str, filename: str) -> bytes:
    """What comes before one file's bytes in a multipart/form-data body."""
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{_quoted(filename)}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def _quoted(name: str) -> str:
    """A filename inside quotes, escaped as browsers do (filenames are only metadata to the API)."""
    return name.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


def upload_files(
    client: ApiClient,
    paths: Sequence[Path],
    *,
    shown: Mapping[Path, str] | None = None,
    max_files: int | None = None,
    max_bytes: int | None = None,
) -> dict[Path, dict[str, Any]]:
    """Each file's result from `POST /v1/images` ({filename, id, status}), at most `max_files`
    files and `max_bytes` bytes per request. Stops at the first request with a refused file,
    naming every refused file of it (`shown` names them)."""
    shown = shown or {}
    sizes = file_sizes(paths, shown)
    results: dict[Path, dict[str, Any]] = {}
    for batch in batches(sizes, max_files or UPLOAD_MAX_FILES, max_bytes or UPLOAD_MAX_BYTES):
        files = []
        for path in batch:
            try:
                files.append((path.name, path.read_bytes()))
            except OSError as exc:
                raise CliError(f"error: cannot read {shown.get(path, path)}: {exc.strerror or exc}") from None
        body, content_type = multipart(files)
        response = client.send(
            "POST", "/v1/images", body, headers={"Content-Type": content_type, "Accept": "application/json"}
        )
        answers = _file_results(response, len(batch))
        names = ", ".join(shown.get(path, path.name) for path in batch[:5]) + (", …" if len(batch) > 5 else "")
        if answers is None:  # refused as a whole (size, count, role, …): no per-file answer
            if response.status < 300:
                raise CliError(f"error: POST /v1/images answered {response.status} with an unexpected body")
            error = ApiError.from_response(response.status, response.body, response.reason)
            raise ApiError(error.status, f"{error.api_message} (uploading {names})")
        refused = []
        for path, answer in zip(batch, answers):
            if isinstance(answer.get("id"), str) and answer["id"] and answer.get("status") != "rejected":
                results[path] = answer
            else:
                status = answer.get("status_code", response.status)
                refused.append(f"  {shown.get(path, path)}: error {status}: {answer.get('error') or 'refused'}")
        if refused:
            raise CliError(
                f"error: the API refused {len(refused)} of the job's local files; the job was not submitted:\n"
                + "\n".join(refused)
            )
    return results


def file_sizes(paths: Sequence[Path], shown: Mapping[Path, str]) -> list[tuple[Path, int]]:
    sizes = []
    for path in paths:
        try:
            sizes.append((path, path.stat().st_size))
        except OSError as exc:
            raise CliError(f"error: cannot read {shown.get(path, path)}: {exc.strerror or exc}") from None
    return sizes


def _file_results(response: Response, count: int) -> list[dict[str, Any]] | None:
    try:
        files = json.loads(response.body.decode("utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, list) or len(files) != count or not all(isinstance(f, dict) for f in files):
        return None
    return files


# -- showing jobs ----------------------------------------------------------------------


def counts_of(job: Mapping[str, Any]) -> dict[str, int]:
    counts = job.get("counts")
    if not isinstance(counts, dict):
        counts = {}
    return {state: int(counts.get(state) or 0) for state in STATES}


def total_of(job: Mapping[str, Any]) -> int:
    total = job.get("total")
    return total if isinstance(total, int) else sum(counts_of(job).values())


def finished_count(job: Mapping[str, Any]) -> int:
    counts = counts_of(job)
    return sum(counts[state] for state in FINISHED_STATES)


def counts_text(job: Mapping[str, Any]) -> str:
    counts = counts_of(job)
    return ", ".join(f"{counts[state]} {state}" for state in STATES if counts[state] or state in FINISHED_STATES)


def summary(job: Mapping[str, Any]) -> str:
    """A job as `label  value` lines."""
    record = {
        "job_id": job.get("job_id"),
        "status": job.get("status"),
        "items": f"{total_of(job)}: {counts_text(job)}",
        "operations": " ".join(str(op) for op in job.get("operations") or []) or None,
        "created": job.get("created_at"),
        "status_url": job.get("status_url"),
    }
    return fields(record, [(name, name) for name in record])


def submitted(answer: Mapping[str, Any]) -> str:
    """What `POST /v1/jobs` answered: job_id, status, total, status_url."""
    return fields(
        answer, [("job_id", "job_id"), ("status", "status"), ("total", "total"), ("status_url", "status_url")]
    )


def output_names(item: Mapping[str, Any]) -> list[str]:
    return [o["name"] for o in item.get("outputs") or [] if isinstance(o, dict) and isinstance(o.get("name"), str)]


ITEM_COLUMNS: list[tuple[str, Any]] = [
    ("index", "index"),
    ("input", "input"),
    ("state", "state"),
    ("outputs", lambda item: ", ".join(output_names(item)) or None),
    ("error", "error"),
]
JOB_COLUMNS: list[tuple[str, Any]] = [
    ("job_id", "job_id"),
    ("status", "status"),
    ("total", total_of),
    ("done", lambda job: counts_of(job)["done"]),
    ("failed", lambda job: counts_of(job)["failed"]),
    ("cancelled", lambda job: counts_of(job)["cancelled"]),
    ("created", "created_at"),
    ("operations", lambda job: " ".join(str(op) for op in job.get("operations") or []) or None),
]


def job_with_items(job: Mapping[str, Any]) -> str:
    items = job.get("items")
    if not isinstance(items, list):
        return summary(job)
    return summary(job) + "\n\n" + (table(items, ITEM_COLUMNS) if items else "no items")


def problems(job: Mapping[str, Any], limit: int = SHOWN_PROBLEMS) -> list[str]:
    """One line per item that did not end done (at most `limit`, then how many more)."""
    lines = []
    for item in job.get("items") or []:
        if not isinstance(item, dict) or item.get("state") == "done":
            continue
        line = f"images[{item.get('index')}] ({cell(item.get('input'))}): {item.get('state')}"
        lines.append(line + (f": {cell(item['error'])}" if item.get("error") else ""))
    if len(lines) > limit:
        more = len(lines) - limit
        lines = lines[:limit] + [f"… and {more} more: aperture jobs get {job.get('job_id')}"]
    return lines


# -- watching --------------------------------------------------------------------------


def poll(client: ApiClient, job_id: str, retries: int = 0) -> dict[str, Any]:
    """`GET /v1/jobs/JOB_ID`, riding out `retries` network failures, 429s and 5xx in a row."""
    return with_retries(lambda: client.request("GET", f"/v1/jobs/{segment(job_id)}"), retries)


def follow(settings: Settings, client: ApiClient, job_id: str, interval: float) -> dict[str, Any]:
    """Poll until the job is finished, with a progress bar of done+failed+cancelled items on
    stderr; print it; `CliError` (exit 1) unless it ended done."""
    job = poll(client, job_id)
    try:
        with click.progressbar(
            length=total_of(job),
            label=f"{job_id} {job.get('status')}",
            file=sys.stderr,
            show_pos=True,
            item_show_func=lambda text: text,
        ) as bar:
            while True:
                bar.label = f"{job_id} {job.get('status')}"
                bar.update(max(0, finished_count(job) - bar.pos), counts_text(job))
                bar.render_progress()  # the label may have changed without progress
                if job.get("status") not in ACTIVE:
                    break
                _sleep(interval)
                job = poll(client, job_id, retries=POLL_RETRIES)
    except KeyboardInterrupt:
        raise CliError(
            f"stopped watching {job_id}; the job goes on (aperture jobs watch {job_id}, aperture jobs cancel {job_id})",
            exit_code=130,
        ) from None
    output(settings, job, summary)
    if job.get("status") != "done":
        for line in problems(job):
            click.echo(line, err=True)
        raise CliError(f"error: job {job_id} ended {job.get('status')}: {counts_text(job)} of {total_of(job)}")
    return job


# -- downloading -----------------------------------------------------------------------


def target_for(out: Path, name: Any) -> Path:
    """Where output `name` goes under `out`; `ValueError` for a name that would land elsewhere
    (absolute, '..', empty segments, backslashes, drive letters, control characters, or a
    folder under `out` that is a link pointing out of it)."""
    if not isinstance(name, str) or not name:
        raise ValueError("not a name")
    if name.startswith("/") or any(c in name for c in "\\:") or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError("absolute, or has a backslash, a colon or a control character")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError("has an empty, '.' or '..' segment")
    target = out.joinpath(*parts)
    root = out.resolve()
    if not target.resolve().is_relative_to(root) or target.resolve() == root:
        raise ValueError(f"would be written outside {out}")
    return target


def download_outputs(client: ApiClient, job: Mapping[str, Any], out: Path) -> tuple[int, int]:
    """Every output of the job into `out/<name>` (folders made as needed, existing files
    replaced); (files, bytes). Checks every name before writing anything."""
    names = list(dict.fromkeys(name for item in job.get("items") or [] for name in output_names(item)))
    targets: dict[str, Path] = {}
    refused = []
    for name in names:
        try:
            targets[name] = target_for(out, name)
        except ValueError as reason:
            refused.append(f"  {name!r}: {reason}")
    if refused:
        raise CliError(f"error: refusing to download outputs whose names leave {out}:\n" + "\n".join(refused))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"error: cannot create {out}: {exc.strerror or exc}") from None
    if not names:
        return 0, 0
    base = f"/v1/jobs/{segment(str(job.get('job_id')))}/outputs/"

    def fetch(name: str) -> int:
        target = targets[name]
        target.parent.mkdir(parents=True, exist_ok=True)
        return client.download(base + urllib.parse.quote(name, safe="/"), target)

    failures, total = [], 0
    with (
        ThreadPoolExecutor(min(DOWNLOAD_WORKERS, len(names))) as pool,
        click.progressbar(length=len(names), label=f"downloading {len(names)} outputs", file=sys.stderr) as bar,
    ):
        futures = {pool.submit(fetch, name): name for name in names}
        for future in as_completed(futures):
            name = futures[future]
            try:
                total += future.result()
            except CliError as exc:
                failures.append(f"  {name}: {exc.format_message()}")
            except OSError as exc:
                failures.append(f"  {name}: cannot write {targets[name]}: {exc.strerror or exc}")
            bar.update(1)
    if failures:
        raise CliError(f"error: {len(failures)} of {len(names)} outputs were not downloaded:\n" + "\n".join(failures))
    return len(names), total


# -- commands --------------------------------------------------------------------------


class JobsGroup(Group):
    """`jobs list` is `jobs ls`, as the other groups spell it."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, "ls" if cmd_name == "list" else cmd_name)


@main.group(cls=JobsGroup)
def jobs() -> None:
    """Batch jobs: submit a job file, watch it, download its outputs."""


def interval_option(func):
    return click.option(
        "--interval",
        type=click.FloatRange(min=0.1),
        default=DEFAULT_INTERVAL,
        show_default=True,
        metavar="SECONDS",
        help="Seconds between two polls of the job.",
    )(func)


@jobs.command("submit")
@click.argument("job_file", metavar="FILE.json", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--watch", is_flag=True, help="Then follow the job as `jobs watch` does (and exit as it does).")
@interval_option
@pass_settings
def jobs_submit(settings: Settings, job_file: str, watch: bool, interval: float) -> None:
    """Submit the job in FILE.json ('-': stdin) and print its id and status URL.

    The file is the body of POST /v1/jobs: {"images": [{"input": ..., "output": ...}],
    "operations": ["resize=50", "split=True", "blur=5"]}. An input that is a path to an
    existing local file (relative paths resolve against FILE.json's folder) is uploaded
    first and replaced by its image id; other inputs (image ids, teams/TEAM/ID.EXT,
    filenames your team uploaded) go to the API as written.
    """
    client = settings.client()
    body, base = load_job(job_file)
    inputs = local_inputs(body, base)
    if inputs:
        shown: dict[Path, str] = {}
        for local in inputs:
            shown.setdefault(local.path, local.written)
        total = sum(size for _, size in file_sizes(list(shown), shown))
        click.echo(f"uploading {_plural(len(shown), 'local file')} ({_size(total)})", err=True)
        results = upload_files(client, list(shown), shown=shown)
        new = sum(1 for r in results.values() if r.get("status") == "created")
        click.echo(f"uploaded: {new} new, {len(results) - new} already there", err=True)
        body = with_ids(body, inputs, {path: r["id"] for path, r in results.items()})
    answer = client.request("POST", "/v1/jobs", body)
    if not watch:
        output(settings, answer, submitted)
        return
    if not settings.json:  # with --json, stdout is the finished job only
        click.echo(submitted(answer))
    follow(settings, client, answer["job_id"], interval)


@jobs.command("watch")
@click.argument("job_id")
@interval_option
@pass_settings
def jobs_watch(settings: Settings, job_id: str, interval: float) -> None:
    """Follow JOB_ID until it is finished, with a progress bar (on stderr).

    Exits 0 when the job ended done; 1 when it ended failed, partial or
    cancelled, after printing the items that did not end done (on stderr).
    """
    follow(settings, settings.client(), job_id, interval)


@jobs.command("get")
@click.argument("job_id")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Download every output into DIR/<output name> (folders are made; existing files replaced).",
)
@pass_settings
def jobs_get(settings: Settings, job_id: str, out: Path | None) -> None:
    """Show JOB_ID: its status and counts, and each item's input, state, outputs and error."""
    client = settings.client()
    job = client.request("GET", f"/v1/jobs/{segment(job_id)}")
    output(settings, job, job_with_items)
    if out is None:
        return
    if job.get("status") in ACTIVE:
        click.echo(f"note: the job is {job.get('status')}; downloading the outputs written so far", err=True)
    count, size = download_outputs(client, job, out)
    click.echo(f"downloaded {_plural(count, 'output')} ({_size(size)}) into {out}", err=True)


@jobs.command("ls")
@click.option("--limit", type=click.IntRange(1, 100), help="Jobs per page (1-100) [default: the API's, 20].")
@click.option("--cursor", metavar="JOB_ID", help="Start after this job (a previous page's next_cursor).")
@click.option("--all", "all_pages", is_flag=True, help="Follow next_cursor to the last page.")
@pass_settings
def jobs_ls(settings: Settings, limit: int | None, cursor: str | None, all_pages: bool) -> None:
    """Your team's jobs, newest first (alias: `jobs list`)."""
    client = settings.client()
    page = client.request("GET", "/v1/jobs", params={"limit": limit, "cursor": cursor})
    listed = list(page.get("jobs") or [])
    while all_pages and page.get("next_cursor"):
        page = client.request("GET", "/v1/jobs", params={"limit": limit, "cursor": page["next_cursor"]})
        listed += page.get("jobs") or []
    data = {"jobs": listed, "next_cursor": page.get("next_cursor")}
    output(settings, data, lambda d: table(d["jobs"], JOB_COLUMNS) if d["jobs"] else "no jobs")
    if data["next_cursor"] and not settings.json:
        click.echo(f"more: aperture jobs ls --cursor {data['next_cursor']} (or --all)", err=True)


@jobs.command("cancel")
@click.argument("job_id")
@pass_settings
def jobs_cancel(settings: Settings, job_id: str) -> None:
    """Cancel JOB_ID: its items not started yet are cancelled; running ones finish."""
    job = settings.client().request("DELETE", f"/v1/jobs/{segment(job_id)}")
    output(settings, job, summary)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    return f"{size / 1024:.1f} KiB" if size < 1024 * 1024 else f"{size / (1024 * 1024):.1f} MiB"
