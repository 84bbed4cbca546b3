"""Cloud Storage access for the functions: object metadata and streaming reads.

A thin repository over google-cloud-storage; it takes the client as a
parameter so tests and the local stack use the real library against
fake-gcs-server.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import urllib3
from google.api_core import exceptions as gexc
from google.auth.transport.urllib3 import AuthorizedHttp
from google.cloud import storage
from google_crc32c import Checksum

from aperture.domain.errors import Gone
from aperture.domain.records import ObjectInfo
from aperture.storage.clients import DOWNLOAD_CHUNK_BYTES
from aperture.storage.keepalive import RETRY_STATUSES, KeepAliveGets

# The metadata fields `info` reads (GCS JSON API partial response).
# Objects up to this size are read whole on the calling thread by `stream` (measured: docs/decisions.md).
WHOLE_READ_BYTES = 1024 * 1024
_INFO_FIELDS = "generation%2Csize%2CcontentType%2Cmd5Hash"
# Statuses worth another try (the JSON API's retry guidance): throttling and server errors.
_RETRY_STATUSES = tuple(sorted(RETRY_STATUSES))


def _transport(client: storage.Client, method: str) -> AuthorizedHttp:
    """google-auth's urllib3 transport with the client's credentials, retrying `method` on 429 and 5xx."""
    return AuthorizedHttp(
        client._credentials,
        http=urllib3.PoolManager(
            maxsize=16,
            retries=urllib3.Retry(
                total=3,
                backoff_factor=0.05,
                status_forcelist=_RETRY_STATUSES,
                allowed_methods=frozenset({method}),
                raise_on_status=False,
            ),
        ),
    )


class ObjectStore:
    def __init__(self, client: storage.Client):
        self._client = client
        # Every stats request reads an object's metadata (an overwrite must never
        # be served stale), downloads it, or both: over one keep-alive connection
        # per thread, with the client's credentials (keepalive.py).
        self._gets = KeepAliveGets(client.api_endpoint, client._credentials, chunk_bytes=DOWNLOAD_CHUNK_BYTES)
        # `create` goes the same way: the library's upload path cost 2.5 ms of CPU
        # per 1 MB object here against 1.0 ms for one multipart POST whose body
        # is sent in pieces (no 1 MB copy to assemble it). Its writes are
        # create-only (ifGenerationMatch=0), so a retried POST cannot overwrite.
        self._writes = _transport(client, "POST")
        # Streaming downloads run here: a thread per download cost 0.3 ms to start.
        self._downloads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gcs-stream")

    def info(self, bucket: str, name: str) -> ObjectInfo | None:
        """Current metadata of an object, or None if it (or its bucket) does not exist."""
        path = f"/storage/v1/b/{quote(bucket, safe='~')}/o/{quote(name, safe='~')}?fields={_INFO_FIELDS}"
        status, body = self._gets.get(path)  # ServiceUnavailable when unreachable, after retries
        if status in (403, 404):
            return None
        if status != 200:
            raise gexc.from_http_status(status, f"GET {path}: {body[:300]!r}")
        meta = json.loads(body)
        return ObjectInfo(
            bucket=bucket,
            name=name,
            generation=int(meta["generation"]),
            size=int(meta.get("size") or 0),
            content_type=meta.get("contentType"),
            md5_hash=meta.get("md5Hash"),
        )

    def create(
        self, bucket: str, name: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None
    ) -> int | None:
        """Write a new object (with custom `metadata`); its generation, or None (and no write)
        when the name is taken (so the result is truthy exactly when this call wrote it).

        One multipart upload (JSON API), create-only, with the CRC32C of the
        bytes, so that Cloud Storage refuses a body damaged on the way
        (fake-gcs-server stores its own checksum instead of checking ours).
        """
        resource = {
            "name": name,
            "contentType": content_type,
            "crc32c": base64.b64encode(Checksum(data).digest()).decode(),
        }
        if metadata:
            resource["metadata"] = metadata
        boundary = uuid.uuid4().hex
        head = (
            f"--{boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n"
            f"{json.dumps(resource)}\r\n--{boundary}\r\ncontent-type: {content_type}\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        url = f"{self._client.api_endpoint}/upload/storage/v1/b/{quote(bucket, safe='~')}/o"
        try:
            # A tuple body goes out piece by piece (and again, whole, on a retry).
            response = self._writes.request(
                "POST",
                url + "?uploadType=multipart&ifGenerationMatch=0&fields=generation",
                body=(head, data, tail),
                headers={
                    "Content-Type": f'multipart/related; boundary="{boundary}"',
                    "Content-Length": str(len(head) + len(data) + len(tail)),
                },
            )
        except urllib3.exceptions.HTTPError as exc:  # connection failures, after the retries
            raise gexc.ServiceUnavailable(f"POST {url}: {exc}") from exc
        if response.status == 412:
            return None
        if response.status != 200:
            raise gexc.from_http_status(response.status, f"POST {url} ({name}): {response.data[:300]!r}")
        try:
            return int(json.loads(response.data)["generation"])
        except (ValueError, KeyError, TypeError):
            return -1  # written, generation not reported: truthy, matches no precondition

    def delete(self, bucket: str, name: str, generation: int | None = None) -> None:
        try:
            self._client.bucket(bucket).blob(name).delete(if_generation_match=generation)
        except (gexc.NotFound, gexc.PreconditionFailed):
            pass

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object whose name starts with `prefix`; how many were deleted."""
        deleted = 0
        for blob in self._client.list_blobs(bucket, prefix=prefix):
            try:
                blob.delete()
                deleted += 1
            except gexc.NotFound:
                pass  # deleted meanwhile: the outcome wanted
        return deleted

    def purge(self, bucket: str, name: str, generation: int) -> None:
        """Delete exactly this generation for good, live or noncurrent (in a versioned bucket a
        plain delete only makes the live generation noncurrent)."""
        try:
            self._client.bucket(bucket).delete_blob(name, generation=generation)
        except gexc.NotFound:
            pass  # deleted meanwhile: the outcome wanted

    def delete_generations(self, bucket: str, name: str) -> int:
        """Delete every stored generation of the object `name`, live and noncurrent; how many."""
        return self._purge_listed(bucket, name, lambda blob_name: blob_name == name)

    def purge_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every generation, live and noncurrent, of every object under `prefix`; how many."""
        return self._purge_listed(bucket, prefix, lambda blob_name: blob_name.startswith(prefix))

    def _purge_listed(self, bucket: str, prefix: str, wanted) -> int:
        deleted = 0
        for blob in self._client.list_blobs(bucket, prefix=prefix, versions=True):
            if not wanted(blob.name):
                continue  # same prefix, another object (name "a" lists "a.png" too)
            self.purge(bucket, blob.name, int(blob.generation))
            deleted += 1
        return deleted

    def list_page(self, bucket: str, prefix: str, *, limit: int, start_after: str | None = None) -> list[ObjectInfo]:
        """Up to `limit` live objects under `prefix`, by name, after `start_after` (the repair sweep's page),
        with their creation time."""
        found = []
        blobs = self._client.list_blobs(bucket, prefix=prefix, start_offset=start_after, max_results=limit + 1)
        for blob in blobs:
            if blob.name == start_after:
                continue  # start_offset is inclusive
            created = blob.time_created.isoformat().replace("+00:00", "Z") if blob.time_created else None
            found.append(
                ObjectInfo(
                    bucket=bucket,
                    name=blob.name,
                    generation=int(blob.generation),
                    size=int(blob.size or 0),
                    content_type=blob.content_type,
                    md5_hash=blob.md5_hash,
                    metadata=tuple(sorted((blob.metadata or {}).items())),
                    created=created,
                )
            )
            if len(found) == limit:
                break
        return found

    def copy(self, bucket: str, name: str, generation: int, target: str) -> bool:
        """Copy one generation to a new name, create-only; False when the target exists."""
        source = self._client.bucket(bucket)
        try:
            source.copy_blob(source.blob(name), source, target, source_generation=generation, if_generation_match=0)
        except gexc.PreconditionFailed:
            return False
        return True

    def read(self, info: ObjectInfo) -> bytes:
        """The bytes of exactly this generation (a later overwrite cannot mix in); Gone when it was deleted."""
        blob = self._client.bucket(info.bucket).blob(info.name, generation=info.generation)
        try:
            return blob.download_as_bytes(checksum=None)
        except gexc.NotFound as exc:
            raise Gone(f"{info.bucket}/{info.name}#{info.generation}: {exc.message}") from exc

    def stream(self, info: ObjectInfo) -> StreamingReader:
        """A file object whose reads return bytes as they arrive from storage.

        The download runs on a pooled background thread so that a consumer such as
        Pillow's decoder works on the first chunks while later ones are still
        on the wire: decode time and transfer time overlap instead of adding.
        An object of at most `WHOLE_READ_BYTES` is read at once on the calling
        thread instead: it is on the wire for about a millisecond, less than
        handing chunks from thread to thread costs. Either way a failed read
        raises from the reader's reads, not from here.
        """
        path = _media_path(info.bucket, info.name) + f"&generation={info.generation}"
        return self._reader(lambda sink: self._gets.download(path, sink), info.size)

    def stream_current(self, bucket: str, name: str) -> tuple[ObjectInfo, StreamingReader] | None:
        """The current generation's metadata and a reader of its bytes (as `stream`) from one
        GET, with no metadata request first; None when the object (or its bucket) does not exist."""
        try:
            started = self._gets.start(_media_path(bucket, name))
        except (gexc.NotFound, gexc.Forbidden):
            return None
        try:
            info = _media_info(bucket, name, started.header)
        except (TypeError, ValueError) as exc:  # no usable X-Goog-Generation: not a JSON API answer
            started.close()
            raise gexc.BadGateway(f"GET {bucket}/{name}: {exc}") from exc
        length = started.header("Content-Length")
        return info, self._reader(started.pump, int(length) if length else None)

    def _reader(self, pump: Callable[[StreamingReader], None], size: int | None) -> StreamingReader:
        """A reader that `pump` fills: at once on this thread for an object of at most
        `WHOLE_READ_BYTES`, else on a download thread (`stream` says why)."""
        reader = StreamingReader()

        def download() -> None:
            try:
                pump(reader)
            except BaseException as exc:  # handed to the reading thread
                reader.fail(exc)
            else:
                reader.finish()

        if size is not None and size <= WHOLE_READ_BYTES:
            download()
        else:
            self._downloads.submit(download)
        return reader


def _media_path(bucket: str, name: str) -> str:
    return f"/download/storage/v1/b/{quote(bucket, safe='~')}/o/{quote(name, safe='~')}?alt=media"


def _media_info(bucket: str, name: str, header: Callable[[str], str | None]) -> ObjectInfo:
    """What a media download's headers say of the object (the JSON API sends these with every download)."""
    hashes = dict(part.split("=", 1) for part in (header("X-Goog-Hash") or "").split(",") if "=" in part)
    return ObjectInfo(
        bucket=bucket,
        name=name,
        generation=int(header("X-Goog-Generation")),  # type: ignore[arg-type]  # None: TypeError, refused
        size=int(header("X-Goog-Stored-Content-Length") or header("Content-Length") or 0),
        content_type=header("Content-Type"),
        md5_hash=hashes.get("md5"),
    )


class StreamingReader(io.RawIOBase):
    """A seekable, read-only view of a download in progress.

    The writer side (the download thread) appends chunks; reads block until
    the bytes they ask for have arrived. Everything read stays buffered, so
    seeking backwards (which Image.open does) works.
    """

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()
        self._pos = 0
        self._done = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()

    # writer side -----------------------------------------------------------
    def write(self, chunk) -> int:  # type: ignore[override]
        if self.closed:  # the reader gave up (say, over the pixel limit): stop the download
            raise OSError("reader closed")
        with self._cond:
            self._buffer += chunk
            self._cond.notify_all()
        return len(chunk)

    def finish(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self._cond:
            self._error = exc
            self._done = True
            self._cond.notify_all()

    # reader side -----------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        else:  # SEEK_END needs the whole object
            self._wait_for(None)
            target = len(self._buffer) + offset
        self._pos = max(0, target)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        end = None if size is None or size < 0 else self._pos + size
        self._wait_for(end)
        stop = len(self._buffer) if end is None else min(end, len(self._buffer))
        data = bytes(self._buffer[self._pos : stop])
        self._pos += len(data)
        return data

    def readinto(self, target) -> int:  # type: ignore[override]
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def getvalue(self) -> bytes:
        """The whole object (waits for the download to end)."""
        self._wait_for(None)
        return bytes(self._buffer)

    def _wait_for(self, end: int | None) -> None:
        with self._cond:
            while not self._done and (end is None or len(self._buffer) < end):
                self._cond.wait()
            if self._error is not None:
                raise self._error
