"""`aperture upload`, `aperture images ...`, `aperture get` and `aperture stats`: a team's
images through the API (usage in docs/cli.md).

* `upload PATH...`: files and folders (walked recursively; hidden files and folders are
  skipped, and so are symbolic links that lead out of the folder), sent to
  `POST /v1/images` several files per request, `--parallel` requests at a time, each body
  streamed from the files with its length known in advance. Files over the API's per-file
  limit are rejected here, without a request. A summary of created / duplicate / rejected
  files; exit 1 when any file was rejected.
* `images ls | get ID | rm ID...`: list (filters, paging), show, delete.
* `get ID [--as EXT] [--ops PIPELINE] [-o FILE|-]`: download the original or a conversion.
* `stats`: the team's upload statistics (`GET /v1/stats`).

Progress and notes go to stderr, so stdout stays what `--json` promises.
"""

from __future__ import annotations

import math
import os
import stat
import sys
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import click

from aperture.cli import (
    ApiClient,
    ApiError,
    CliError,
    ConfigError,
    Group,
    Settings,
    cell,
    fields,
    main,
    output,
    pass_settings,
    segment,
    table,
)
from aperture.cli._retry import RETRYABLE, with_retries
from aperture.cli.jobs import UPLOAD_MAX_BYTES, UPLOAD_MAX_FILES, _file_results, _plural, _size, batches, part_head

MAX_FILE_BYTES = 25 * 1024 * 1024  # the API's per-file limit (APERTURE_MAX_UPLOAD_BYTES)
DEFAULT_PARALLEL = 4
UPLOAD_RETRIES = 3  # transient failures (network, 429, 5xx) ridden out per request
FATAL = frozenset({401, 403})  # the key does not work (or may not upload): no later request would do better
SHOWN_REJECTIONS = 50
PAGE = 200  # images per page for `images ls --all` when no --limit is given (the API's largest)


# -- finding the files ---------------------------------------------------------------


@dataclass(eq=False)
class LocalFile:
    """A file to upload, and then what became of it."""

    path: Path
    shown: str  # as the user named it (the argument, or the argument joined with the path inside it)
    size: int = 0
    result: dict[str, Any] = field(default_factory=dict)

    def reject(self, error: str, status_code: int | None = None) -> None:
        self.result = {"status": "rejected", "id": None, "error": error}
        if status_code is not None:
            self.result["status_code"] = status_code

    @property
    def done(self) -> bool:
        return bool(self.result)

    def view(self) -> dict[str, Any]:
        return {"path": self.shown, "filename": self.path.name, "size": self.size, **self.result}


def collect(arguments: Sequence[str]) -> tuple[list[LocalFile], list[str]]:
    """The files the arguments name, in order, each once (by its real path), and notes about
    what was skipped. Folders are walked recursively, sorted; hidden entries (a name starting
    with '.') are skipped, links to folders are not entered, and a link to a file is followed
    only when the file is inside the folder. A file named as an argument is taken as it is."""
    found: list[LocalFile] = []
    notes: list[str] = []
    seen: set[Path] = set()

    def add(path: Path, shown: str) -> None:
        local = LocalFile(path, shown)
        try:
            real, info = path.resolve(), path.stat()
        except (OSError, RuntimeError) as exc:  # vanished, no permission, a loop of links
            local.reject(f"cannot read: {_reason(exc)}")
            found.append(local)
            return
        if real in seen:
            return
        seen.add(real)
        local.size = info.st_size
        if not stat.S_ISREG(info.st_mode):
            local.reject("not a regular file")
        elif info.st_size > MAX_FILE_BYTES:
            local.reject(
                f"larger than the API's limit of {_size(MAX_FILE_BYTES)} per file ({_size(info.st_size)}); not sent"
            )
        found.append(local)

    for argument in arguments:
        top = Path(argument)
        if not top.is_dir():
            add(top, argument)
            continue
        root = top.resolve()

        def unreadable(exc: OSError, argument: str = argument) -> None:
            local = LocalFile(Path(exc.filename or argument), str(exc.filename or argument))
            local.reject(f"cannot read the folder: {_reason(exc)}")
            found.append(local)

        for folder, dirs, files in os.walk(top, onerror=unreadable):  # links to folders are listed, not entered
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = Path(folder) / name
                if path.is_symlink():
                    try:
                        target = path.resolve(strict=True)
                    except (OSError, RuntimeError):
                        notes.append(f"skipped {path}: a broken symbolic link")
                        continue
                    if not target.is_relative_to(root):
                        notes.append(f"skipped {path}: a symbolic link out of {argument}")
                        continue
                add(path, str(path))
    return found, notes


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else None) or str(exc) or type(exc).__name__


