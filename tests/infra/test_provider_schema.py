"""Every resource type and argument in infra/*.tf exists in the pinned providers (S12).

What `terraform validate` would refuse first, without Terraform or a network:
each resource, data source and provider block is checked, argument by
argument and nested block by nested block (dynamic blocks included), against
the providers' schema at BOTH ends of what infra/versions.tf admits (google
and google-beta 6.14.0 and 6.50.0, archive 2.6.0 and 2.7.1), as extracted
from the prebuilt CDKTF provider packages (generated from each provider's
schema; tests/infra/provider_schema.py says how, and refreshes
provider_schema.json). An argument that exists at one end only would break a
fresh `terraform init` on the other.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest

from tests.support.tools import require

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
SCHEMA = json.loads((Path(__file__).with_name("provider_schema.json")).read_text())

# Terraform's own arguments: on every resource/data block, and in `lifecycle`.
META = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
LIFECYCLE = {
    "create_before_destroy",
    "prevent_destroy",
    "ignore_changes",
    "replace_triggered_by",
    "precondition",
    "postcondition",
}
CONDITION = {"condition", "error_message"}


def _unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == '"' else key


def _is_block(value) -> bool:
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(isinstance(item, dict) for item in items)


@functools.cache
def _parser_marks_blocks() -> bool:
    """python-hcl2 >= 7 marks every block with __is_block__ (bc-python-hcl2 does not)."""
    return require("hcl2").loads("a {\n}\n")["a"][0].get("__is_block__") is True


def _marked_block(value) -> bool | None:
    """Whether the parser says `value` is written as a block; None when it cannot say."""
    if not _parser_marks_blocks():
        return None
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(isinstance(item, dict) and item.get("__is_block__") is True for item in items)


def check_body(body: dict, tree: dict, where: str, problems: list[str]) -> None:
    """Every argument and nested block of `body` is in `tree` (name -> "attr" | subtree)."""
    for raw_key, value in body.items():
        key = _unquote(raw_key)
        if re.fullmatch(r"__\w+__", key):
            continue
        if key == "dynamic":
            for entry in value if isinstance(value, list) else [value]:
                for raw_name, spec in entry.items():
                    name = _unquote(raw_name)
                    if re.fullmatch(r"__\w+__", name):
                        continue
                    if not isinstance(tree.get(name), dict):
                        problems.append(f"{where}: dynamic {name!r} is not a nested block here")
                        continue
                    spec = spec[0] if isinstance(spec, list) else spec
                    for content in spec.get("content", []) if isinstance(spec.get("content"), list) else [spec]:
                        check_body(content, tree[name], f"{where}.{name}", problems)
            continue
        if key not in tree:
            problems.append(f"{where}: unknown argument or block {key!r}")
            continue
        expected = tree[key]
        if isinstance(expected, dict):
            if not _is_block(value) or _marked_block(value) is False:
                problems.append(f"{where}: {key!r} is a nested block, written as an attribute")
                continue
            for item in value if isinstance(value, list) else [value]:
                check_body(item, expected, f"{where}.{key}", problems)
        elif _marked_block(value) is True:
            problems.append(f"{where}: {key!r} is an attribute, written as a block")


def check_meta(body: dict, where: str, problems: list[str]) -> None:
    for block in body.get("lifecycle", []) if isinstance(body.get("lifecycle"), list) else []:
        for key, value in block.items():
            key = _unquote(key)
            if re.fullmatch(r"__\w+__", key):
                continue
            if key not in LIFECYCLE:
                problems.append(f"{where}: lifecycle has no {key!r}")
            elif key in ("precondition", "postcondition"):
                for condition in value:
                    unknown = {_unquote(k) for k in condition if not re.fullmatch(r"__\w+__", k)} - CONDITION
                    if unknown:
                        problems.append(f"{where}: {key} has {sorted(unknown)}")


def _provider_of(rtype: str, body: dict) -> str:
    explicit = body.get("provider")
    explicit = explicit[0] if isinstance(explicit, list) else explicit
    if explicit:
        return str(explicit).strip('"${}').split(".")[0]
    return "archive" if rtype.startswith("archive_") else "google"


def _versions(provider: str) -> dict[str, dict]:
    assert provider in SCHEMA["providers"], f"no schema for provider {provider!r}"
    return SCHEMA["providers"][provider]


@pytest.fixture(scope="module")
def documents() -> dict[str, dict]:
    hcl2 = require("hcl2")
    return {path.name: hcl2.loads(path.read_text()) for path in sorted(INFRA.glob("*.tf"))}


def _blocks(documents, kind: str):
    """(file, type, name, body) of every resource or data block."""
    for filename, doc in documents.items():
        for entry in doc.get(kind, []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    yield filename, _unquote(rtype), _unquote(name), body


def test_the_schema_covers_the_pinned_range():
    """provider_schema.json holds the lowest version each constraint admits
    and a newest one of the same major version, for every provider pinned."""
    text = (INFRA / "versions.tf").read_text()
    pins = dict(re.findall(r'source\s*=\s*"hashicorp/([\w-]+)"\s*\n\s*version\s*=\s*"~>\s*([\d.]+)"', text))
    assert set(pins) == set(SCHEMA["providers"]) == {"google", "google-beta", "archive"}, pins
    for provider, pin in pins.items():
        major, minor = (int(p) for p in pin.split(".")[:2])
        versions = sorted(SCHEMA["providers"][provider], key=lambda v: tuple(int(p) for p in v.split(".")))
        assert versions[0] == f"{major}.{minor}.0", f"{provider}: the lowest admitted version is {major}.{minor}.0"
        assert len(versions) >= 2, f"{provider}: the newest admitted version is missing"
        for version in versions:
            parts = tuple(int(p) for p in version.split("."))
            assert parts[0] == major and parts[:2] >= (major, minor), f"{provider} {version} is outside ~> {pin}"
        for version in versions:
            assert SCHEMA["providers"][provider][version]["package"].startswith("cdktf-cdktf-provider-")


def test_every_resource_and_data_type_exists_in_every_admitted_version(documents):
    problems = []
    for kind, listing in (("resource", "resource_types"), ("data", "data_types")):
        for filename, rtype, name, body in _blocks(documents, kind):
            provider = _provider_of(rtype, body)
            for version, schema in _versions(provider).items():
                if rtype not in schema[listing]:
                    problems.append(f"{filename}: {kind} {rtype}.{name}: no such type in {provider} {version}")
                elif rtype not in schema[kind]:
                    problems.append(
                        f"{filename}: {rtype} is not in the extracted subset: "
                        "run `.venv/bin/python -m tests.infra.provider_schema`"
                    )
    assert not problems, "\n".join(problems)


def test_every_argument_and_block_exists_in_every_admitted_version(documents):
    problems: list[str] = []
    checked = 0
    for kind in ("resource", "data"):
        for filename, rtype, name, body in _blocks(documents, kind):
            provider = _provider_of(rtype, body)
            where = f"{filename}: {rtype}.{name}"
            check_meta(body, where, problems)
            arguments = {k: v for k, v in body.items() if _unquote(k) not in META}
            for version, schema in _versions(provider).items():
                tree = schema[kind].get(rtype)
                if tree is not None:
                    check_body(arguments, tree, f"{where} ({provider} {version})", problems)
                    checked += 1
    for filename, doc in documents.items():
        for entry in doc.get("provider", []):
            for raw, body in entry.items():
                provider = _unquote(raw)
                for version, schema in _versions(provider).items():
                    check_body(body, schema["provider"], f"{filename}: provider {provider} ({version})", problems)
                    checked += 1
    assert not problems, "\n".join(problems)
    assert checked > 60, checked


@pytest.mark.parametrize(
    "snippet, complaint",
    [
        # a misspelt argument, a block that does not exist, a nested argument of
        # another version, a block written as an attribute, a bad dynamic block
        ('resource "google_pubsub_topic" "t" {\n  nme = "x"\n}', "unknown argument or block 'nme'"),
        (
            'resource "google_storage_bucket" "b" {\n  name = "b"\n  location = "US"\n  website2 {\n  }\n}',
            "unknown argument or block 'website2'",
        ),
        (
            'resource "google_cloud_run_v2_service" "s" {\n  name = "s"\n  location = "r"\n'
            '  template {\n    containers {\n      image = "i"\n      base_image_uri = "b"\n    }\n  }\n}',
            "unknown argument or block 'base_image_uri'",  # only in the newer provider
        ),
        (
            'resource "google_cloud_run_v2_service" "s" {\n  name = "s"\n  location = "r"\n'
            "  template = { containers = [] }\n}",
            "'template' is a nested block, written as an attribute",
        ),
        (
            'resource "google_storage_bucket" "b" {\n  name = "b"\n  location = "US"\n'
            '  dynamic "logs" {\n    for_each = []\n    content {\n    }\n  }\n}',
            "dynamic 'logs' is not a nested block here",
        ),
        (
            'resource "google_pubsub_topic" "t" {\n  name = "t"\n  lifecycle {\n    prevent_destroyed = true\n  }\n}',
            "lifecycle has no 'prevent_destroyed'",
        ),
    ],
)
def test_the_check_finds_what_terraform_would_refuse(snippet, complaint):
    hcl2 = require("hcl2")
    problems: list[str] = []
    doc = hcl2.loads(snippet)
    for entry in doc["resource"]:
        for rtype, named in entry.items():
            for _name, body in named.items():
                rtype = _unquote(rtype)
                check_meta(body, rtype, problems)
                arguments = {k: v for k, v in body.items() if _unquote(k) not in META}
                for version, schema in _versions("google").items():
                    check_body(arguments, schema["resource"][rtype], f"{rtype} {version}", problems)
    assert any(complaint in problem for problem in problems), problems
