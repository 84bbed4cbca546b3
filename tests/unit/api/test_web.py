"""The `web` function over Flask's test client: the page's files, Swagger UI, /openapi.json (no emulator)."""

from __future__ import annotations

import json

import flask
import pytest
import yaml

from aperture.api import web
from aperture.config import Config
from aperture.container import Container


@pytest.fixture(scope="module")
def client():
    app = flask.Flask(__name__)
    handler = web.build(Container(Config()))
    app.add_url_rule("/", "web", lambda **_: handler(flask.request), methods=["GET", "POST", "HEAD"])
    app.add_url_rule("/<path:rest>", "web-any", lambda **_: handler(flask.request), methods=["GET", "POST", "HEAD"])
    return app.test_client()


@pytest.mark.parametrize(
    "path, content_type",
    [
        ("/app", "text/html; charset=utf-8"),
        ("/app/app.js", "text/javascript; charset=utf-8"),
        ("/app/api.js", "text/javascript; charset=utf-8"),
        ("/app/app.css", "text/css; charset=utf-8"),
        ("/app/icon.svg", "image/svg+xml"),
        ("/docs", "text/html; charset=utf-8"),
        ("/docs/docs.js", "text/javascript; charset=utf-8"),
        ("/docs/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
        ("/docs/swagger-ui-standalone-preset.js", "text/javascript; charset=utf-8"),
        ("/docs/swagger-ui.css", "text/css; charset=utf-8"),
        ("/openapi.json", "application/json"),
    ],
)
def test_files_answer_with_their_type_and_security_headers(client, path, content_type):
    response = client.get(path)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["ETag"].startswith('"')
    assert response.headers["Cache-Control"].startswith("public")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "unsafe-eval" not in csp
    assert response.data


def test_the_page_is_revalidated_and_assets_are_kept_longer(client):
    assert client.get("/app").headers["Cache-Control"] == "public, no-cache"
    assert "max-age=3600" in client.get("/app/app.js").headers["Cache-Control"]
    assert "max-age=86400" in client.get("/docs/swagger-ui-bundle.js").headers["Cache-Control"]


def test_the_page_policy_allows_only_its_own_scripts(client):
    csp = client.get("/app").headers["Content-Security-Policy"]

    assert "script-src 'self';" in csp
    assert "style-src 'self';" in csp
    assert "img-src 'self' blob: data:" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp


def test_the_page_loads_its_own_files_by_absolute_path(client):
    html = client.get("/app").get_data(as_text=True)

    for name in ("/app/app.js", "/app/app.css", "/app/icon.svg"):
        assert name in html
        assert client.get(name).status_code == 200
    assert "<script>" not in html  # no inline script: the CSP would refuse it


@pytest.mark.parametrize("path", ["/app", "/app/app.js", "/docs", "/docs/swagger-ui.css", "/openapi.json"])
def test_if_none_match_answers_304(client, path):
    etag = client.get(path).headers["ETag"]

    again = client.get(path, headers={"If-None-Match": etag})

    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/app/../web.py",
        "/app/..%2Fopenapi.yaml",
        "/app/%2E%2E%2Fopenapi.yaml",
        "/app/swagger%2Findex.html",
        "/app/swagger",
        "/app/.hidden",
        "/app/.gitignore",
        "/app/nope.js",
        "/app/app.js/x",
        "/docs/../app/app.js",
        "/docs/..%2F..%2Fweb.py",
        "/docs/__init__.py",
        "/docs/.DS_Store",
        "/docs/VERSION",
        "/",
    ],
)
def test_anything_but_a_listed_file_is_a_json_404(client, path):
    response = client.get(path)

    assert response.status_code == 404, path
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json()["error"]["code"] == 404
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_other_methods_are_405_with_allow(client):
    response = client.post("/app")

    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]


def test_openapi_json_has_no_google_extensions_and_covers_every_path(client):
    response = client.get("/openapi.json")
    document = json.loads(response.data)
    source = yaml.safe_load(web.OPENAPI_YAML.read_text())

    assert "x-google-" not in response.get_data(as_text=True)
    assert document["swagger"] == "2.0"
    assert set(document["paths"]) == set(source["paths"])
    for path, operations in source["paths"].items():
        assert set(document["paths"][path]) == set(operations)
    assert document["securityDefinitions"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    assert "host" not in document


def test_openapi_json_takes_the_scheme_of_the_request(client):
    plain = json.loads(client.get("/openapi.json").data)
    behind_tls = client.get("/openapi.json", headers={"X-Forwarded-Proto": "https"})

    assert plain["schemes"] == ["http"]
    assert json.loads(behind_tls.data)["schemes"] == ["https"]
    assert behind_tls.headers["ETag"] != client.get("/openapi.json").headers["ETag"]
    assert "X-Forwarded-Proto" in behind_tls.headers["Vary"]


def test_strip_google_extensions_at_any_depth():
    document = {"x-google-backend": 1, "a": [{"x-google-quota": 2, "b": {"x-google-x": 3, "c": 4}}], "x-other": 5}

    assert web.strip_google_extensions(document) == {"a": [{"b": {"c": 4}}], "x-other": 5}


def test_swagger_ui_is_served_from_the_installed_package(client):
    bundle = client.get("/docs/swagger-ui-bundle.js")
    html = client.get("/docs").get_data(as_text=True)
    init = client.get("/docs/docs.js").get_data(as_text=True)

    assert bundle.data == (web.swagger_dist() / "swagger-ui-bundle.js").read_bytes()
    for name in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css", "docs.js"):
        assert f"/docs/{name}" in html
    assert '"/openapi.json"' in init
    assert "persistAuthorization: true" in init


def test_the_policy_names_the_configured_origins():
    app = flask.Flask(__name__)
    config = Config(public_url="https://gw.example.com/", storage_public_url="http://127.0.0.1:4443")
    handler = web.build(Container(config))
    with app.test_request_context("/app"):
        csp = handler(flask.request).headers["Content-Security-Policy"]

    assert "connect-src 'self' http://127.0.0.1:4443 https://gw.example.com;" in csp


def test_openapi_json_lets_swagger_send_the_key_where_a_signed_link_also_opens(client):
    paths = json.loads(client.get("/openapi.json").data)["paths"]

    for path in ("/v1/images/{image}", "/v1/images/{image}/original", "/v1/jobs/{job_id}/outputs/{name=**}"):
        assert paths[path]["get"]["security"] == [{"api_key": []}, {}], path
    assert paths["/v1/images"]["get"]["security"] == [{"api_key": []}]  # the others keep the key required
    assert "security" not in paths["/v1/uploads/{token}"]["post"]  # the link token is its credential
