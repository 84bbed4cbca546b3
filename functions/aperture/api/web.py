"""The `web` function (spec S11): the web page, Swagger UI and the OpenAPI document.

* `GET /app` — the page (`aperture/web/app/index.html`); API Gateway refuses
  operations on the root path, so the page lives at /app.
* `GET /app/{file}` — the page's static files: only the regular files listed in
  `aperture/web/app/` (no sub-folders, no dotfiles), so no path reaches anything else.
* `GET /docs` — our Swagger UI page (`aperture/web/app/swagger/index.html`),
  `GET /docs/{file}` — its start-up script, and Swagger UI's own assets from the
  pinned `flask-swagger-ui` package's `dist/` folder (no CDN).
* `GET /openapi.json` — `aperture/web/openapi.yaml` as JSON, without any
  `x-google-*` key (backend addresses are not for browsers), without `host`, and
  with `schemes` set to the request's scheme so "Try it out" calls the same origin.

No key is needed for any of them. Every file answers with an `ETag` (304 on
`If-None-Match`), `Cache-Control`, `X-Content-Type-Options: nosniff` and a strict
`Content-Security-Policy`; anything else is the JSON 404 of every function.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import flask

from aperture.api.errors import guarded
from aperture.api.routing import Router
from aperture.domain.errors import ApiError

if TYPE_CHECKING:
    from aperture.config import Config
    from aperture.container import Container

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
APP_DIR = WEB_DIR / "app"
SWAGGER_PAGE_DIR = APP_DIR / "swagger"
OPENAPI_YAML = WEB_DIR / "openapi.yaml"

# Cache lifetimes: the page itself is revalidated on every load (a deploy shows
# at once); its scripts and styles may be an hour old; Swagger UI's assets only
# change with the pinned package version.
INDEX_CACHE = "public, no-cache"
ASSET_CACHE = "public, max-age=3600"
VENDOR_CACHE = "public, max-age=86400"
OPENAPI_CACHE = "public, max-age=300"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
    ".map": "application/json",
}


def swagger_dist() -> Path:
    """Swagger UI's built assets, as installed with the pinned flask-swagger-ui."""
    return Path(str(resources.files("flask_swagger_ui") / "dist"))


def build(container: Container) -> Callable[[flask.Request], flask.Response]:
    """The `web` function's handler (no key: these are public documents)."""
    return WebApi(container.config).handle


@dataclass(frozen=True)
class Asset:
    body: bytes
    etag: str
    content_type: str


class Folder:
    """The regular, non-hidden files of one folder with a known type, read on first use and kept."""

    def __init__(self, root: Path):
        self.root = root
        self._names = {
            p.name
            for p in (root.iterdir() if root.is_dir() else ())
            if p.is_file() and not p.name.startswith(".") and p.suffix in CONTENT_TYPES
        }
        self._assets: dict[str, Asset] = {}
        self._lock = threading.Lock()

    def __contains__(self, name: str) -> bool:
        return name in self._names

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._names)

    def get(self, name: str) -> Asset:
        if name not in self._names:  # the listing is the allowlist: "..", "a/b", ".env" are never in it
            raise ApiError(404, f"no such file: {name}")
        asset = self._assets.get(name)
        if asset is None:
            with self._lock:
                body = (self.root / name).read_bytes()
                asset = Asset(body, _etag(body), CONTENT_TYPES[Path(name).suffix])
                self._assets[name] = asset
        return asset


