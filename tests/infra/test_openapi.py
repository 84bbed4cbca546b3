"""Offline checks of infra/openapi.yaml, the one route table of API Gateway and
of the local gateway (S11, S12)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.tools import require

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "infra" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch"}


def _rendered_text() -> str:
    """The document as Terraform's templatefile() renders it."""
    return SPEC_PATH.read_text().replace("${project}", "example-project").replace("${region}", "us-central1")


@pytest.fixture(scope="module")
def spec() -> dict:
    yaml = require("yaml")
    return yaml.safe_load(_rendered_text())


def _operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def test_is_swagger_2(spec):
    # API Gateway accepts OpenAPI 2.0 only.
    assert spec["swagger"] == "2.0"
    assert spec["info"]["title"] and spec["info"]["version"]


def test_validates_with_openapi_spec_validator():
    require("openapi_spec_validator")
    yaml = require("yaml")
    from openapi_spec_validator import OpenAPIV2SpecValidator, validate

    validate(yaml.safe_load(_plain_swagger(_rendered_text())), cls=OpenAPIV2SpecValidator)


def _plain_swagger(text: str) -> str:
    """API Gateway's path templates allow `{name=**}`: a parameter that matches
    several segments, needed because object names contain "/" (/stats/{path=**}).
    Plain Swagger 2.0 knows only `{name}`, so the validator cannot resolve
    `path=**` to the parameter `path`. The wildcard stays in the file; only the
    copy validated is rewritten to `{name}`."""
    return re.sub(r"\{(\w+)=\*\*\}", r"{\1}", text)


def test_the_validator_still_sees_a_broken_spec():
    """The rewrite above hides nothing else: a path parameter the template
    lacks still fails validation."""
    require("openapi_spec_validator")
    yaml = require("yaml")
    from openapi_spec_validator import OpenAPIV2SpecValidator, validate

    broken = _plain_swagger(_rendered_text()).replace("/v1/keys/{key_id}:", "/v1/keys/{key}:", 1)
    with pytest.raises(Exception, match="key_id|key"):
        validate(yaml.safe_load(broken), cls=OpenAPIV2SpecValidator)


# --------------------------------------------------------------------------------
# Path templates: google.api.HttpRule, as API Gateway (ESPv2) reads them
# --------------------------------------------------------------------------------
#
# From google/api/http.proto:
#     Template = "/" Segments [ Verb ] ;
#     Segments = Segment { "/" Segment } ;
#     Segment  = "*" | "**" | LITERAL | Variable ;
#     Variable = "{" FieldPath [ "=" Segments ] "}" ;
#     FieldPath = IDENT { "." IDENT } ;
#     Verb     = ":" LITERAL ;
# "The syntax `**` matches zero or more path segments. It must be the last part
# of the URL path except the `Verb`." A variable's own segments hold no variable.
# API Gateway refuses the whole config when one path breaks these rules, and the
# local gateway (a regex per template) would happily serve it, so only this
# test notices.

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A path segment's characters (RFC 3986 pchar) other than the template syntax
# ("/", "{", "}", "*", ":" and "=" have meanings of their own).
_LITERAL = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()+,;@]|%[0-9A-Fa-f]{2})+")


class TemplateError(ValueError):
    pass


def parse_template(template: str) -> list[tuple[str, str | None]]:
    """The template's path as flat segments: (kind, variable), kind one of
    "literal", "*", "**"; raises TemplateError where the grammar or its
    `**` rule is broken. Variables are returned once per segment they span."""
    pos = 0
    seen: set[str] = set()

    def fail(why: str) -> TemplateError:
        return TemplateError(f"{template!r} at {pos}: {why}")

    def segments(variable: str | None) -> list[tuple[str, str | None]]:
        nonlocal pos
        out = [segment(variable)]
        while template.startswith("/", pos):
            pos += 1
            out.extend([segment(variable)] if not template.startswith("{", pos) else segment_list(variable))
        return out

    def segment_list(variable: str | None) -> list[tuple[str, str | None]]:
        nonlocal pos
        if variable is not None:
            raise fail("a variable inside a variable")
        pos += 1
        match = re.compile(rf"{_IDENT.pattern}(?:\.{_IDENT.pattern})*").match(template, pos)
        if not match:
            raise fail("a variable needs a field path")
        name = match.group(0)
        if name in seen:
            raise fail(f"variable {name} twice")
        seen.add(name)
        pos = match.end()
        inner = [("*", name)]
        if template.startswith("=", pos):
            pos += 1
            inner = [(kind, name) for kind, _ in segments(name)]
        if not template.startswith("}", pos):
            raise fail("unclosed variable")
        pos += 1
        return inner

    def segment(variable: str | None) -> tuple[str, str | None]:
        nonlocal pos
        if template.startswith("**", pos):
            pos += 2
            return ("**", variable)
        if template.startswith("*", pos):
            pos += 1
            return ("*", variable)
        if template.startswith("{", pos):
            raise fail("a variable inside a variable")
        match = _LITERAL.match(template, pos)
        if not match:
            raise fail("empty or invalid segment")
        pos = match.end()
        return ("literal", variable)

    if not template.startswith("/"):
        raise fail("a template starts with /")
    pos = 1
    flat = segment_list(None) if template.startswith("{", pos) else [segment(None)]
    while template.startswith("/", pos):
        pos += 1
        flat.extend(segment_list(None) if template.startswith("{", pos) else [segment(None)])
    if template.startswith(":", pos):  # the verb
        pos += 1
        match = _LITERAL.match(template, pos)
        if not match:
            raise fail("empty verb")
        pos = match.end()
    if pos != len(template):
        raise fail(f"unexpected {template[pos]!r}")
    for index, (kind, _) in enumerate(flat):
        if kind == "**" and index != len(flat) - 1:
            raise TemplateError(f"{template!r}: '**' must be the last segment (only a verb may follow)")
    return flat