# -- the request body ------------------------------------------------------------------


class FileChanged(Exception):
    """A file could not be read to the size it had when the body was laid out. Not an
    `OSError`: it must leave urllib as it is, not as a network failure."""

    def __init__(self, local: LocalFile, reason: str):
        super().__init__(reason)
        self.local = local
        self.reason = reason


@dataclass
class _FilePart:
    local: LocalFile
    file: BinaryIO
    size: int


class MultipartBody:
    """A multipart/form-data body read from open files as it is sent (urllib reads it in
    blocks): its length is known before the first byte, so the request carries a
    Content-Length. Each file yields exactly the size it had when opened, or `FileChanged`."""

    def __init__(self, parts: Sequence[_FilePart], field_name: str = "files", boundary: str = ""):
        boundary = boundary or f"aperture-{uuid.uuid4().hex}"
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self._segments: list[bytes | _FilePart] = []
        for part in parts:
            self._segments += [part_head(boundary, field_name, part.local.path.name), part, b"\r\n"]
        self._segments.append(f"--{boundary}--\r\n".encode())
        self.length = sum(len(s) if isinstance(s, bytes) else s.size for s in self._segments)
        self._index = self._offset = 0

    def read(self, size: int | None = -1) -> bytes:
        wanted = self.length if size is None or size < 0 else size
        out: list[bytes] = []
        while wanted > 0 and self._index < len(self._segments):
            segment_ = self._segments[self._index]
            length = len(segment_) if isinstance(segment_, bytes) else segment_.size
            if self._offset >= length:
                self._index, self._offset = self._index + 1, 0
                continue
            if isinstance(segment_, bytes):
                block = segment_[self._offset : self._offset + wanted]
            else:
                try:
                    block = segment_.file.read(min(wanted, length - self._offset))
                except OSError as exc:
                    raise FileChanged(segment_.local, f"cannot read: {_reason(exc)}") from None
                if not block:
                    raise FileChanged(segment_.local, "the file got shorter while it was being sent")
            out.append(block)
            self._offset += len(block)
            wanted -= len(block)
        return b"".join(out)


# -- uploading ---------------------------------------------------------------------------


def upload_batch(client: ApiClient, batch: Sequence[LocalFile]) -> None:
    """`POST /v1/images` with the files of `batch`, each file's result set on it. A file that
    cannot be opened is rejected and left out; one that changes while it is sent is rejected
    and the request is sent again without it. Transient failures are retried; a 401 or 403
    raises (no other request would do better); any other failure rejects the files."""
    pending = list(batch)
    while pending:
        parts: list[_FilePart] = []
        try:
            for local in pending:
                try:
                    file = open(local.path, "rb")  # noqa: SIM115  (closed below)
                except OSError as exc:
                    local.reject(f"cannot read: {_reason(exc)}")
                    continue
                parts.append(_FilePart(local, file, local.size))
                info = os.fstat(file.fileno())
                if not stat.S_ISREG(info.st_mode):
                    parts.pop().file.close()
                    local.reject("not a regular file")
                elif info.st_size > MAX_FILE_BYTES:
                    parts.pop().file.close()
                    local.reject(f"larger than the API's limit of {_size(MAX_FILE_BYTES)} per file; not sent")
                else:
                    local.size = parts[-1].size = info.st_size
            if not parts:
                return
            try:
                _send(client, parts)
                return
            except FileChanged as exc:
                exc.local.reject(exc.reason)
            pending = [p.local for p in parts if not p.local.done]
        finally:
            for part in parts:
                part.file.close()


