"""KeepAliveGets: keep-alive GETs with google-auth credentials, retries and reconnects,
against a small local HTTP server that plays the JSON API's failure modes."""

from __future__ import annotations

import datetime as dt
import http.server
import socket
import threading
from collections.abc import Iterator

import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.oauth2.credentials import Credentials

from aperture.storage.keepalive import KeepAliveGets


class Server(http.server.ThreadingHTTPServer):
    """Answers each GET with the next scripted (status, close) pair, then 200; records what it saw."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: list[tuple[int, bool | str]] = []
        self.body = b'{"generation": "7"}'
        self.connections = 0
        self.authorizations: list[str | None] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        with self.server.lock:
            self.server.authorizations.append(self.headers.get("Authorization"))
            status, close = self.server.script.pop(0) if self.server.script else (200, False)
        body = self.server.body if status == 200 else b'{"error": {}}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close == "short":  # promises the whole body, sends half of it and hangs up
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        if close is True:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        if close:  # "silent": closed without saying so, as an idle keep-alive connection is
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_gets_share_one_kept_alive_connection_per_thread(server):
    reader = KeepAliveGets(server.url, AnonymousCredentials())

    answers = [reader.get("/o/a?fields=generation") for _ in range(5)]

    assert answers == [(200, b'{"generation": "7"}')] * 5
    assert server.connections == 1


def test_a_connection_the_server_closed_is_opened_again(server):
    server.script = [(200, True), (200, True)]
    reader = KeepAliveGets(server.url, AnonymousCredentials())

    answers = [reader.get("/o/a")[0] for _ in range(3)]

    assert answers == [200, 200, 200]
    assert server.connections == 3


def test_a_connection_closed_without_notice_is_opened_again_and_the_get_sent_again(server):
    server.script = [(200, "silent")]
    reader = KeepAliveGets(server.url, AnonymousCredentials())

    answers = [reader.get("/o/a")[0] for _ in range(2)]

    assert answers == [200, 200]
    assert server.connections == 2


def test_throttling_and_server_errors_are_retried(server):
    server.script = [(503, False), (429, False)]
    reader = KeepAliveGets(server.url, AnonymousCredentials())

    status, _ = reader.get("/o/a")

    assert status == 200
    assert len(server.authorizations) == 3


def test_a_server_error_that_lasts_is_answered_after_the_retries(server):
    server.script = [(503, False)] * 4
    reader = KeepAliveGets(server.url, AnonymousCredentials())

    status, _ = reader.get("/o/a")

    assert status == 503
    assert len(server.authorizations) == 4


def test_not_found_is_not_retried(server):
    server.script = [(404, False)]
    reader = KeepAliveGets(server.url, AnonymousCredentials())

    assert reader.get("/o/missing")[0] == 404
    assert len(server.authorizations) == 1


def test_an_unreachable_server_is_service_unavailable():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reader = KeepAliveGets(f"http://127.0.0.1:{port}", AnonymousCredentials())

    with pytest.raises(gexc.ServiceUnavailable):
        reader.get("/o/a")


def test_credentials_sign_each_get_and_a_401_refreshes_them_once(server):
    tokens = iter(["second", "third"])
    credentials = Credentials(
        token="first",
        expiry=dt.datetime.utcnow() + dt.timedelta(hours=1),  # google-auth compares naive UTC
        refresh_handler=lambda request, scopes: (next(tokens), dt.datetime.utcnow() + dt.timedelta(hours=1)),
    )
    server.script = [(401, False), (401, False)]
    reader = KeepAliveGets(server.url, credentials)

    status, _ = reader.get("/o/a")

    assert status == 401  # refreshed once, refused again: answered, not looped
    assert server.authorizations == ["Bearer first", "Bearer second"]
    assert reader.get("/o/a")[0] == 200
    assert server.authorizations[-1] == "Bearer second"


class Sink:
    def __init__(self, stop_after: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.stop_after = stop_after

    def write(self, chunk: bytes) -> int:
        if self.stop_after is not None and len(self.chunks) >= self.stop_after:
            raise OSError("reader closed")
        self.chunks.append(chunk)
        return len(chunk)


def test_download_hands_on_the_body_in_pieces_of_at_most_the_chunk_size(server):
    server.body = bytes(range(256)) * 400  # 102,400 bytes
    reader = KeepAliveGets(server.url, AnonymousCredentials(), chunk_bytes=16_384)
    sink = Sink()

    reader.download("/o/a?alt=media", sink)

    assert b"".join(sink.chunks) == server.body
    assert max(map(len, sink.chunks)) <= 16_384


def test_download_retries_a_server_error_before_the_first_byte(server):
    server.script = [(503, False)]
    reader = KeepAliveGets(server.url, AnonymousCredentials())
    sink = Sink()

    reader.download("/o/a?alt=media", sink)

    assert b"".join(sink.chunks) == server.body
    assert len(server.authorizations) == 2


def test_download_of_a_missing_object_raises_not_found(server):
    server.script = [(404, False)]
    reader = KeepAliveGets(server.url, AnonymousCredentials())

    with pytest.raises(gexc.NotFound):
        reader.download("/o/missing?alt=media", Sink())
    assert reader.get("/o/a")[0] == 200  # the connection is still good
    assert server.connections == 1


def test_a_consumer_that_gives_up_stops_the_transfer_and_the_next_get_works(server):
    server.body = b"x" * 1_000_000
    reader = KeepAliveGets(server.url, AnonymousCredentials(), chunk_bytes=1024)

    with pytest.raises(OSError, match="reader closed"):
        reader.download("/o/a?alt=media", Sink(stop_after=2))

    assert reader.get("/o/a")[0] == 200
    assert server.connections == 2  # the cut connection was not reused


def test_downloads_and_gets_one_after_another_share_one_connection(server):
    reader = KeepAliveGets(server.url, AnonymousCredentials(), chunk_bytes=1024)

    for _ in range(3):
        sink = Sink()
        reader.download("/o/a?alt=media", sink)
        assert b"".join(sink.chunks) == server.body
        assert reader.get("/o/a")[0] == 200

    assert server.connections == 1
    assert len(server.authorizations) == 6  # no request was refused and sent again


def test_a_download_cut_off_part_way_is_service_unavailable_not_a_short_object(server):
    server.body = b"x" * 100_000
    server.script = [(200, "short")]
    reader = KeepAliveGets(server.url, AnonymousCredentials(), chunk_bytes=8192)
    sink = Sink()

    with pytest.raises(gexc.ServiceUnavailable, match="cut off"):
        reader.download("/o/a?alt=media", sink)

    assert sum(map(len, sink.chunks)) < len(server.body)
    assert reader.get("/o/a")[0] == 200  # a new connection serves the next request