@pytest.mark.parametrize(
    "template",
    ["/health", "/v1/teams/{team}/users", "/stats/{path=**}", "/v1/{name=shelves/*/books/*}", "/a/*/b", "/a/**",
     "/v1/{book.name=**}:publish", "/v1/jobs/{job_id}/outputs/{name=**}", "/v1/upload-links", "/a/%7Eb"],
)  # fmt: skip
def test_the_grammar_accepts_http_rule_templates(template):
    parse_template(template)


@pytest.mark.parametrize(
    "template",
    ["/stats/{image=**}/{func}", "/a/**/b", "/{a=**}/b:verb/c", "/{a={b}}", "/{a}/{a}", "/a//b", "a/b", "/a/{b",
     "/a/{1b}", "/a/b:", "/a/{b=}", "/a/b}", "/", "/a/b c"],
)  # fmt: skip
def test_the_grammar_refuses_what_api_gateway_refuses(template):
    with pytest.raises(TemplateError):
        parse_template(template)


def test_every_path_is_an_http_rule_template(spec):
    for path in spec["paths"]:
        parse_template(path)


def test_the_stats_route_is_the_last_segment_wildcard(spec):
    """S4's /stats/{image}/{func} reaches the stats function through one
    trailing wildcard; the function splits off the last segment."""
    assert "/stats/{path=**}" in spec["paths"]
    assert not [p for p in spec["paths"] if p.startswith("/stats/") and p != "/stats/{path=**}"]
    assert parse_template("/stats/{path=**}")[-1] == ("**", "path")
    assert set(_methods(spec, "/stats/{path=**}")) == {"get", "head"}
    assert "/health" in spec["paths"]


def test_the_local_gateway_refuses_what_api_gateway_refuses():
    """The local stack starts from the same file: it must not serve a route
    table the cloud would refuse."""
    from devstack import gateway

    with pytest.raises(ValueError, match="last segment"):
        gateway.template_regex("/stats/{image=**}/{func}")
    assert gateway.template_regex("/stats/{path=**}").match("/stats/dir/IMG_1.jpg/p99")


def test_undeclared_requests_never_reach_a_function(spec):
    """`x-google-allow: all` would send every request the spec does not declare
    to the default backend (stats), skipping the API key check; without it
    API Gateway answers 404/405 itself."""
    assert "x-google-allow" not in spec
    for path, item in spec["paths"].items():
        assert "x-google-allow" not in item, path
        for method, op in item.items():
            if method in METHODS:
                assert "x-google-allow" not in op, f"{method} {path}"


def test_health_answers_every_method(spec):
    """S4: /health answers OK to any request, and API Gateway passes on only
    the methods declared."""
    assert set(_methods(spec, "/health")) == METHODS


def _methods(spec: dict, path: str) -> list[str]:
    return [m for m in spec["paths"][path] if m in METHODS]


# --------------------------------------------------------------------------------
# Deadlines
# --------------------------------------------------------------------------------

# API Gateway waits 15 s for a backend when x-google-backend has no deadline.
GATEWAY_DEFAULT_DEADLINE = 15.0
# Backends whose legitimate requests outlast that default (uploads stream many
# large files, conversions decode 100 MP originals): their deadline must be longer.
SLOW_BACKENDS = {"upload", "images"}


def _function_timeouts() -> dict[str, int]:
    """timeout (s) of each function of local.functions in infra/main.tf."""
    hcl2 = require("hcl2")
    doc = hcl2.loads((ROOT / "infra" / "main.tf").read_text())
    table = next(entry["functions"] for entry in doc["locals"] if "functions" in entry)
    table = table[0] if isinstance(table, list) else table
    timeouts = {}
    for name, entry in table.items():
        value = entry["timeout"]
        value = value[0] if isinstance(value, list) else value
        try:
            timeouts[name.strip('"')] = int(str(value).strip('"'))
        except ValueError:  # an expression: nothing to compare offline
            continue
    return timeouts