def _send(client: ApiClient, parts: Sequence[_FilePart]) -> None:
    def attempt():
        for part in parts:
            part.file.seek(0)
        body = MultipartBody(parts)
        headers = {"Content-Type": body.content_type, "Content-Length": str(body.length), "Accept": "application/json"}
        response = client.send("POST", "/v1/images", body, headers=headers)  # type: ignore[arg-type]
        if response.status in RETRYABLE:
            raise ApiError.from_response(response.status, response.body, response.reason)
        return response

    try:
        response = with_retries(attempt, UPLOAD_RETRIES)
    except ApiError as exc:
        if exc.status in FATAL:
            raise
        for part in parts:
            part.local.reject(exc.api_message, exc.status)
        return
    except CliError as exc:  # unreachable, timed out
        for part in parts:
            part.local.reject(exc.format_message())
        return
    answers = _file_results(response, len(parts))
    if answers is None:  # refused as a whole (size, count, a broken body…): no per-file answer
        if response.status < 300:
            error = f"POST /v1/images answered {response.status} with an unexpected body"
            for part in parts:
                part.local.reject(error)
            return
        refused = ApiError.from_response(response.status, response.body, response.reason)
        if refused.status in FATAL:
            raise refused
        for part in parts:
            part.local.reject(refused.api_message, refused.status)
        return
    for part, answer in zip(parts, answers):
        status = answer.get("status")
        if status in ("created", "duplicate") and isinstance(answer.get("id"), str) and answer["id"]:
            part.local.result = {"status": status, "id": answer["id"]}
        else:
            code = answer.get("status_code") if isinstance(answer.get("status_code"), int) else response.status
            part.local.reject(str(answer.get("error") or "refused"), code)


def plan_batches(files: Sequence[LocalFile], parallel: int) -> list[list[LocalFile]]:
    """Requests within the API's limits (100 files, 32 MiB a body), and at least `parallel`
    of them when there are enough files, so that every worker has something to send."""
    per_request = max(1, min(UPLOAD_MAX_FILES, math.ceil(len(files) / parallel)))
    return batches([(f, f.size) for f in files], per_request, UPLOAD_MAX_BYTES)


def counts(files: Iterable[LocalFile]) -> dict[str, int]:
    out = {"created": 0, "duplicate": 0, "rejected": 0}
    for local in files:
        out[local.result.get("status", "rejected")] += 1
    return out


def _counts_text(files: Iterable[LocalFile]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts(files).items())


# -- upload ------------------------------------------------------------------------------


