"""The local gateway routes by infra/openapi.yaml as API Gateway does (S11, S12),
checked offline: the real route table, the real gateway app and a stub backend
that records what reaches it.

API Gateway (ESPv2) without `x-google-allow: all` answers a path no template
matches with 404 and an undeclared method on a declared path with 405, itself,
before the key check; only declared operations reach a function."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.tools import require

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "infra" / "openapi.yaml"
BACKENDS = ("stats", "admin", "upload", "images", "jobs", "search")


def _exchange(requests: list[tuple[str, str, dict[str, str]]]) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """Send each (method, path, headers) through the gateway; answer every
    backend call with 200. Returns the gateway's answers and the calls that
    reached a backend as (backend, method, path as received)."""
    require("aiohttp")
    yaml = require("yaml")
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer
    from yarl import URL

    from devstack import gateway

    spec = yaml.safe_load(SPEC_PATH.read_text())
    reached: list[tuple[str, str, str]] = []

    async def backend(request: web.Request) -> web.Response:
        _, _, name, rest = request.raw_path.split("/", 3)  # /_backend/NAME/...
        reached.append((name, request.method, "/" + rest))
        return web.json_response({"backend": name})

    async def main() -> list[dict]:
        stub = web.Application()
        stub.router.add_route("*", "/{tail:.*}", backend)
        async with TestServer(stub) as stub_server:
            base = str(stub_server.make_url("")).rstrip("/")
            backends = {name: f"{base}/_backend/{name}" for name in BACKENDS}
            async with TestClient(TestServer(gateway.create_app(spec, backends))) as client:
                answers = []
                root = str(client.make_url("")).rstrip("/")
                for method, path, headers in requests:
                    # encoded=True: the path goes out byte for byte (no requoting of %2E)
                    url = URL(root + path, encoded=True)
                    response = await client.session.request(method, url, headers=headers, allow_redirects=False)
                    body = await response.read()
                    is_json = bool(body) and response.content_type == "application/json"
                    document = await response.json() if is_json else None
                    answers.append({"status": response.status, "headers": response.headers.copy(), "json": document})
                return answers

    return asyncio.run(main()), reached


def _assert_gateway_error(answer: dict, status: int) -> None:
    assert answer["status"] == status, answer
    assert answer["json"]["error"]["code"] == status
    assert answer["json"]["error"]["message"]
    assert answer["headers"].get("X-Request-Id")


def test_declared_stats_requests_reach_the_stats_function_unchanged():
    paths = ["/stats/IMG_1.jpg/p99", "/stats/dir/sub/photo%2Epng/p99.9?channel=r", "/stats/a%2Fb.png/mean"]
    answers, reached = _exchange([("GET", path, {}) for path in paths] + [("HEAD", "/stats/IMG_1.jpg/mean", {})])
    assert [a["status"] for a in answers] == [200] * 4
    # the whole path, escapes kept, goes to stats (APPEND_PATH_TO_ADDRESS), which splits off the function
    assert reached == [("stats", "GET", path) for path in paths] + [("stats", "HEAD", "/stats/IMG_1.jpg/mean")]


def test_health_answers_every_method():
    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    answers, reached = _exchange([(method, "/health", {}) for method in methods])
    assert [a["status"] for a in answers] == [200] * len(methods)
    assert reached == [("stats", method, "/health") for method in methods]


@pytest.mark.parametrize(
    "path", ["/nope", "/docs/a/b", "/v1", "/v1/unknown", "/v1/images/abc/unknown", "/stats", "/HEALTH"]
)
def test_an_unknown_path_is_the_gateways_json_404(path):
    answers, reached = _exchange([("GET", path, {}), ("POST", path, {"x-api-key": "k"})])
    for answer in answers:
        _assert_gateway_error(answer, 404)
    assert reached == []


@pytest.mark.parametrize(
    "method,path,allow",
    [
        ("POST", "/stats/IMG_1.jpg/mean", "GET, HEAD"),
        ("DELETE", "/stats/dir/IMG_1.jpg/p50", "GET, HEAD"),
        ("PUT", "/v1/images", "GET, POST"),
        ("PATCH", "/v1/teams/acme", "GET"),
        ("GET", "/v1/keys/key_1", "DELETE"),
        ("HEAD", "/v1/jobs", "GET, POST"),
    ],
)
def test_an_undeclared_method_is_the_gateways_json_405_with_allow(method, path, allow):
    # with and without a key: the method is refused before any key check
    answers, reached = _exchange([(method, path, {}), (method, path, {"x-api-key": "k"})])
    for answer in answers:
        assert answer["status"] == 405, answer
        assert answer["headers"]["Allow"] == allow
        if method != "HEAD":  # a HEAD answer has no body
            _assert_gateway_error(answer, 405)
    assert reached == []


def test_declared_v1_operations_still_need_the_key():
    answers, reached = _exchange(
        [("GET", "/v1/images", {}), ("GET", "/v1/images", {"x-api-key": "k"}), ("DELETE", "/v1/keys/key_1", {})]
    )
    assert [a["status"] for a in answers] == [401, 200, 401]
    assert reached == [("images", "GET", "/v1/images")]


def _relay(requests: list[tuple[str, str]]) -> list[tuple[int, dict, bytes]]:
    """Send each (method, path) through the gateway to a stats backend answering
    /stats/{size}/{status} with `size` bytes (a HEAD: headers only) and that status."""
    require("aiohttp")
    yaml = require("yaml")
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from devstack import gateway

    spec = yaml.safe_load(SPEC_PATH.read_text())

    async def backend(request: web.Request) -> web.Response:
        size, status = (int(part) for part in request.path.rsplit("/", 2)[-2:])
        body = bytes(i % 251 for i in range(size))
        headers = {"ETag": '"e"', "Content-Type": "application/octet-stream"}
        if status == 304:
            return web.Response(status=304, headers={"ETag": '"e"'})
        return web.Response(status=status, body=body, headers=headers)

    async def main() -> list[tuple[int, dict, bytes]]:
        stub = web.Application()
        stub.router.add_route("*", "/{tail:.*}", backend)
        async with TestServer(stub) as stub_server:
            backends = {"stats": str(stub_server.make_url("")).rstrip("/")}
            async with TestClient(TestServer(gateway.create_app(spec, backends))) as client:
                answers = []
                for method, path in requests:
                    response = await client.request(method, path)
                    answers.append((response.status, response.headers.copy(), await response.read()))
                return answers

    return asyncio.run(main())


@pytest.mark.parametrize("size", [0, 2, 65_536, 65_537, 300_000])
def test_answers_small_and_large_reach_the_client_whole(size):
    [(status, headers, body)] = _relay([("GET", f"/stats/{size}/200")])

    assert status == 200
    assert body == bytes(i % 251 for i in range(size))
    assert int(headers["Content-Length"]) == size
    assert (headers["ETag"], headers["Content-Type"]) == ('"e"', "application/octet-stream")
    assert headers["X-Request-Id"]


def test_head_and_not_modified_answers_carry_no_body():
    [(head_status, head_headers, head_body), (cached_status, cached_headers, cached_body)] = _relay(
        [("HEAD", "/stats/1000/200"), ("GET", "/stats/10/304")]
    )

    assert (head_status, head_body, head_headers["Content-Length"]) == (200, b"", "1000")
    assert (cached_status, cached_body, cached_headers["ETag"]) == (304, b"", '"e"')


def test_the_gateway_drops_idle_backend_connections_before_gunicorn_does():
    # A request sent on a pooled connection the function's gunicorn is closing fails, and
    # aiohttp sends only idempotent ones again: the gateway must let go first.
    require("aiohttp")
    gunicorn_config = require("gunicorn.config")
    from devstack import gateway

    assert gateway.BACKEND_KEEPALIVE_SECONDS < gunicorn_config.Keepalive.default
