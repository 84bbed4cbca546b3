"""GETs to the Cloud Storage JSON API on one keep-alive connection per thread.

Every stats request reads its object's metadata (an overwrite must never be
served stale, S4) or, on an instance that holds none of its histograms,
downloads it at once: either is on the request path. Through urllib3 (pool
manager, URL re-parsing and re-encoding) the metadata GET cost ~0.5 ms of CPU here, and the library's download of a
250 KB JPEG (requests, its media layer) ~1.8 ms; over a `http.client`
connection per thread, with the client's google-auth credentials for the
Authorization header, 0.25 ms each (docs/decisions.md, "The stats request
path: keep-alive GETs").

What the library's transport did, this still does: credentials are applied
(and refreshed) by google-auth; 429 and 5xx are retried with backoff, as the
JSON API's retry guidance says; a kept-alive connection the server closed is
opened again and the GET sent again (a GET is safe to repeat); a 401
refreshes the credentials once. A download is retried only until its first
byte has been handed on.
"""

from __future__ import annotations

import http.client
import threading
import time
from typing import Protocol
from urllib.parse import urlsplit

from google.api_core import exceptions as gexc
from google.auth import credentials as ga_credentials
from google.auth.transport.requests import Request as AuthRequest

# Statuses worth another try (the JSON API's retry guidance): throttling and server errors.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_ATTEMPTS = 4
_BACKOFF = 0.05  # seconds before the 2nd attempt, doubling after
# A reused keep-alive connection the server closed between two requests shows as one of these.
_DROPPED = (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionError)


class Sink(Protocol):
    def write(self, chunk: bytes) -> int: ...


class KeepAliveGets:
    def __init__(
        self, endpoint: str, credentials: ga_credentials.Credentials, chunk_bytes: int = 256 * 1024, timeout=60.0
    ):
        url = urlsplit(endpoint)
        self._https = url.scheme == "https"
        self._host = url.netloc
        self._base = endpoint.rstrip("/")
        self._credentials = credentials
        self._chunk = chunk_bytes
        self._timeout = timeout
        self._local = threading.local()
        self._auth_request = AuthRequest()  # google-auth's transport, for token refreshes only
        self._auth_lock = threading.Lock()

    def get(self, path: str) -> tuple[int, bytes]:
        """(status, body) of GET `path` (query included, already encoded); 429/5xx after the
        retries are answered too. Raises `ServiceUnavailable` when the server cannot be reached."""
        response = self._open(path)
        try:
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise gexc.ServiceUnavailable(f"GET {self._base}{path}: {type(exc).__name__}: {exc}") from exc
        self._release(response)
        return response.status, body

    def download(self, path: str, sink: Sink) -> None:
        """Write the body of GET `path` to `sink` as it arrives. Raises the API's error for a
        status other than 200 (NotFound, ...), `ServiceUnavailable` when unreachable or cut off
        part-way, and what `sink.write` raises (the consumer gave up), which stops the transfer."""
        self.start(path).pump(sink)

    def start(self, path: str) -> Started:
        """GET `path` up to its headers: the response (status and headers, raising the API's
        error for a status other than 200) and, with `pump`, its body. The connection leaves
        this thread's slot meanwhile, so the body may be pumped on another thread."""
        response = self._open(path)
        if response.status != 200:
            body = response.read()
            self._release(response)
            raise gexc.from_http_status(response.status, f"GET {self._base}{path}: {body[:300]!r}")
        conn, self._local.conn = self._local.conn, None
        return Started(self, path, response, conn)

    def _open(self, path: str) -> http.client.HTTPResponse:
        """The response to GET `path`, its headers read, after the retries."""
        refreshed = False
        for attempt in range(_ATTEMPTS):
            if attempt:
                time.sleep(_BACKOFF * 2 ** (attempt - 1))
            try:
                response = self._send(path)
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                if attempt == _ATTEMPTS - 1:
                    raise gexc.ServiceUnavailable(f"GET {self._base}{path}: {type(exc).__name__}: {exc}") from exc
                continue
            again = (response.status == 401 and not refreshed) or (
                response.status in RETRY_STATUSES and attempt < _ATTEMPTS - 1
            )
            if not again:
                return response
            response.read()
            self._release(response)
            if response.status == 401:
                refreshed = True
                with self._auth_lock:
                    self._credentials.refresh(self._auth_request)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(self, path: str) -> http.client.HTTPResponse:
        headers: dict[str, str] = {}
        with self._auth_lock:  # one refresh shared by every thread
            self._credentials.before_request(self._auth_request, "GET", self._base + path, headers)
        conn = self._connection()
        try:
            conn.request("GET", path, headers=headers)
            return conn.getresponse()
        except _DROPPED:
            # The server closed a kept-alive connection between two requests: a fresh one, at once.
            self._drop()
            conn = self._connection()
            conn.request("GET", path, headers=headers)
            return conn.getresponse()

    def _release(self, response: http.client.HTTPResponse) -> None:
        """Done with `response`, whose body has been read: the connection takes the next request."""
        response.read()  # nothing left to read; marks the response closed, or the next request is refused
        if response.will_close:
            self._drop()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = self._local.conn = cls(self._host, timeout=self._timeout)
        return conn

    def _adopt(self, conn: http.client.HTTPConnection) -> None:
        """An idle connection for the calling thread's slot; closed if the slot is taken."""
        if getattr(self._local, "conn", None) is None:
            self._local.conn = conn
        else:
            conn.close()

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()


class Started:
    """A GET whose headers have been read (`response`) and whose body `pump` writes to a sink,
    on any thread: the connection belongs to it until then."""

    def __init__(self, gets: KeepAliveGets, path: str, response: http.client.HTTPResponse, conn):
        self.response = response
        self._gets = gets
        self._path = path
        self._conn: http.client.HTTPConnection | None = conn

    def header(self, name: str) -> str | None:
        return self.response.getheader(name)

    def pump(self, sink: Sink) -> None:
        """Write the body to `sink` as it arrives. Raises `ServiceUnavailable` when cut off
        part-way and what `sink.write` raises (the consumer gave up), which stops the transfer."""
        response, where = self.response, f"GET {self._gets._base}{self._path}"
        received = 0
        try:
            while True:
                try:
                    chunk = response.read1(self._gets._chunk)
                except (OSError, http.client.HTTPException) as exc:
                    raise gexc.ServiceUnavailable(f"{where}: cut off after {received} bytes: {exc}") from exc
                if not chunk:
                    break
                received += len(chunk)
                sink.write(chunk)  # raising: the rest of the body is still on the wire
            if response.length:  # the server closed before its Content-Length: not the whole object
                raise gexc.ServiceUnavailable(f"{where}: cut off after {received} bytes")
        except BaseException:
            self.close()
            raise
        response.read()  # marks the response closed, or the connection refuses its next request
        conn, self._conn = self._conn, None
        if conn is not None:
            if response.will_close:
                conn.close()
            else:  # kept alive for the next GET of whichever thread pumped it
                self._gets._adopt(conn)

    def close(self) -> None:
        """Give up the body: the connection is closed (its rest is still on the wire)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