@main.command("upload")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...", type=click.Path(exists=True))
@click.option(
    "--parallel",
    type=click.IntRange(1, 32),
    default=DEFAULT_PARALLEL,
    show_default=True,
    metavar="N",
    help="Requests sent at the same time (1-32).",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress bar on stderr [default: when stderr is a terminal].",
)
@pass_settings
def upload(settings: Settings, paths: tuple[str, ...], parallel: int, progress: bool | None) -> None:
    """Upload image files, and folders of them (recursively), to your team.

    Hidden files and folders (names starting with '.') are skipped, and so are
    symbolic links leading out of a folder. Each file is answered created,
    duplicate (the same bytes were uploaded before: same id) or rejected, with
    the reason. Exit 0 when nothing was rejected, 1 otherwise.
    """
    client = settings.client()
    found, notes = collect(paths)
    for note in notes:
        click.echo(note, err=True)
    to_send = [f for f in found if not f.done]
    total = sum(f.size for f in to_send)
    click.echo(f"uploading {_plural(len(to_send), 'file')} ({_size(total)})", err=True)
    show = sys.stderr.isatty() if progress is None else progress
    try:
        with (
            ThreadPoolExecutor(parallel) as pool,
            click.progressbar(
                length=max(total, 1),
                label="uploading",
                file=sys.stderr,
                hidden=not show,
                item_show_func=lambda text: text,
            ) as bar,
        ):
            if show:
                bar._is_atty = True  # forced with --progress: draw it even when stderr is not a terminal
            futures = {pool.submit(upload_batch, client, batch): batch for batch in plan_batches(to_send, parallel)}
            try:
                for future in as_completed(futures):
                    future.result()  # a 401 or 403 raises: stop
                    bar.update(sum(f.size for f in futures[future]), _counts_text(f for f in found if f.done))
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            if not total:
                bar.update(1)
    except KeyboardInterrupt:
        uploaded = sum(1 for f in found if f.result.get("status") in ("created", "duplicate"))
        raise CliError(
            f"stopped after {_plural(uploaded, 'file')} uploaded; run the same command again to go on "
            "(files already uploaded are answered duplicate)",
            exit_code=130,
        ) from None
    summary = {**counts(found), "files": [f.view() for f in found]}
    output(settings, summary, lambda d: fields(d, [(name, name) for name in ("created", "duplicate", "rejected")]))
    rejected = [f for f in found if f.result.get("status") == "rejected"]
    if rejected:
        for local in rejected[:SHOWN_REJECTIONS]:
            code = local.result.get("status_code")
            click.echo(f"{local.shown}: {f'error {code}: ' if code else ''}{local.result['error']}", err=True)
        if len(rejected) > SHOWN_REJECTIONS:
            click.echo(f"… and {len(rejected) - SHOWN_REJECTIONS} more (--json lists them all)", err=True)
        raise CliError(f"error: {len(rejected)} of {_plural(len(found), 'file')} rejected")


# -- images ls / get / rm ----------------------------------------------------------------


class ImagesGroup(Group):
    """`images list` is `images ls`, `images delete` is `images rm`."""

    ALIASES = {"list": "ls", "delete": "rm"}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.ALIASES.get(cmd_name, cmd_name))


@main.group(cls=ImagesGroup)
def images() -> None:
    """Your team's images: list, show, delete (upload: `aperture upload`; download: `aperture get`)."""


def _pixels(image: Mapping[str, Any]) -> str | None:
    width, height = image.get("width"), image.get("height")
    return f"{width}x{height}" if isinstance(width, int) and isinstance(height, int) else None


def _bytes(image: Mapping[str, Any]) -> str | None:
    return _size(image["size"]) if isinstance(image.get("size"), int) else None


IMAGE_COLUMNS: list[tuple[str, Any]] = [
    ("id", "id"),
    ("filename", "filename"),
    ("format", "format"),
    ("pixels", _pixels),
    ("size", _bytes),
    ("status", "status"),
    ("created", "created_at"),
]


@images.command("ls")
@click.option("--format", "image_format", metavar="F", help="Only this format (jpeg, png, webp, gif, tiff, bmp).")
@click.option("--camera", metavar="C", help="Only images taken with this camera (as the image records name it).")
@click.option("--label", metavar="L", help="Only images with this label.")
@click.option("--after", metavar="TIME", help="Only images uploaded after TIME (ISO 8601, e.g. 2026-01-31T00:00:00Z).")
@click.option("--before", metavar="TIME", help="Only images uploaded before TIME (ISO 8601).")
@click.option(
    "--limit", type=click.IntRange(1, 200), metavar="N", help="Images per page (1-200) [default: the API's, 50]."
)
@click.option("--cursor", metavar="CURSOR", help="Start where a previous page ended (its next_cursor).")
@click.option("--all", "all_pages", is_flag=True, help="Follow next_cursor to the last page.")
@pass_settings
def images_ls(
    settings: Settings,
    image_format: str | None,
    camera: str | None,
    label: str | None,
    after: str | None,
    before: str | None,
    limit: int | None,
    cursor: str | None,
    all_pages: bool,
) -> None:
    """Your team's images, newest first (alias: `images list`)."""
    client = settings.client()
    query = {"format": image_format, "camera": camera, "label": label, "after": after, "before": before}
    if all_pages and limit is None:
        limit = PAGE
    page = client.request("GET", "/v1/images", params={**query, "limit": limit, "cursor": cursor})
    listed = list(page.get("images") or [])
    while all_pages and page.get("next_cursor"):
        page = client.request("GET", "/v1/images", params={**query, "limit": limit, "cursor": page["next_cursor"]})
        listed += page.get("images") or []
    data = {"images": listed, "next_cursor": page.get("next_cursor")}
    output(settings, data, lambda d: table(d["images"], IMAGE_COLUMNS) if d["images"] else "no images")
    if data["next_cursor"] and not settings.json:
        click.echo(f"more: aperture images ls --cursor {data['next_cursor']} (same filters), or --all", err=True)