def test_every_operation_has_a_deadline_within_its_function_timeout(spec):
    timeouts = _function_timeouts()
    assert timeouts, "no function timeouts found in infra/main.tf"
    for path, method, op in _operations(spec):
        backend = op["x-google-backend"]
        name = backend["address"].rsplit("/", 1)[-1]
        deadline = backend.get("deadline")
        assert isinstance(deadline, (int, float)) and deadline > 0, f"{method} {path}: no deadline (15 s by default)"
        if name in timeouts:
            # Waiting longer than the function may run only turns its 504 into a hang.
            assert deadline <= timeouts[name], f"{method} {path}: deadline {deadline} > {name}'s timeout"
        if name in SLOW_BACKENDS:
            assert deadline > GATEWAY_DEFAULT_DEADLINE, f"{method} {path}: {deadline} s is too short for {name}"
    uploads = [
        op["x-google-backend"]["deadline"] for p, m, op in _operations(spec) if p == "/v1/images" and m == "post"
    ]
    assert uploads and uploads[0] >= 300, "uploads of many large files need minutes"


def test_every_operation_has_a_unique_operation_id(spec):
    ids = [op.get("operationId") for _, _, op in _operations(spec)]
    assert all(ids), "an operation has no operationId"
    assert len(ids) == len(set(ids)), "duplicate operationId"


def test_every_operation_names_a_cloud_function_backend(spec):
    for path, method, op in _operations(spec):
        backend = op.get("x-google-backend")
        assert backend, f"{method} {path}: no x-google-backend"
        assert backend.get("path_translation") == "APPEND_PATH_TO_ADDRESS", f"{method} {path}"
        address = backend["address"]
        assert re.fullmatch(r"https://us-central1-example-project\.cloudfunctions\.net/[a-z][a-z0-9-]*", address), (
            f"{method} {path}: {address}"
        )


def test_path_parameters_are_declared(spec):
    for path, method, op in _operations(spec):
        names = {re.sub(r"=.*", "", n) for n in re.findall(r"\{([^}]+)\}", path)}
        params = op.get("parameters", []) + spec["paths"][path].get("parameters", [])
        declared = {p["name"] for p in params if p.get("in") == "path"}
        assert names == declared, f"{method} {path}: template {names} vs parameters {declared}"


def test_error_responses_use_the_error_schema(spec):
    error = spec["definitions"]["Error"]
    assert error["required"] == ["error"]
    inner = error["properties"]["error"]
    assert set(inner["required"]) == {"code", "message"}
    assert inner["properties"]["code"]["type"] == "integer"
    assert inner["properties"]["message"]["type"] == "string"
    for path, method, op in _operations(spec):
        codes = [str(c) for c in op["responses"]]
        errors = [c for c in codes if c == "default" or c[0] in "45"]
        for code in errors:
            schema = op["responses"][code].get("schema", {})
            assert schema.get("$ref") == "#/definitions/Error", f"{method} {path} {code}: not the Error schema"
        # Any operation that can reject its input documents how it does. /health
        # takes no input and answers OK to any request (S4).
        if op.get("parameters") or path.startswith("/v1/"):
            assert any(c.startswith("4") for c in errors), f"{method} {path}: no 4xx documented"


def test_api_key_security_definition(spec):
    api_key = spec["securityDefinitions"]["api_key"]
    assert api_key == {"type": "apiKey", "name": "x-api-key", "in": "header"}


# Routes that are deliberately keyless: the upload link URL carries its own
# unguessable bearer token and must work for people without a key (S6).
KEYLESS_V1 = {"/v1/uploads/{token}"}
# Downloads a signed link opens (S11): API Gateway cannot make the key optional
# (no OR with api_key), so the function checks the key or the signature.
SIGNED_LINK_V1 = {
    ("/v1/images/{image}", "get"),
    ("/v1/images/{image}/original", "get"),
    ("/v1/jobs/{job_id}/outputs/{name=**}", "get"),
}


def test_every_v1_route_requires_the_api_key(spec):
    default = spec.get("security")
    for path, method, op in _operations(spec):
        if not path.startswith("/v1/") or path in KEYLESS_V1 or (path, method) in SIGNED_LINK_V1:
            continue
        security = op.get("security", default)
        assert security, f"{method} {path}: no security requirement"
        assert any("api_key" in requirement for requirement in security), f"{method} {path}: api_key not required"


def test_signed_link_routes_declare_the_link_parameters_and_403(spec):
    for path, method in SIGNED_LINK_V1:
        op = spec["paths"][path][method]
        assert "security" not in op or op["security"] == [], f"{method} {path}"
        names = {p["name"] for p in op["parameters"] if p["in"] == "query"}
        assert {"team", "exp", "sig"} <= names, f"{method} {path}"
        assert {"401", "403", "404"} <= set(op["responses"]), f"{method} {path}"


def test_only_terraform_template_variables():
    # templatefile() fails on unknown variables and reads %{ as a directive.
    text = SPEC_PATH.read_text()
    assert set(re.findall(r"(?<!\$)\$\{(\w+)\}", text)) <= {"project", "region"}
    assert "%{" not in text