class WebApi:
    def __init__(self, config: Config):
        self.app = Folder(APP_DIR)
        self.swagger_page = Folder(SWAGGER_PAGE_DIR)
        self.swagger = Folder(swagger_dist())
        self._openapi: dict[str, Any] | None = None
        self._openapi_json: dict[str, Asset] = {}
        self._lock = threading.Lock()
        origins = " ".join(sorted({o for o in (_origin(config.public_url), _origin(config.storage_public_url)) if o}))
        extra = f" {origins}" if origins else ""
        # The page: scripts and styles of its own only; images also from signed links
        # (the gateway, or the storage host they may redirect to) and blob:/data: URLs.
        self.page_csp = (
            "default-src 'none'; script-src 'self'; style-src 'self'; "
            f"img-src 'self' blob: data: https:{extra}; connect-src 'self'{extra}; "
            "manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        # Swagger UI sets style attributes from its scripts (React), hence 'unsafe-inline' for styles only.
        self.docs_csp = (
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data:; connect-src 'self'{extra}; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        )
        self.router = Router(
            [
                ("/app", ("GET",), self.page),
                ("/app/<file>", ("GET",), self.page_file),
                ("/docs", ("GET",), self.docs),
                ("/docs/<file>", ("GET",), self.docs_file),
                ("/openapi.json", ("GET",), self.openapi),
            ]
        )

    def handle(self, request: flask.Request) -> flask.Response:
        response, _ = guarded(request, lambda: self.router(request))
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
        return response

    # -- routes ------------------------------------------------------------------

    def page(self, request: flask.Request) -> flask.Response:
        return _send(request, self.app.get("index.html"), INDEX_CACHE, self.page_csp)

    def page_file(self, request: flask.Request, file: str) -> flask.Response:
        cache = INDEX_CACHE if file == "index.html" else ASSET_CACHE
        return _send(request, self.app.get(file), cache, self.page_csp)

    def docs(self, request: flask.Request) -> flask.Response:
        return _send(request, self.swagger_page.get("index.html"), INDEX_CACHE, self.docs_csp)

    def docs_file(self, request: flask.Request, file: str) -> flask.Response:
        if file in self.swagger_page:
            return _send(request, self.swagger_page.get(file), ASSET_CACHE, self.docs_csp)
        return _send(request, self.swagger.get(file), VENDOR_CACHE, self.docs_csp)

    def openapi(self, request: flask.Request) -> flask.Response:
        scheme = _scheme(request)
        asset = self._openapi_json.get(scheme)
        if asset is None:
            document = dict(self._document())
            document.pop("host", None)
            document["schemes"] = [scheme]
            body = json.dumps(document, indent=1, sort_keys=False).encode()
            asset = Asset(body, _etag(body), "application/json")
            self._openapi_json[scheme] = asset
        response = _send(request, asset, OPENAPI_CACHE, "default-src 'none'; frame-ancestors 'none'")
        response.headers["Vary"] = "X-Forwarded-Proto"
        return response

    def _document(self) -> dict[str, Any]:
        """The OpenAPI document without x-google-* keys, read once per instance."""
        if self._openapi is None:
            with self._lock:
                if self._openapi is None:
                    import yaml  # only this route needs it

                    loaded = yaml.safe_load(OPENAPI_YAML.read_text(encoding="utf-8"))
                    self._openapi = key_optional_where_links_open(strip_google_extensions(loaded))
        return self._openapi


def key_optional_where_links_open(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the key declared optional on the downloads a signed link opens.

    API Gateway cannot OR the key with nothing, so those operations declare no
    security at all (docs/decisions.md); Swagger UI would then never send the
    key there. For browsers they say what the function does: key or signature."""
    paths = {}
    for path, item in document.get("paths", {}).items():
        item = dict(item)
        for method, op in item.items():
            names = {p.get("name") for p in op.get("parameters", [])} if isinstance(op, dict) else set()
            if path.startswith("/v1/") and "sig" in names and not op.get("security"):
                item[method] = {**op, "security": [{"api_key": []}, {}]}
        paths[path] = item
    return {**document, "paths": paths}


def strip_google_extensions(node: Any) -> Any:
    """`node` with every `x-google-*` key removed, at any depth."""
    if isinstance(node, dict):
        return {k: strip_google_extensions(v) for k, v in node.items() if not str(k).startswith("x-google-")}
    if isinstance(node, list):
        return [strip_google_extensions(v) for v in node]
    return node


def _send(request: flask.Request, asset: Asset, cache_control: str, csp: str) -> flask.Response:
    headers = {"ETag": asset.etag, "Cache-Control": cache_control, "Content-Security-Policy": csp}
    if request.if_none_match.contains_weak(asset.etag.strip('"')):
        return flask.Response(status=304, headers=headers)
    response = flask.Response(asset.body, status=200, headers=headers)
    response.headers["Content-Type"] = asset.content_type
    return response


def _etag(body: bytes) -> str:
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'


def _scheme(request: flask.Request) -> str:
    """The scheme the client used: the proxy's X-Forwarded-Proto (gateway, Cloud Run), else our own."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return forwarded if forwarded in ("http", "https") else request.scheme


def _origin(url: str) -> str:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}"