def image_fields(image: Mapping[str, Any]) -> str:
    record = {
        "id": image.get("id"),
        "filename": image.get("filename"),
        "format": image.get("format"),
        "pixels": _pixels(image),
        "frames": image.get("frames"),
        "size": f"{image['size']} bytes" if isinstance(image.get("size"), int) else None,
        "status": image.get("status"),
        "error": image.get("error"),
        "camera": image.get("camera"),
        "captured": image.get("captured_at"),
        "labels": ", ".join(str(label) for label in image.get("labels") or []) or None,
        "created": image.get("created_at"),
        "processed": image.get("processed_at"),
        "embedding": image.get("embedding_model"),
    }
    return fields(record, [(name, name) for name in record])


@images.command("get")
@click.argument("image_id", metavar="ID")
@pass_settings
def images_get(settings: Settings, image_id: str) -> None:
    """Show image ID: format, size, status, camera, labels… (--json: the whole record, EXIF included)."""
    output(settings, settings.client().request("GET", f"/v1/images/{segment(image_id)}"), image_fields)


@images.command("rm")
@click.argument("image_ids", nargs=-1, required=True, metavar="ID...")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_settings
def images_rm(settings: Settings, image_ids: tuple[str, ...], yes: bool) -> None:
    """Delete images: the stored bytes, the record, its statistics and search embedding.

    Asks first unless --yes. An id that is not one of your team's images is
    reported (error 404) and the others are still deleted; exit 1 then.
    """
    client = settings.client()
    ids = list(dict.fromkeys(image_ids))
    if not yes:
        click.confirm(f"Delete {_plural(len(ids), 'image')} of your team for good?", abort=True, err=True)
    deleted: list[str] = []
    failed: list[dict[str, Any]] = []
    for image_id in ids:
        try:
            client.request("DELETE", f"/v1/images/{segment(image_id)}")
        except ApiError as exc:
            if exc.status in FATAL:
                raise
            failed.append({"id": image_id, "status_code": exc.status, "error": exc.api_message})
            continue
        except CliError as exc:
            failed.append({"id": image_id, "status_code": None, "error": exc.format_message()})
            continue
        deleted.append(image_id)
    output(settings, {"deleted": deleted, "failed": failed}, lambda d: "\n".join(f"deleted {i}" for i in d["deleted"]))
    if failed:
        for failure in failed:
            code = failure["status_code"]
            click.echo(f"{failure['id']}: {f'error {code}: ' if code else ''}{failure['error']}", err=True)
        raise CliError(f"error: {len(failed)} of {_plural(len(ids), 'image')} not deleted")


# -- get (download) ----------------------------------------------------------------------


