"""The local API gateway: routes by infra/openapi.yaml, as API Gateway does.

Path templates follow API Gateway's rules ({var} one segment, {var=**} any
number), an operation with `security: api_key` needs an `x-api-key` header,
and each request is proxied to the function named by its x-google-backend
address. Like API Gateway (ESPv2) without `x-google-allow: all`, only what the
spec declares reaches a function: a path no template matches is answered 404,
and a method the matched path does not declare 405 with an `Allow` header
listing the declared ones, both by the gateway itself, before any key check.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import uvloop
import yaml
from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, TCPConnector, web
from yarl import URL

from aperture.runtime.logs import redact_path as redact

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
API_KEY_HEADER = "x-api-key"
# Below gunicorn's keepalive (2 s), the functions' server (functions-framework runs gunicorn).
BACKEND_KEEPALIVE_SECONDS = 1.5
# Answers up to this size are read whole and sent in one write; larger ones are streamed.
WHOLE_BODY_BYTES = 64 * 1024
SESSION = web.AppKey("session", ClientSession)

# An authenticator sees the key (or None) and the matched operation, and
# answers None to let the request through or (status, message) to refuse it.
Authenticator = Callable[[str | None, "Route", web.Request], Awaitable[tuple[int, str] | None]]


@dataclass(frozen=True)
class Route:
    template: str
    regex: re.Pattern
    operations: dict[str, Operation]


@dataclass(frozen=True)
class Operation:
    method: str
    operation_id: str
    backend: str
    secured: bool


def backend_name(x_google_backend: dict) -> str:
    """The function an x-google-backend address points at: its last path segment."""
    return x_google_backend["address"].rstrip("/").rsplit("/", 1)[-1]


def template_regex(template: str) -> re.Pattern:
    segments = template.strip("/").split("/")
    parts = []
    for index, segment in enumerate(segments):
        match = re.fullmatch(r"\{([A-Za-z_][A-Za-z0-9_]*)(=\*\*|=\*)?\}", segment)
        if (segment == "**" or (match and match.group(2) == "=**")) and index != len(segments) - 1:
            # API Gateway refuses the whole config over such a template: so does the local stack.
            raise ValueError(f"{template}: '**' must be the last segment of a path template")
        if match is None:
            parts.append(re.escape(segment))
        elif match.group(2) == "=**":
            parts.append(f"(?P<{match.group(1)}>.*)")
        else:
            parts.append(f"(?P<{match.group(1)}>[^/]+)")
    return re.compile("^/" + "/".join(parts) + "/?$")


def load_routes(spec: dict) -> list[Route]:
    default = spec.get("x-google-backend")
    global_security = bool(spec.get("security"))
    routes = []
    for template, item in spec.get("paths", {}).items():
        operations = {}
        for method, op in item.items():
            if method not in METHODS:
                continue
            backend_spec = op.get("x-google-backend", default)
            if backend_spec is None:
                raise ValueError(f"{method.upper()} {template}: no x-google-backend and no default")
            backend = backend_name(backend_spec)
            secured = any("api_key" in s for s in op.get("security", [])) if "security" in op else global_security
            operations[method.upper()] = Operation(method.upper(), op.get("operationId", ""), backend, secured)
        routes.append(Route(template, template_regex(template), operations))
    # Literal segments beat wildcards, as in API Gateway: try more specific first.
    routes.sort(key=lambda r: (r.template.count("{"), -len(r.template)))
    return routes


def match(routes: list[Route], path: str) -> Route | None:
    for route in routes:
        if route.regex.match(path):
            return route
    return None


def request_path(request: web.Request) -> str:
    """The path as sent, percent-escapes kept: templates match it segment by
    segment, so an escaped "/" (%2F) stays inside its segment, as in ESPv2."""
    return request.raw_path.split("?", 1)[0]


def allowed_methods(route: Route) -> str:
    return ", ".join(sorted(route.operations))


def error(status: int, message: str, request_id: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"error": {"code": status, "message": message}},
        status=status,
        headers={**(headers or {}), "X-Request-Id": request_id},
    )


async def require_key_present(key: str | None, route: Route, request: web.Request) -> tuple[int, str] | None:
    return None if key else (401, "missing API key: send it in the x-api-key header")


def create_app(
    spec: dict, backends: dict[str, str], authenticator: Authenticator = require_key_present
) -> web.Application:
    routes = load_routes(spec)
    # Long request lines reach the functions, which answer with their own 400 reasons.
    app = web.Application(client_max_size=0, handler_args={"max_line_size": 65536, "max_field_size": 65536})

    async def on_startup(app: web.Application) -> None:
        app[SESSION] = ClientSession(
            # A proxy keeps no cookies (and skips the jar's work on every request).
            cookie_jar=DummyCookieJar(),
            # Idle connections are dropped before the functions' gunicorn drops them (its
            # keepalive is 2 s): a POST sent on a connection the backend is closing is not
            # retried by aiohttp and would answer 502.
            connector=TCPConnector(limit=256, keepalive_timeout=BACKEND_KEEPALIVE_SECONDS),
            timeout=ClientTimeout(total=600),
            auto_decompress=False,
        )

    async def on_cleanup(app: web.Application) -> None:
        await app[SESSION].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        request["request_id"] = request_id
        path = request_path(request)
        route = match(routes, path)
        operation = route.operations.get(request.method) if route else None
        backend = operation.backend if operation else "-"
        status = 0
        try:
            # What the spec does not declare never reaches a function (API Gateway
            # answers these itself; there is no x-google-allow: all).
            if route is None:
                status = 404
                return error(404, f"no route for {request.method} {path}", request_id)
            if operation is None:
                status = 405
                allow = allowed_methods(route)
                message = f"method {request.method} is not allowed on {route.template}; use {allow}"
                return error(405, message, request_id, {"Allow": allow})
            if operation.secured:
                refusal = await authenticator(request.headers.get(API_KEY_HEADER), route, request)
                if refusal is not None:
                    status = refusal[0]
                    # 503: the refusal could not be audited (edge_auth); the client may retry.
                    return error(refusal[0], refusal[1], request_id, {"Retry-After": "5"} if status == 503 else None)
            base = backends.get(backend)
            if base is None:
                status = 502
                return error(502, f"backend {backend!r} is not running", request_id)
            response = await _forward(request, app[SESSION], base, request_id)
            status = response.status
            return response
        finally:
            _log(request, status, backend, request_id, started)

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", r"/{tail:[\s\S]*}", proxy)  # every path, control characters too
    return app


async def _forward(request: web.Request, session: ClientSession, base: str, request_id: str) -> web.StreamResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    if request.content_length is not None:
        # Keep the declared length (streamed bodies would otherwise go chunked):
        # functions refuse oversized bodies from it before reading them.
        headers["Content-Length"] = str(request.content_length)
    headers["X-Request-Id"] = request_id
    headers["X-Forwarded-For"] = forwarded_for(request)
    headers["X-Forwarded-Proto"] = request.scheme
    body = request.content if request.body_exists else None
    try:
        upstream = await session.request(
            # encoded=True: forward the path byte for byte; "a/../b" is an object name, not a directory walk.
            request.method,
            URL(base + request.raw_path, encoded=True),
            headers=headers,
            data=body,
            allow_redirects=False,
        )
    except Exception as exc:  # connection refused, reset: the client gets a JSON 502
        return error(502, f"backend unavailable: {type(exc).__name__}", request_id)
    async with upstream:
        length = upstream.headers.get("Content-Length")
        if length is not None and int(length) <= WHOLE_BODY_BYTES and _has_body(request.method, upstream.status):
            # A small answer (most of them) goes out in one write, headers and body
            # together: each write is a wakeup of the client (docs/decisions.md).
            whole = web.Response(status=upstream.status, reason=upstream.reason, body=await upstream.read())
            _copy_headers(upstream, whole, request_id)
            return whole
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        _copy_headers(upstream, response, request_id)
        if length is not None:
            response.content_length = int(length)
        await response.prepare(request)
        async for chunk in upstream.content.iter_chunked(256 * 1024):
            await response.write(chunk)
        await response.write_eof()
        return response


def _copy_headers(upstream, response: web.StreamResponse, request_id: str) -> None:
    for key, value in upstream.headers.items():
        if key.lower() not in HOP_BY_HOP:
            response.headers.add(key, value)
    response.headers["X-Request-Id"] = request_id


def _has_body(method: str, status: int) -> bool:
    return method != "HEAD" and status not in (204, 304) and status >= 200


def forwarded_for(request: web.Request) -> str:
    """X-Forwarded-For as API Gateway's front end passes it on: what the client sent, then the address
    it connected from, then the gateway's own hop. Functions take the last but one entry as the
    client's (aperture.api.auth.client_ip); what a client writes itself stays to the left of it."""
    sent = request.headers.get("X-Forwarded-For", "").strip()
    hops = [sent] if sent else []
    hops.append(request.remote or "unknown")
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    hops.append(sockname[0] if sockname else "127.0.0.1")
    return ", ".join(hops)


def _log(request: web.Request, status: int, backend: str, request_id: str, started: float) -> None:
    path = redact(request.path)
    entry = {
        "severity": "WARNING" if status >= 500 or status == 0 else "INFO",
        "message": f"{request.method} {path} {status}",
        "component": "gateway",
        "request_id": request_id,
        "backend": backend,
        "httpRequest": {
            "requestMethod": request.method,
            "requestUrl": redact(request.path_qs),
            "status": status,
            "remoteIp": request.remote,
            "latency": f"{time.perf_counter() - started:.6f}s",
        },
    }
    sys.stdout.write(json.dumps(entry) + "\n")  # paths redacted: an upload link's token is its credential


def load_spec(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--backend", action="append", default=[], help="NAME=URL of a function")
    parser.add_argument("--project", help="check keys against this project's Firestore (else: presence only)")
    args = parser.parse_args(argv)
    backends = dict(b.split("=", 1) for b in args.backend)
    authenticator: Authenticator = require_key_present
    if args.project:
        from devstack.edge_auth import firestore_edge_check

        authenticator = firestore_edge_check(args.project)
    app = create_app(load_spec(args.spec), backends, authenticator)
    # uvloop: the gateway is a hop on every request, so its per-request cost shows in every benchmark.
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