@main.command("get")
@click.argument("image_id", metavar="ID")
@click.option("--as", "as_format", metavar="EXT", help="Convert to this format (png, jpg, webp, gif, tiff, bmp).")
@click.option(
    "--ops", metavar="PIPELINE", help="Transforms to apply, e.g. 'resize:256x256|rotate:90' (docs/transforms.md)."
)
@click.option(
    "-o",
    "--output",
    "target",
    metavar="FILE|-",
    help="Where to write ('-': stdout; a folder: FOLDER/ID.EXT) [default: ./ID.EXT].",
)
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@pass_settings
def get(
    settings: Settings, image_id: str, as_format: str | None, ops: str | None, target: str | None, force: bool
) -> None:
    """Download image ID: the original bytes, or converted (--as) and transformed (--ops).

    An existing file is never replaced without --force (exit 2). The API checks
    the format and the operations (error 400 with its reason).
    """
    client = settings.client()
    ops = ops if ops and ops.strip() else None
    to_stdout = target == "-"
    dest = None if target is None or to_stdout else Path(target)
    if dest is not None and not dest.is_dir():
        _refuse_existing(dest, force)  # before anything is sent
    name_needed = not to_stdout and (dest is None or dest.is_dir())
    extension = as_format
    if extension is None and (ops is not None or name_needed):
        # a conversion to the image's own format, or the default file name, needs the image's extension
        extension = str(client.request("GET", f"/v1/images/{segment(image_id)}").get("extension") or "bin")
    if as_format is None and ops is None:
        path = f"/v1/images/{segment(image_id)}/original"
    else:
        path = f"/v1/images/{segment(image_id)}.{segment(str(extension))}"
        if ops is not None:
            path += "?" + urllib.parse.urlencode({"ops": ops})
    if to_stdout:
        answer = client.open_download(path)
        with answer, click.open_file("-", "wb") as out:  # stdout, kept open
            client.copy(answer, out)
            out.flush()
        return
    name = f"{image_id}.{extension}"
    if dest is None:
        dest = Path(name)
        _refuse_existing(dest, force)
    elif dest.is_dir():
        dest = dest / name
        _refuse_existing(dest, force)
    try:
        size = client.download(path, dest)
    except OSError as exc:
        raise CliError(f"error: cannot write {dest}: {_reason(exc)}") from None
    click.echo(f"wrote {dest} ({_size(size)})", err=True)
    if settings.json:
        output(settings, {"id": image_id, "file": str(dest), "bytes": size}, str)


def _refuse_existing(dest: Path, force: bool) -> None:
    if dest.exists() and not force:
        raise ConfigError(f"{dest} exists; pass --force to replace it")
    if dest.is_dir():
        raise ConfigError(f"{dest} is a folder")


# -- stats -------------------------------------------------------------------------------

BAR_WIDTH = 40


def stats_text(data: Mapping[str, Any]) -> str:
    formats = data.get("formats") if isinstance(data.get("formats"), dict) else {}
    by_count = sorted(formats.items(), key=lambda kv: (-kv[1], kv[0]))
    head = fields(
        {
            "total_images": data.get("total_images"),
            "most_popular_format": data.get("most_popular_format"),
            "formats": ", ".join(f"{name} {n}" for name, n in by_count) or None,
        },
        [("images", "total_images"), ("most_popular", "most_popular_format"), ("formats", "formats")],
    )
    days = [d for d in data.get("uploads_per_day") or [] if isinstance(d, dict)]
    peak = max((int(d.get("uploads") or 0) for d in days), default=0)
    width = max((len(str(d.get("uploads") or 0)) for d in days), default=1)
    lines = [head, "", f"uploads per day (UTC, last {len(days)} days)"]
    for day in days:
        uploads = int(day.get("uploads") or 0)
        bar = "#" * (math.ceil(uploads * BAR_WIDTH / peak) if peak and uploads else 0)
        lines.append(f"{cell(day.get('date'))}  {str(uploads).rjust(width)}  {bar}".rstrip())
    cameras = [c for c in data.get("top_cameras") or [] if isinstance(c, dict)]
    lines += ["", table(cameras, [("camera", "camera"), ("images", "images")]) if cameras else "no cameras"]
    return "\n".join(lines)


@main.command("stats")
@pass_settings
def stats(settings: Settings) -> None:
    """Your team's upload statistics: uploads per day (30 days), formats, top cameras."""
    output(settings, settings.client().request("GET", "/v1/stats"), stats_text)
