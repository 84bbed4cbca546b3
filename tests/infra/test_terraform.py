"""Offline checks of the Terraform in infra/ (S12).

Terraform's providers cannot be downloaded here (so no `terraform validate`) and
there is no cloud, so the configuration is parsed
with the `hcl2` module and its wiring is checked structurally; checkov then
looks for misconfigurations. Two parsers provide `import hcl2`:
bc-python-hcl2 (a dependency of checkov, the one requirements-dev.txt gets) and
python-hcl2 >= 5. Their output differs (the former wraps every attribute value
in a one-element list, the latter keeps quotes around literals), so all access
goes through the small helpers below, which accept both.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aperture import config as aperture_config
from aperture.functions import FUNCTIONS as REGISTRY
from aperture.vision import cloud as vision_cloud
from aperture.vision import local as vision_local
from tests.support.tools import require

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN_PY = ROOT / "functions" / "main.py"
DEFAULT_PREFIX = "aperture"


# --------------------------------------------------------------------------------
# HCL access helpers (parser-agnostic)
# --------------------------------------------------------------------------------

_META = re.compile(r"^__\w+__$")


def _unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def _clean(value):
    if isinstance(value, dict):
        return {_unquote(k): _clean(v) for k, v in value.items() if not _META.match(str(k))}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return _unquote(value)


class Tf:
    """All infra/*.tf files, merged."""

    def __init__(self) -> None:
        hcl2 = require("hcl2")
        self.wrapped = hcl2.loads('a = "x"\n').get("a") == ["x"]
        self.files: dict[str, dict] = {}
        self.resources: dict[str, dict[str, dict]] = {}
        self.data: dict[str, dict[str, dict]] = {}
        self.variables: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}
        self.locals: dict[str, object] = {}
        self.terraform: list[dict] = []
        for path in sorted(INFRA.glob("*.tf")):
            doc = _clean(hcl2.loads(path.read_text()))
            self.files[path.name] = doc
            for kind, target in (("resource", self.resources), ("data", self.data)):
                for entry in doc.get(kind, []):
                    for rtype, named in entry.items():
                        for name, body in named.items():
                            assert name not in target.setdefault(rtype, {}), f"duplicate {rtype}.{name}"
                            target[rtype][name] = body
            for entry in doc.get("variable", []):
                self.variables.update(entry)
            for entry in doc.get("output", []):
                self.outputs.update(entry)
            for entry in doc.get("locals", []):
                for key in entry:
                    assert key not in self.locals, f"local.{key} defined twice"
                    self.locals[key] = self.attr(entry, key)
            self.terraform.extend(doc.get("terraform", []))

    def attr(self, body: dict, key: str, default=None):
        if key not in body:
            return default
        value = body[key]
        if self.wrapped and isinstance(value, list) and len(value) == 1:
            value = value[0]
        return value

    @staticmethod
    def blocks(body: dict, key: str) -> list[dict]:
        value = body.get(key, [])
        return value if isinstance(value, list) else [value]

    def dynamic(self, body: dict, name: str) -> dict | None:
        for entry in self.blocks(body, "dynamic"):
            if name in entry:
                return entry[name]
        return None

    def resource(self, rtype: str, name: str) -> dict:
        assert rtype in self.resources and name in self.resources[rtype], f"missing {rtype}.{name}"
        return self.resources[rtype][name]

    def var_default(self, name: str):
        assert name in self.variables, f"variable {name} not declared"
        return self.attr(self.variables[name], "default")

    def value(self, value):
        """A literal, or the default of the variable a bare `${var.X}` names."""
        match = re.fullmatch(r"\$\{var\.(\w+)\}", value) if isinstance(value, str) else None
        return self.var_default(match.group(1)) if match else value

    def render(self, text: str) -> str:
        """Resolve the name prefix the way Terraform would with default variables."""
        return (
            str(text)
            .replace("${local.prefix}", self.var_default("name_prefix"))
            .replace("${var.name_prefix}", self.var_default("name_prefix"))
        )


@pytest.fixture(scope="module")
def tf() -> Tf:
    return Tf()


@pytest.fixture(scope="module")
def functions(tf: Tf) -> dict[str, dict]:
    table = tf.locals.get("functions")
    assert isinstance(table, dict) and table, "local.functions (the function table) is missing"
    return table


def _walk(value):
    """Every scalar in a parsed document."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)
    else:
        yield value


def _strings(value) -> list[str]:
    return [v for v in _walk(value) if isinstance(v, str)]


def _code(path: Path) -> str:
    """The text of a .tf file without its comments (#, // and /* */ outside strings)."""
    text, out, i, in_string = path.read_text(), [], 0, False
    while i < len(text):
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1 : i + 2])
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            out.append(c)
        elif c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = len(text) if end < 0 else end + 2
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------

REQUIRED_RESOURCE_TYPES = {
    "google_project_service",
    "google_storage_bucket",
    "google_storage_bucket_object",
    "google_storage_bucket_iam_member",
    "google_firestore_database",
    "google_firestore_index",
    "google_firestore_field",
    "google_service_account",
    "google_project_iam_member",
    "google_cloudfunctions2_function",
    "google_cloud_run_v2_service",
    "google_project_iam_custom_role",
    "google_eventarc_trigger",
    "google_cloud_run_v2_service_iam_member",
    "google_service_account_iam_member",
    "google_api_gateway_api",
    "google_api_gateway_api_config",
    "google_api_gateway_gateway",
    "google_artifact_registry_repository",
    "google_pubsub_topic",
    "google_pubsub_subscription",
    "google_pubsub_topic_iam_member",
    "google_pubsub_subscription_iam_member",
    "google_cloud_scheduler_job",
}

REQUIRED_APIS = {
    f"{name}.googleapis.com"
    for name in (
        "cloudfunctions run cloudbuild artifactregistry eventarc pubsub firestore storage apigateway "
        "servicemanagement servicecontrol apikeys vision aiplatform iam logging cloudscheduler"
    ).split()
}

# The registry's functions-framework signature type -> the table's `kind`.
KIND_OF_TRIGGER = {"http": "http", "cloudevent": "event"}

REQUIRED_ENV = {
    "GOOGLE_CLOUD_PROJECT",
    "APERTURE_SOURCE_BUCKET",
    "APERTURE_UPLOADS_BUCKET",
    "APERTURE_DERIVED_BUCKET",
    "APERTURE_PROVIDER",
    "APERTURE_KEY_ISSUER",
    "APERTURE_REGION",
}

PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}


def test_every_tf_file_parses(tf: Tf):
    expected = {"versions.tf", "variables.tf", "outputs.tf"}
    assert expected <= set(tf.files), f"missing {expected - set(tf.files)}"


def test_required_resource_types_exist(tf: Tf):
    missing = REQUIRED_RESOURCE_TYPES - set(tf.resources)
    assert not missing, f"resource types missing: {sorted(missing)}"
    assert "archive_file" in tf.data, "the functions/ zip must come from data.archive_file"


TABLE_MAPS = (
    "local.functions",
    "local.http_functions",
    "local.event_functions",
    "local.cloud_functions",
    "local.run_functions",
)


def test_every_reference_resolves(tf: Tf, functions):
    """What `terraform validate` would catch first, without a Terraform binary:
    every local.X, var.X, data.T.N and resource T.N the code names is declared,
    and every field read from a table entry (each.value.X in resources over the
    table, f.X in the locals derived from it) is a field of every entry."""
    problems = []
    for path in sorted(INFRA.glob("*.tf")):
        code = _code(path)
        for name in re.findall(r"\blocal\.(\w+)", code):
            if name not in tf.locals:
                problems.append(f"{path.name}: local.{name}")
        for name in re.findall(r"\bvar\.(\w+)", code):
            if name not in tf.variables:
                problems.append(f"{path.name}: var.{name}")
        for rtype, name in re.findall(r"\bdata\.(\w+)\.(\w+)", code):
            if name not in tf.data.get(rtype, {}):
                problems.append(f"{path.name}: data.{rtype}.{name}")
        for rtype, name in re.findall(r"(?<![\w.])((?:google|google_beta|random|archive)_\w+)\.(\w+)", code):
            if name not in tf.resources.get(rtype, {}):
                problems.append(f"{path.name}: {rtype}.{name}")
    fields = set.intersection(*(set(entry) for entry in functions.values()))
    for rtype, named in tf.resources.items():
        for name, body in named.items():
            if str(tf.attr(body, "for_each", "")).strip("${}") in TABLE_MAPS:
                for field in re.findall(r"\beach\.value\.(\w+)", json.dumps(body)):
                    if field not in fields:
                        problems.append(f"{rtype}.{name}: each.value.{field} is not a table field")
    table_loop = re.compile(r"\bfor \w+\s*, f in local\.(?:functions|http_functions|event_functions)\b")
    derived = [v for v in tf.locals.values() if isinstance(v, str) and table_loop.search(v)]
    for text in derived:
        for field in re.findall(r"\bf\.(\w+)", text):
            if field not in fields:
                problems.append(f"locals: f.{field} is not a table field")
    assert derived, "the locals derived from local.functions were not found"
    assert not problems, "unresolved references:\n" + "\n".join(sorted(set(problems)))


def test_providers_are_pinned(tf: Tf):
    providers = {}
    for block in tf.terraform:
        for req in tf.blocks(block, "required_providers"):
            for name in req:
                providers[name] = tf.attr(req, name)
    for name, source in (
        ("google", "hashicorp/google"),
        ("google-beta", "hashicorp/google-beta"),
        ("archive", "hashicorp/archive"),
    ):
        assert name in providers, f"provider {name} not required"
        assert providers[name]["source"] == source
        assert providers[name]["version"].startswith("~>"), f"{name} must be pinned with ~>"
    assert any(tf.blocks(block, "backend") for block in tf.terraform), "remote state backend missing"


def test_variables(tf: Tf):
    assert "project_id" in tf.variables and tf.var_default("project_id") is None
    assert tf.var_default("region") == "us-central1"
    assert tf.var_default("source_bucket") == "", "empty source_bucket = create one"
    assert tf.var_default("name_prefix") == DEFAULT_PREFIX
    assert tf.var_default("source_bucket_public") is False


def test_every_variable_is_used(tf: Tf):
    """A variable nothing reads (like enable_gps once GPS became a team
    setting) would be a knob that silently does nothing."""
    code = "\n".join(_code(path) for path in INFRA.glob("*.tf"))
    unused = {name for name in tf.variables if not re.search(rf"\bvar\.{name}\b", code)}
    assert not unused, f"variables nothing reads (remove them and their terraform.tfvars.example lines): {unused}"


def test_example_tfvars_only_sets_declared_variables(tf: Tf):
    text = (INFRA / "terraform.tfvars.example").read_text()
    names = set(re.findall(r"^\s*#?\s*([a-z_][a-z0-9_]*)\s*=", text, flags=re.M))
    assert "project_id" in names
    assert names <= set(tf.variables), f"undeclared: {names - set(tf.variables)}"


def test_required_apis_enabled(tf: Tf):
    services = tf.resource("google_project_service", "apis")
    assert tf.attr(services, "for_each") == "${local.apis}"
    apis = set(tf.locals["apis"]) if isinstance(tf.locals["apis"], list) else set()
    if not apis:  # toset([...]) is an expression: read the literals out of it
        apis = set(re.findall(r"[a-z0-9]+\.googleapis\.com", str(tf.locals["apis"])))
    missing = REQUIRED_APIS - apis
    assert not missing, f"APIs not enabled: {sorted(missing)}"
    assert tf.attr(services, "disable_on_destroy") is False


# --------------------------------------------------------------------------------
# Buckets
# --------------------------------------------------------------------------------


def test_buckets_are_private_uniform_and_versioned(tf: Tf):
    buckets = tf.resources["google_storage_bucket"]
    for name in ("source", "uploads", "derived"):
        assert name in buckets, f"bucket {name} missing"
    for name, body in buckets.items():
        assert tf.attr(body, "uniform_bucket_level_access") is True, name
        pap = tf.attr(body, "public_access_prevention")
        if name == "source":
            # Only the source bucket may be public, and only when a variable asks.
            assert "var.source_bucket_public" in pap and '"enforced"' in pap
        else:
            assert pap == "enforced", name
        versioning = tf.blocks(body, "versioning")
        assert versioning and tf.attr(versioning[0], "enabled") is True, f"{name}: versioning"
    assert "local.create_source_bucket" in tf.attr(buckets["source"], "count")


def test_uploads_bucket_lifecycle_and_cors(tf: Tf):
    uploads = tf.resource("google_storage_bucket", "uploads")
    incoming = []
    for rule in tf.blocks(uploads, "lifecycle_rule"):
        condition = tf.blocks(rule, "condition")[0]
        action = tf.blocks(rule, "action")[0]
        if tf.attr(condition, "matches_prefix") == ["incoming/"] and tf.attr(action, "type") == "Delete":
            incoming.append(tf.attr(condition, "age"))
    assert incoming, "uploads needs a lifecycle rule deleting incoming/"
    age = incoming[0]
    if isinstance(age, str) and age.startswith("${var."):
        age = tf.var_default(age[len("${var.") : -1])
    assert age == 1
    cors = tf.blocks(uploads, "cors")
    assert cors, "uploads needs CORS for signed-URL PUTs"
    assert "PUT" in tf.attr(cors[0], "method")


def test_only_the_source_bucket_can_be_public(tf: Tf):
    for rtype, named in tf.resources.items():
        if not rtype.endswith(("_iam_member", "_iam_binding", "_iam_policy")):
            continue
        for name, body in named.items():
            members = _strings(body)
            if not PUBLIC_MEMBERS & set(members):
                continue
            assert (rtype, name) == ("google_storage_bucket_iam_member", "source_public_read"), (
                f"{rtype}.{name} grants public access"
            )
            assert "google_storage_bucket.source" in tf.attr(body, "bucket")
            assert "var.source_bucket_public" in tf.attr(body, "count")
            assert tf.attr(body, "role") == "roles/storage.objectViewer"


# --------------------------------------------------------------------------------
# IAM: least privilege
# --------------------------------------------------------------------------------


def test_no_primitive_roles_anywhere(tf: Tf):
    for filename, doc in tf.files.items():
        for value in _strings(doc):
            for role in PRIMITIVE_ROLES:
                assert not re.search(re.escape(role) + r"\b", value), f"{filename}: {role}"
    # also in raw text (comments excluded): guards expressions the parser keeps opaque
    for path in INFRA.glob("*.tf"):
        code = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        assert not re.search(r'"roles/(owner|editor|viewer)"', code), path.name


def test_no_public_invoker_on_functions(tf: Tf):
    for rtype, named in tf.resources.items():
        if not re.match(r"google_(cloudfunctions2?_function|cloud_run(_v2)?_service)_iam_", rtype):
            continue
        for name, body in named.items():
            assert not PUBLIC_MEMBERS & set(_strings(body)), f"{rtype}.{name} is public"


def test_every_function_has_a_dedicated_service_account(tf: Tf, functions):
    accounts = tf.resource("google_service_account", "function")
    assert tf.attr(accounts, "for_each") == "${local.functions}", "one account per table entry"
    account_id = tf.render(tf.attr(accounts, "account_id"))
    ids = {account_id.replace("${each.key}", name) for name in functions}
    assert len(ids) == len(functions)
    for value in ids:
        assert re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", value), f"invalid account id {value}"
    fn = tf.resource("google_cloudfunctions2_function", "function")
    service = tf.blocks(fn, "service_config")[0]
    assert tf.attr(service, "service_account_email") == "${google_service_account.function[each.key].email}"
    # and no other resource runs as a function's account except its own triggers
    others = {n for n in tf.resources["google_service_account"] if n != "function"}
    assert others <= {"gateway", "build", "pubsub_push"}, others


def test_function_grants_are_scoped(tf: Tf, functions):
    allowed_project_roles = {
        "roles/datastore.user",
        "roles/eventarc.eventReceiver",
        "roles/aiplatform.user",
        KEY_ISSUER_ROLE,
    }
    for name, entry in functions.items():
        roles = set(entry["project_roles"])
        assert roles <= allowed_project_roles, f"{name}: {roles - allowed_project_roles}"
        # storage and pubsub roles are granted on the resource, never project-wide
        assert not any(r.startswith(("roles/storage", "roles/pubsub", "roles/secretmanager")) for r in roles)
        # Eventarc's receiver role for exactly the functions Eventarc delivers
        # to (bucket events); Pub/Sub push (trigger_topic) needs none.
        assert ("roles/eventarc.eventReceiver" in roles) == bool(entry["trigger_buckets"]), name
        for bucket, role in entry["buckets"].items():
            assert bucket in {"source", "uploads", "derived"}
            assert role in {"roles/storage.objectViewer", "roles/storage.objectUser", "roles/storage.objectCreator"}
    # Vertex AI: the functions that embed with the cloud provider, process
    # (image embeddings), repair (which processes stale records again) and
    # search (query embeddings, re-embedding), only.
    with_vertex = {n for n, e in functions.items() if "roles/aiplatform.user" in e["project_roles"]}
    assert with_vertex == {"process", "repair", "search"}
    # API keys: only admin, and through the custom role, never the predefined admin role
    with_keys = {n for n, e in functions.items() if KEY_ISSUER_ROLE in e["project_roles"]}
    assert with_keys == {"admin"}
    assert not any(r.startswith("roles/serviceusage.apiKeys") for e in functions.values() for r in e["project_roles"])
    # project-wide grants come from the table, plus the documented service-agent/build ones
    project_members = tf.resources["google_project_iam_member"]
    assert set(project_members) == {"function", "build", "build_staging_reader", "gcs_pubsub_publisher"}
    assert tf.attr(project_members["function"], "for_each") == "${local.function_project_roles}"
    assert "condition" in project_members["build_staging_reader"], "build storage read must be conditional"
    assert "roles/logging.logWriter" in str(tf.attr(project_members["build"], "for_each"))


KEY_ISSUER_ROLE = "${local.key_issuer_role}"
# What GoogleKeyIssuer (aperture/storage/key_issuers.py) calls: create_key and
# its operation, get_key_string (when create's answer lacks the string),
# delete_key and its operation. Nothing that lists or looks keys up.
KEY_ISSUER_PERMISSIONS = {
    "apikeys.keys.create",
    "apikeys.keys.getKeyString",
    "apikeys.keys.delete",
    "serviceusage.operations.get",
}


def test_the_admin_key_permission_is_a_custom_role_with_only_what_key_issuing_calls(tf: Tf):
    role = tf.resource("google_project_iam_custom_role", "key_issuer")
    assert set(tf.attr(role, "permissions")) == KEY_ISSUER_PERMISSIONS
    assert tf.attr(role, "role_id") == "${local.key_issuer_role_id}"
    assert tf.locals["key_issuer_role"] == "projects/${var.project_id}/roles/${local.key_issuer_role_id}"
    # role ids allow [a-zA-Z0-9_.] only: the prefix's dashes become underscores
    assert tf.locals["key_issuer_role_id"] == '${replace(local.prefix, "-", "_")}_key_issuer'
    for prefix in (DEFAULT_PREFIX, "a-b-c-d-e-f-g-h"):
        assert re.fullmatch(r"[a-zA-Z0-9_.]{3,64}", prefix.replace("-", "_") + "_key_issuer"), prefix
    # the grant waits for the role (its name is spelt out, so no reference orders them)
    grant = tf.resource("google_project_iam_member", "function")
    assert "google_project_iam_custom_role.key_issuer" in str(tf.attr(grant, "depends_on"))
    # the methods the issuer calls are the ones those permissions allow
    source = (ROOT / "functions" / "aperture" / "storage" / "key_issuers.py").read_text()
    called = set(re.findall(r"self\._client\.(\w+)\(", source))
    assert called == {"create_key", "get_key_string", "delete_key"}, called


def test_http_functions_are_invoked_only_by_the_gateway(tf: Tf, functions):
    invokers = tf.resources["google_cloud_run_v2_service_iam_member"]
    gateway = invokers["gateway_invoker"]
    assert tf.attr(gateway, "for_each") == "${local.http_functions}"
    assert tf.attr(gateway, "role") == "roles/run.invoker"
    assert tf.attr(gateway, "member") == "${google_service_account.gateway.member}"
    assert tf.attr(gateway, "name") == "${local.function_services[each.key]}"
    assert set(invokers) == {"gateway_invoker", "self_invoker", "push_invoker"}
    self_invoker = invokers["self_invoker"]
    assert tf.attr(self_invoker, "member") == "${google_service_account.function[each.key].member}"
    assert tf.attr(self_invoker, "for_each") == "${local.eventarc_functions}"
    push = invokers["push_invoker"]
    assert tf.attr(push, "for_each") == "${local.push_functions}"
    assert tf.attr(push, "member") == "${google_service_account.pubsub_push.member}"
    assert tf.attr(push, "name") == "${local.function_services[each.key]}"
    assert tf.attr(self_invoker, "name") == "${local.function_services[each.key]}"
    fn = tf.resource("google_cloudfunctions2_function", "function")
    ingress = tf.attr(tf.blocks(fn, "service_config")[0], "ingress_settings")
    assert "ALLOW_ALL" in ingress and "ALLOW_INTERNAL_ONLY" in ingress


# --------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------


def test_function_table(tf: Tf, functions):
    keys = {
        "entry_point", "kind", "memory", "timeout", "max_instances", "env", "buckets", "topics",
        "trigger_buckets", "trigger_topic",
    }  # fmt: skip
    for name, entry in functions.items():
        assert keys <= set(entry), f"{name}: missing {keys - set(entry)}"
        assert entry["kind"] in KIND_OF_TRIGGER.values(), f"{name}: kind {entry['kind']!r}"
        assert re.fullmatch(r"\d+(Mi|Gi)", entry["memory"])
        limit = 3600 if entry["kind"] == "http" else 540
        assert 0 < entry["timeout"] <= limit, name
        max_instances = tf.value(entry["max_instances"])  # a number or a variable's default
        assert isinstance(max_instances, int) and max_instances >= 1, f"{name}: max_instances {max_instances!r}"
        # an event function listens to buckets (Eventarc) or to one topic (Pub/Sub
        # push), never both; an HTTP function to neither
        sources = bool(entry["trigger_buckets"]) + bool(entry["trigger_topic"])
        assert sources == (1 if entry["kind"] == "event" else 0), name
        assert not entry["trigger_topic"] or entry["trigger_topic"] in tf.locals["topics"], name
        assert set(entry["topics"]) <= set(tf.locals["topics"]) | set(tf.locals["held_topics"]), name


# --------------------------------------------------------------------------------
# Code and infrastructure in step: the registry (aperture.functions.FUNCTIONS),
# main.py's entry points, the local stack's functions and Terraform's function
# table are the same set, with the same entry points and trigger kinds. A
# function not in the registry is not deployed.
# --------------------------------------------------------------------------------

# functions-framework decorator -> the registry's trigger
DECORATOR_TRIGGER = {"http": "http", "cloud_event": "cloudevent"}


def _main_py_entry_points() -> dict[str, str]:
    """name -> registry trigger of every function in functions/main.py that a
    functions_framework decorator (@functions_framework.http / .cloud_event)
    declares, read with ast (nothing is imported)."""
    tree = ast.parse(MAIN_PY.read_text(), filename=str(MAIN_PY))
    modules = {"functions_framework"}  # names the module is bound to
    direct = {}  # decorator names imported from it
    for node in tree.body:
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "functions_framework"}
        elif isinstance(node, ast.ImportFrom) and node.module == "functions_framework":
            direct |= {a.asname or a.name: a.name for a in node.names if a.name in DECORATOR_TRIGGER}
    entry_points = {}
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            kind = None
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                if target.value.id in modules and target.attr in DECORATOR_TRIGGER:
                    kind = target.attr
            elif isinstance(target, ast.Name) and target.id in direct:
                kind = direct[target.id]
            if kind:
                assert node.name not in entry_points, f"main.py: {node.name} defined twice"
                entry_points[node.name] = DECORATOR_TRIGGER[kind]
    return entry_points


def _handler_names(function: ast.FunctionDef) -> set[str]:
    """The literal names passed to handler(...) in an entry point's body."""
    return {
        call.args[0].value
        for call in ast.walk(function)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id == "handler"
        and call.args
        and isinstance(call.args[0], ast.Constant)
    }


def test_registry_entries_are_consistent():
    assert REGISTRY, "aperture.functions.FUNCTIONS is empty"
    for key, function in REGISTRY.items():
        assert function.name == key, f"registry key {key} holds {function.name}"
        assert function.trigger in KIND_OF_TRIGGER, f"{key}: trigger {function.trigger!r}"
        # Eventarc delivers exactly one event type per function; HTTP functions have none.
        assert bool(function.event_type) == (function.trigger == "cloudevent"), key


def test_main_py_entry_points_are_the_registry():
    entry_points = _main_py_entry_points()
    registry = {name: f.trigger for name, f in REGISTRY.items()}
    assert set(entry_points) == set(registry), (
        f"main.py without a registry entry: {sorted(set(entry_points) - set(registry))}; "
        f"registry entries without an entry point in main.py: {sorted(set(registry) - set(entry_points))}"
    )
    assert entry_points == registry, "main.py's decorators and the registry's triggers differ"
    # each entry point hands over to its own registry entry's handler
    tree = ast.parse(MAIN_PY.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in registry:
            assert _handler_names(node) == {node.name}, f"main.py: {node.name} calls handler{_handler_names(node)}"


def test_local_stack_runs_the_registry():
    from devstack import stack  # scripts/ is on pytest's pythonpath

    registry = {name: f.trigger for name, f in REGISTRY.items()}
    assert stack.FUNCTIONS == registry, f"the local stack runs {stack.FUNCTIONS}, the registry declares {registry}"


def test_terraform_deploys_exactly_the_registry(functions):
    """Only functions that exist are deployed, each with its entry point in
    main.py and the trigger the registry gives it."""
    entry_points = _main_py_entry_points()
    assert set(functions) == set(REGISTRY), (
        f"in local.functions but not in the registry: {sorted(set(functions) - set(REGISTRY))}; "
        f"in the registry but not in local.functions: {sorted(set(REGISTRY) - set(functions))}"
    )
    for name, entry in functions.items():
        assert entry["entry_point"] == name, f"{name}: entry_point {entry['entry_point']!r}"
        assert entry["entry_point"] in entry_points, f"{name}: no entry point {entry['entry_point']} in main.py"
        assert entry["kind"] == KIND_OF_TRIGGER[REGISTRY[name].trigger], (
            f"{name}: kind {entry['kind']!r}, registry trigger {REGISTRY[name].trigger!r}"
        )


# What functions-framework makes of a Pub/Sub push request for a cloud_event
# entry point (and what Eventarc's Pub/Sub triggers deliver).
PUBSUB_EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"


def test_event_triggers_deliver_the_registry_event_type(tf: Tf, functions):
    fn = tf.resource("google_cloudfunctions2_function", "function")
    content = tf.blocks(tf.dynamic(fn, "event_trigger"), "content")[0]
    extra = tf.resource("google_eventarc_trigger", "extra_bucket")
    extra_type = {tf.attr(c, "attribute"): tf.attr(c, "value") for c in tf.blocks(extra, "matching_criteria")}["type"]
    for name, entry in functions.items():
        if entry["kind"] != "event":
            continue
        if entry["trigger_buckets"]:  # Eventarc: object finalize
            assert REGISTRY[name].event_type == tf.attr(content, "event_type") == extra_type, name
        else:  # a push subscription from its topic
            assert REGISTRY[name].event_type == PUBSUB_EVENT_TYPE, name


def test_functions_are_built_from_the_functions_directory(tf: Tf):
    archive = tf.data["archive_file"]["functions"]
    assert tf.attr(archive, "type") == "zip"
    assert tf.attr(archive, "source_dir") == "${path.module}/../functions"
    obj = tf.resource("google_storage_bucket_object", "functions_source")
    assert "data.archive_file.functions" in tf.attr(obj, "source")
    assert "data.archive_file.functions" in tf.attr(obj, "name"), "content hash in the name redeploys on change"
    fn = tf.resource("google_cloudfunctions2_function", "function")
    assert tf.attr(fn, "for_each") == "${local.cloud_functions}", "the table's functions, with var.target = functions"
    assert tf.attr(fn, "name") == "${each.key}"
    build = tf.blocks(fn, "build_config")[0]
    assert tf.attr(build, "runtime") == "python311"
    assert tf.attr(build, "entry_point") == "${each.value.entry_point}"
    storage = tf.blocks(tf.blocks(build, "source")[0], "storage_source")[0]
    assert tf.attr(storage, "object") == "${google_storage_bucket_object.functions_source.name}"
    service = tf.blocks(fn, "service_config")[0]
    for key, expected in (
        ("available_memory", "each.value.memory"),
        ("timeout_seconds", "each.value.timeout"),
        ("max_instance_count", "each.value.max_instances"),
    ):
        assert expected in str(tf.attr(service, key)), key


def test_environment_variables(tf: Tf, functions):
    env = tf.locals["common_env"]
    missing = REQUIRED_ENV - set(env)
    assert not missing, f"env vars missing: {missing}"
    assert env["APERTURE_PROVIDER"] == "${local.vision_provider}"
    assert tf.locals["vision_provider"] == "cloud"
    assert env["APERTURE_KEY_ISSUER"] == "google"
    assert env["GOOGLE_CLOUD_PROJECT"] == "${var.project_id}"
    fn = tf.resource("google_cloudfunctions2_function", "function")
    service = tf.blocks(fn, "service_config")[0]
    assert "local.common_env" in tf.attr(service, "environment_variables")
    assert "each.value.env" in tf.attr(service, "environment_variables")
    assert env["APERTURE_REGION"] == "${var.region}"


def _aperture_names_set_by_terraform() -> dict[str, set[str]]:
    """APERTURE_* name -> the .tf files that set it, from the code (comments
    excluded): common_env, each table entry's env and anything else."""
    names: dict[str, set[str]] = {}
    for path in sorted(INFRA.glob("*.tf")):
        for name in re.findall(r"\b(APERTURE_[A-Z0-9_]+)\b", _code(path)):
            names.setdefault(name, set()).add(path.name)
    return names


def test_every_aperture_variable_terraform_sets_is_a_config_field(tf: Tf, functions):
    """Config.from_env refuses APERTURE_* names it does not declare, so a name
    Terraform sets that is not a Config field would stop every function at start-up."""
    fields = {f.metadata["env"] for f in dataclasses.fields(aperture_config.Config)}
    assert fields == {env for env, _, _ in aperture_config.Config.describe()}
    names = _aperture_names_set_by_terraform()
    # the structural view agrees with the text scan
    structured = {n for n in tf.locals["common_env"] if n.startswith("APERTURE_")}
    for entry in functions.values():
        structured |= {n for n in entry["env"] if n.startswith("APERTURE_")}
    assert structured and structured <= set(names)
    unknown = {name: sorted(files) for name, files in names.items() if name not in fields}
    assert not unknown, f"APERTURE_* set by Terraform but not a field of aperture.config.Config: {unknown}"
    # and the environment a function gets passes Config.from_env's check
    # (empty values keep the defaults, so only the names are tested)
    for name, entry in functions.items():
        env = {**tf.locals["common_env"], **entry["env"]}
        try:
            aperture_config.Config.from_env({key: "" for key in env})
        except ValueError as error:
            pytest.fail(f"{name}: Config.from_env refuses the environment Terraform sets: {error}")


def test_config_refuses_unknown_aperture_variables():
    with pytest.raises(ValueError, match="APERTURE_NOT_A_SETTING"):
        aperture_config.Config.from_env({"APERTURE_NOT_A_SETTING": "1"})
    # a removed setting is unknown too, and the unknown ones are named among
    # several, the declared ones (APERTURE_JOBS_TOPIC is one again, since S9) not
    with pytest.raises(ValueError, match="APERTURE_ENABLE_GPS") as raised:
        aperture_config.Config.from_env(
            {
                "APERTURE_ENABLE_GPS": "1",
                "APERTURE_NOT_A_SETTING_EITHER": "1",
                "APERTURE_JOBS_TOPIC": "t",
                "APERTURE_REGION": "x",
            }
        )
    message = str(raised.value)
    assert "APERTURE_NOT_A_SETTING_EITHER" in message
    assert "APERTURE_JOBS_TOPIC" not in message and "APERTURE_REGION" not in message
    # clients' variables share the prefix and are accepted (and ignored)
    assert aperture_config.CLIENT_VARIABLES
    clients = {name: "x" for name in aperture_config.CLIENT_VARIABLES}
    assert aperture_config.Config.from_env(clients) == aperture_config.Config()
    # other prefixes are none of Config's business
    assert aperture_config.Config.from_env({"NOT_APERTURE_X": "1", "PATH": "/bin"}) == aperture_config.Config()


def test_process_is_triggered_by_both_buckets(tf: Tf, functions):
    process = functions["process"]
    assert process["trigger_buckets"][0] == "uploads"
    assert set(process["trigger_buckets"]) == {"uploads", "source"}
    fn = tf.resource("google_cloudfunctions2_function", "function")
    trigger = tf.dynamic(fn, "event_trigger")
    assert trigger, "functions need a dynamic event_trigger"
    assert "local.primary_event_bucket" in tf.attr(trigger, "for_each")
    assert "buckets[0]" in str(tf.locals["primary_event_bucket"])
    content = tf.blocks(trigger, "content")[0]
    assert tf.attr(content, "event_type") == "google.cloud.storage.object.v1.finalized"
    assert tf.attr(content, "retry_policy") == "RETRY_POLICY_RETRY"
    assert tf.attr(content, "service_account_email") == "${google_service_account.function[each.key].email}"
    event_filter = tf.blocks(content, "event_filters")[0]
    assert tf.attr(event_filter, "attribute") == "bucket"
    assert "local.buckets[" in tf.attr(event_filter, "value")
    # every further bucket: an Eventarc trigger to the same Cloud Run service
    extra = tf.resource("google_eventarc_trigger", "extra_bucket")
    assert tf.attr(extra, "for_each") == "${local.extra_bucket_triggers}"
    assert "slice(buckets" in str(tf.locals["extra_bucket_triggers"])
    criteria = {tf.attr(c, "attribute"): tf.attr(c, "value") for c in tf.blocks(extra, "matching_criteria")}
    assert criteria["type"] == "google.cloud.storage.object.v1.finalized"
    assert "local.buckets[each.value.bucket]" in criteria["bucket"]
    run = tf.blocks(tf.blocks(extra, "destination")[0], "cloud_run_service")[0]
    assert "google_cloudfunctions2_function.function[each.value.function].service_config[0].service" in tf.attr(
        run, "service"
    )
    assert tf.attr(extra, "service_account") == "${google_service_account.function[each.value.function].email}"
    # the event account may invoke its own service and receive events
    assert "roles/eventarc.eventReceiver" in process["project_roles"]


# --------------------------------------------------------------------------------
# Batch jobs (S9): the jobs topic, its push subscriptions and dead letters
# --------------------------------------------------------------------------------


def _push_functions(functions) -> set[str]:
    """local.push_functions, evaluated: the event functions with a trigger_topic."""
    return {n for n, e in functions.items() if e["kind"] == "event" and e["trigger_topic"]}


def _oidc(tf: Tf, subscription: dict) -> tuple[str, dict]:
    push = tf.blocks(subscription, "push_config")
    assert len(push) == 1, "a push subscription has one push_config"
    token = tf.blocks(push[0], "oidc_token")
    assert len(token) == 1, "pushes must carry an OIDC token (the service only accepts authenticated calls)"
    return tf.attr(push[0], "push_endpoint"), token[0]


# The function's run.app URL, whichever target runs it (main.tf).
FUNCTION_URI = "local.function_urls[each.key]"


def test_jobs_topic_and_its_dead_letter_topic(tf: Tf):
    from devstack import stack  # the local stack's names, for the same prefix

    topics = tf.locals["topics"]
    assert topics["jobs"] == "${local.prefix}-jobs"
    assert tf.render(topics["jobs"]) == stack.JOBS_TOPIC == aperture_config.Config().jobs_topic
    queue = tf.resource("google_pubsub_topic", "queue")
    assert tf.attr(queue, "for_each") == "${local.topics}"
    assert tf.attr(queue, "name") == "${each.value}"
    dead = tf.resource("google_pubsub_topic", "dead_letter")
    assert tf.attr(dead, "for_each") == "${local.topics}"
    assert tf.render(tf.attr(dead, "name").replace("${each.value}", topics["jobs"])) == stack.JOBS_DEAD_LETTER_TOPIC
    # the functions are told the topic's real name (it follows name_prefix)
    assert tf.locals["common_env"]["APERTURE_JOBS_TOPIC"] == '${google_pubsub_topic.queue["jobs"].name}'


def test_transform_is_pushed_from_the_jobs_topic_with_a_dead_letter_policy(tf: Tf, functions):
    from devstack import stack

    transform = functions["transform"]
    assert transform["kind"] == "event" and transform["trigger_topic"] == "jobs" and not transform["trigger_buckets"]
    fed_by_jobs = {n for n in _push_functions(functions) if functions[n]["trigger_topic"] == "jobs"}
    assert fed_by_jobs == {"transform"}, "only transform is fed by the jobs topic"
    assert re.sub(r"\s+", "", tf.locals["push_functions"]) == (
        '${{forname,finlocal.event_functions:name=>fiff.trigger_topic!=""}}'
    )
    sub = tf.resource("google_pubsub_subscription", "push")
    assert tf.attr(sub, "for_each") == "${local.push_functions}"
    assert tf.attr(sub, "topic") == "${google_pubsub_topic.queue[each.value.trigger_topic].id}"
    name = tf.attr(sub, "name").replace("${google_pubsub_topic.queue[each.value.trigger_topic].name}", stack.JOBS_TOPIC)
    assert name.replace("${each.key}", "transform") == stack.JOBS_SUBSCRIPTION
    # pushed to the function's own run.app URL (what internal-only ingress
    # admits from Pub/Sub), as the push account, with that URL as audience
    endpoint, token = _oidc(tf, sub)
    assert endpoint.startswith("${" + FUNCTION_URI + "}"), endpoint
    assert tf.attr(token, "service_account_email") == "${google_service_account.pubsub_push.email}"
    assert tf.attr(token, "audience") == "${" + FUNCTION_URI + "}"
    # after 5 deliveries (as locally) the message goes to the dead-letter topic
    policy = tf.blocks(sub, "dead_letter_policy")
    assert len(policy) == 1, "the jobs subscription needs a dead_letter_policy"
    assert tf.attr(policy[0], "dead_letter_topic") == "${google_pubsub_topic.dead_letter[each.value.trigger_topic].id}"
    attempts = tf.attr(policy[0], "max_delivery_attempts")
    if attempts == "${local.max_delivery_attempts}":
        attempts = tf.locals["max_delivery_attempts"]
    assert attempts == stack.MAX_DELIVERIES == 5
    # failed deliveries are retried with backoff, not at once
    retry = tf.blocks(sub, "retry_policy")
    assert len(retry) == 1 and tf.attr(retry[0], "minimum_backoff") and tf.attr(retry[0], "maximum_backoff")
    # Pub/Sub waits as long as the function may run before it redelivers
    assert tf.attr(sub, "ack_deadline_seconds") == "${each.value.timeout}"
    assert transform["timeout"] <= 600, "an ack deadline is at most 600 s"
    # an idle subscription must not expire (the default TTL is 31 days)
    expiration = tf.blocks(sub, "expiration_policy")
    assert len(expiration) == 1 and tf.attr(expiration[0], "ttl") == ""


def test_dead_letters_are_pushed_to_transform(tf: Tf):
    from devstack import stack

    sub = tf.resource("google_pubsub_subscription", "dead_letter_push")
    assert tf.attr(sub, "for_each") == "${local.push_functions}"
    assert tf.attr(sub, "topic") == "${google_pubsub_topic.dead_letter[each.value.trigger_topic].id}"
    name = tf.attr(sub, "name").replace(
        "${google_pubsub_topic.dead_letter[each.value.trigger_topic].name}", stack.JOBS_DEAD_LETTER_TOPIC
    )
    assert name.replace("${each.key}", "transform") == stack.JOBS_DEAD_LETTER_SUBSCRIPTION
    endpoint, token = _oidc(tf, sub)
    assert endpoint.startswith("${" + FUNCTION_URI + "}"), endpoint
    assert tf.attr(token, "service_account_email") == "${google_service_account.pubsub_push.email}"
    assert tf.attr(token, "audience") == "${" + FUNCTION_URI + "}"
    assert not tf.blocks(sub, "dead_letter_policy"), "a dead letter's dead letter would have nowhere to go"
    expiration = tf.blocks(sub, "expiration_policy")
    assert len(expiration) == 1 and tf.attr(expiration[0], "ttl") == ""


def test_pubsub_service_agent_may_dead_letter(tf: Tf):
    """Dead lettering runs as Pub/Sub's service agent: publisher on the
    dead-letter topic, subscriber on the source subscription, each on that one
    resource; and it mints the push account's OIDC tokens."""
    agent = tf.resource("google_project_service_identity", "pubsub")
    assert tf.attr(agent, "service") == "pubsub.googleapis.com"
    member = "serviceAccount:${google_project_service_identity.pubsub.email}"
    publisher = tf.resource("google_pubsub_topic_iam_member", "dead_letter_publisher")
    assert tf.attr(publisher, "for_each") == "${local.topics}"
    assert tf.attr(publisher, "topic") == "${google_pubsub_topic.dead_letter[each.key].name}"
    assert (tf.attr(publisher, "role"), tf.attr(publisher, "member")) == ("roles/pubsub.publisher", member)
    subscriber = tf.resource("google_pubsub_subscription_iam_member", "dead_letter_subscriber")
    assert tf.attr(subscriber, "for_each") == "${local.push_functions}"
    assert tf.attr(subscriber, "subscription") == "${google_pubsub_subscription.push[each.key].name}"
    assert (tf.attr(subscriber, "role"), tf.attr(subscriber, "member")) == ("roles/pubsub.subscriber", member)
    creator = tf.resource("google_service_account_iam_member", "pubsub_push_token_creator")
    assert tf.attr(creator, "service_account_id") == "${google_service_account.pubsub_push.name}"
    assert (tf.attr(creator, "role"), tf.attr(creator, "member")) == ("roles/iam.serviceAccountTokenCreator", member)


# --------------------------------------------------------------------------------
# The repair sweep (#19): its topic, pushed to `repair`, ticked by Cloud Scheduler
# --------------------------------------------------------------------------------


def test_repair_is_pushed_from_the_repair_topic_which_cloud_scheduler_ticks(tf: Tf, functions):
    from devstack import stack

    topics = tf.locals["topics"]
    assert topics["repair"] == "${local.prefix}-repair"
    assert tf.render(topics["repair"]) == stack.REPAIR_TOPIC
    repair = functions["repair"]
    assert repair["kind"] == "event" and repair["trigger_topic"] == "repair" and not repair["trigger_buckets"]
    assert {n for n in _push_functions(functions) if functions[n]["trigger_topic"] == "repair"} == {"repair"}
    assert repair["timeout"] <= 540, "the ack deadline, and the most an event function may run"
    # the queue machinery (push subscription with a dead-letter policy, dead letters
    # pushed too) gives the same names as the local stack's
    queue = tf.attr(tf.resource("google_pubsub_subscription", "push"), "name")
    assert (
        queue.replace("${google_pubsub_topic.queue[each.value.trigger_topic].name}", stack.REPAIR_TOPIC).replace(
            "${each.key}", "repair"
        )
        == stack.REPAIR_SUBSCRIPTION
    )
    dead = tf.attr(tf.resource("google_pubsub_subscription", "dead_letter_push"), "name")
    assert (
        dead.replace(
            "${google_pubsub_topic.dead_letter[each.value.trigger_topic].name}", stack.REPAIR_DEAD_LETTER_TOPIC
        ).replace("${each.key}", "repair")
        == stack.REPAIR_DEAD_LETTER_SUBSCRIPTION
    )
    dead_topic = tf.attr(tf.resource("google_pubsub_topic", "dead_letter"), "name")
    assert tf.render(dead_topic.replace("${each.value}", topics["repair"])) == stack.REPAIR_DEAD_LETTER_TOPIC
    # every 15 minutes (the local timer's default too), to the topic, published as Cloud Scheduler's agent
    job = tf.resource("google_cloud_scheduler_job", "repair")
    assert (tf.attr(job, "schedule"), tf.attr(job, "time_zone")) == ("*/15 * * * *", "Etc/UTC")
    assert stack.REPAIR_EVERY == 15 * 60
    assert tf.attr(job, "region") == "${var.region}"
    [target] = tf.blocks(job, "pubsub_target")
    assert tf.attr(target, "topic_name") == '${google_pubsub_topic.queue["repair"].id}'
    assert tf.attr(target, "data"), "a Pub/Sub message needs data or attributes"
    assert not {"http_target", "app_engine_http_target"} & set(job), "a Pub/Sub target needs no App Engine app"


def test_repair_function_grants_and_sizing(functions):
    """repair processes stale records again (what process has for a team image: Firestore,
    Vertex AI, objectUser on uploads, the dead-letter topic) and deletes images whose object
    is gone (their renditions and job outputs in derived); one sweep at a time."""
    repair, process = functions["repair"], functions["process"]
    assert repair["buckets"] == {"uploads": "roles/storage.objectUser", "derived": "roles/storage.objectUser"}
    assert repair["buckets"]["uploads"] == process["buckets"]["uploads"]
    assert sorted(repair["project_roles"]) == ["roles/aiplatform.user", "roles/datastore.user"]
    assert repair["topics"] == process["topics"] == {"process_dead_letter": "roles/pubsub.publisher"}
    assert (repair["max_instances"], repair["concurrency"]) == (1, 1)
    assert repair["sign_urls"] is False and repair["link_secret"] is False and repair["env"] == {}


def test_processing_dead_letters_are_held_for_operators(tf: Tf):
    """process (and repair) publish a team image they gave up on to a topic of its own, which
    no function is pushed: a pull subscription keeps its messages 7 days, acknowledged ones too."""
    from devstack import stack

    held = tf.locals["held_topics"]
    assert set(held) == {"process_dead_letter"}
    name = tf.render(held["process_dead_letter"])
    assert name == stack.PROCESS_DEAD_LETTER_TOPIC == aperture_config.Config().process_dead_letter_topic
    topic = tf.resource("google_pubsub_topic", "held")
    assert (tf.attr(topic, "for_each"), tf.attr(topic, "name")) == ("${local.held_topics}", "${each.value}")
    sub = tf.resource("google_pubsub_subscription", "hold")
    assert tf.attr(sub, "for_each") == "${local.held_topics}"
    assert tf.attr(sub, "topic") == "${google_pubsub_topic.held[each.key].id}"
    rendered = tf.attr(sub, "name").replace("${google_pubsub_topic.held[each.key].name}", name)
    assert rendered == stack.PROCESS_DEAD_LETTER_HOLD
    assert not tf.blocks(sub, "push_config") and not tf.blocks(sub, "dead_letter_policy"), "pulled by an operator"
    assert tf.attr(sub, "message_retention_duration") == "604800s"
    assert tf.attr(sub, "retain_acked_messages") is True, "acknowledged dead letters can be replayed (seek)"
    [expiration] = tf.blocks(sub, "expiration_policy")
    assert tf.attr(expiration, "ttl") == ""
    # every function's Config names the real topic (it follows the prefix)
    env = tf.locals["common_env"]
    assert env["APERTURE_PROCESS_DEAD_LETTER_TOPIC"] == '${google_pubsub_topic.held["process_dead_letter"].name}'


def test_functions_publish_only_to_their_own_topics(tf: Tf, functions):
    # the table: jobs publishes to the jobs topic, process and repair (which processes
    # again) to the processing dead-letter topic; no other function has a Pub/Sub role
    with_topics = {name: entry["topics"] for name, entry in functions.items() if entry["topics"]}
    assert with_topics == {
        "jobs": {"jobs": "roles/pubsub.publisher"},
        "process": {"process_dead_letter": "roles/pubsub.publisher"},
        "repair": {"process_dead_letter": "roles/pubsub.publisher"},
    }
    assert "function_topic_roles" in tf.locals and "f.topics" in tf.locals["function_topic_roles"]
    # granted on that topic (a queue or a held one, by key), to that function's account
    grant = tf.resource("google_pubsub_topic_iam_member", "function")
    assert tf.attr(grant, "for_each") == "${local.function_topic_roles}"
    assert tf.attr(grant, "topic") == "${local.topic_names[each.value.topic]}"
    names = re.sub(r"\s+", " ", tf.locals["topic_names"])
    assert "google_pubsub_topic.queue : key => topic.name" in names
    assert "google_pubsub_topic.held : key => topic.name" in names
    assert tf.attr(grant, "role") == "${each.value.role}"
    assert tf.attr(grant, "member") == "${google_service_account.function[each.value.function].member}"
    # never project-wide: no function has a Pub/Sub project role, and the only
    # project-level Pub/Sub grant is Cloud Storage's service agent's (Eventarc)
    for name, entry in functions.items():
        assert not [r for r in entry["project_roles"] if r.startswith("roles/pubsub")], name
    for rname, body in tf.resources["google_project_iam_member"].items():
        if "pubsub" in str(tf.attr(body, "role")):
            assert rname == "gcs_pubsub_publisher", rname
            assert "google_storage_project_service_account.gcs" in tf.attr(body, "member")
    # and no authoritative Pub/Sub IAM (bindings/policies would drop other members)
    authoritative = [t for t in tf.resources if t.startswith("google_pubsub") and t.endswith(("_binding", "_policy"))]
    assert not authoritative, authoritative


def test_job_functions_storage_grants(functions):
    """jobs reads outputs from derived; transform reads inputs from uploads and
    creates outputs in derived (create-only; objectUser so that an existing output
    answers 412, which a redelivery expects, not 403)."""
    assert functions["jobs"]["buckets"] == {"derived": "roles/storage.objectViewer"}
    assert functions["transform"]["buckets"] == {
        "uploads": "roles/storage.objectViewer",
        "derived": "roles/storage.objectUser",
    }
    for name in ("jobs", "transform"):
        assert functions[name]["project_roles"] == ["roles/datastore.user"], name
        assert functions[name]["sign_urls"] is False, name


def test_search_function_grants_and_sizing(functions):
    """search (S10) embeds queries and re-embeds images with the cloud provider
    (Vertex AI, Cloud Vision), reads records and runs vector queries in Firestore,
    and reads (never writes) the image bytes it re-embeds from uploads."""
    search = functions["search"]
    assert search["kind"] == "http" and not search["trigger_buckets"] and not search["trigger_topic"]
    assert search["buckets"] == {"uploads": "roles/storage.objectViewer"}
    assert search["topics"] == {}
    assert sorted(search["project_roles"]) == ["roles/aiplatform.user", "roles/datastore.user"]
    assert search["sign_urls"] is False and search["env"] == {}
    # a re-embedding decodes one image of up to APERTURE_MAX_PIXELS per request in flight
    memory = search["memory"]
    mebibytes = int(memory[:-2]) * (1024 if memory.endswith("Gi") else 1)
    assert mebibytes >= 2048, memory
    assert 1 <= search["max_instances"] <= 20 and 1 <= search["concurrency"] <= 8
    assert search["timeout"] >= 60, "a re-embedding reads, decodes and calls two APIs"


def test_transform_max_instances_is_a_variable(tf: Tf, functions):
    assert functions["transform"]["max_instances"] == "${var.transform_max_instances}"
    assert tf.var_default("transform_max_instances") == 10
    fn = tf.resource("google_cloudfunctions2_function", "function")
    count = tf.attr(tf.blocks(fn, "service_config")[0], "max_instance_count")
    assert "each.value.max_instances" in count and "var.max_instances_scale" in count
    example = (INFRA / "terraform.tfvars.example").read_text()
    assert re.search(r"^#?\s*transform_max_instances\s*=", example, flags=re.M), "not in terraform.tfvars.example"


def test_fault_injection_is_never_deployed():
    """APERTURE_JOB_FAULTS makes job items fail on purpose (integration tests only)."""
    assert "APERTURE_JOB_FAULTS" not in _aperture_names_set_by_terraform()


# --------------------------------------------------------------------------------
# Firestore
# --------------------------------------------------------------------------------


def _tf_indexes(tf: Tf) -> dict[str, tuple]:
    """name -> (collection, ((field, order|array|vector), ...))"""
    out = {}
    for name, body in tf.resources["google_firestore_index"].items():
        fields = []
        for field in tf.blocks(body, "fields"):
            path = tf.attr(field, "field_path")
            if "vector_config" in field:
                vector = tf.blocks(field, "vector_config")[0]
                fields.append((path, f"VECTOR{tf.attr(vector, 'dimension')}"))
            elif tf.attr(field, "array_config"):
                fields.append((path, tf.attr(field, "array_config")))
            else:
                fields.append((path, tf.attr(field, "order")))
        out[name] = (tf.attr(body, "collection"), tuple(fields))
    return out


def test_firestore_database(tf: Tf):
    db = tf.resource("google_firestore_database", "default")
    assert tf.attr(db, "name") == "(default)"
    assert tf.attr(db, "type") == "FIRESTORE_NATIVE"


def test_firestore_composite_indexes(tf: Tf):
    indexes = set(_tf_indexes(tf).values())
    for fields in (
        (("team", "ASCENDING"), ("created_at", "DESCENDING")),
        (("team", "ASCENDING"), ("format", "ASCENDING"), ("created_at", "DESCENDING")),
        (("team", "ASCENDING"), ("camera", "ASCENDING"), ("created_at", "DESCENDING")),
        (("team", "ASCENDING"), ("labels", "CONTAINS"), ("created_at", "DESCENDING")),
    ):
        assert ("images", fields) in indexes, f"images index {fields} missing"
    for body in tf.resources["google_firestore_index"].values():
        assert tf.attr(body, "database") == "${google_firestore_database.default.name}"


# __name__ before the vector field: Firestore returns a vector index that way,
# and declared otherwise the provider would replace it on every apply
# (tests/infra/test_apply_semantics.py).
VECTOR_INDEX_FIELDS = (
    ("team", "ASCENDING"),
    ("embedding_model", "ASCENDING"),
    ("__name__", "ASCENDING"),
    ("embedding", "VECTOR"),
)


def test_firestore_vector_index(tf: Tf):
    vectors = []
    for name, body in tf.resources["google_firestore_index"].items():
        for field in tf.blocks(body, "fields"):
            if "vector_config" in field:
                config = tf.blocks(field, "vector_config")[0]
                vectors.append((name, tf.attr(body, "collection"), tf.attr(field, "field_path"), config))
    assert len(vectors) == 1, f"one vector index, not {[v[0] for v in vectors]}"
    name, collection, path, config = vectors[0]
    assert (collection, path) == ("images", "embedding")
    # find_nearest pre-filters on team and embedding_model (ImageStore.nearest):
    # the index leads with both, in that order, and ends with __name__ and the vector
    fields = _tf_indexes(tf)[name][1]
    assert tuple((f, "VECTOR" if kind.startswith("VECTOR") else kind) for f, kind in fields) == VECTOR_INDEX_FIELDS
    # Built for the deployed provider's vectors: a 384-d index under 512-d
    # cloud embeddings would leave every image out of search.
    assert tf.attr(config, "dimension") == "${local.embedding_dimensions}"
    assert tf.locals["vision_provider"] == "cloud"
    assert tf.locals["embedding_dimensions"] == vision_cloud.DEFAULT_DIMENSION
    assert "flat" in config


def test_the_deployed_provider_embeds_at_the_indexed_dimension(tf: Tf):
    """The container the functions run builds, from the environment Terraform
    sets (APERTURE_PROVIDER=cloud), a provider whose vectors are as long as the
    cloud index, and whose model name (what records and the pre-filter carry)
    says so. Building it is cheap: clients load on first use."""
    from aperture.config import Config
    from aperture.container import Container

    provider = Container(Config(provider=tf.locals["vision_provider"], project="p")).vision
    assert provider.name == "cloud"
    assert provider.dimensions == tf.locals["embedding_dimensions"]
    assert provider.model.endswith(f":{tf.locals['embedding_dimensions']}")
    # and the local provider's (the emulator's index) differs: the two indexes
    # are not interchangeable
    assert vision_local.DIMENSIONS != tf.locals["embedding_dimensions"]


def test_the_local_index_file_never_reaches_the_cloud(tf: Tf):
    """infra/firestore.indexes.json holds the local provider's 384-d vector
    index (for the emulator); Terraform declares its own indexes and must not
    read that file, nor spell a vector dimension other than the cloud one."""
    for path in INFRA.glob("*.tf"):
        code = _code(path)
        assert "indexes.json" not in code, f"{path.name} reads firestore.indexes.json"
        for dimension in re.findall(r"\bdimension\s*=\s*(\S+)", code):
            assert dimension == "local.embedding_dimensions", f"{path.name}: dimension = {dimension}"
    doc = json.loads((INFRA / "firestore.indexes.json").read_text())
    local = [f for i in doc["indexes"] for f in i["fields"] if "vectorConfig" in f]
    assert [f["vectorConfig"]["dimension"] for f in local] == [vision_local.DIMENSIONS]


def _vector_queries() -> list[tuple[str, str | None, tuple[str, ...], tuple[str, ...], str]]:
    """Every find_nearest call in the storage layer, read with ast:
    (where, collection, pre-filter fields in order, their operators, vector field).
    The collection is the module's COLLECTION; the pre-filters are the
    FieldFilter(...)s of the same function, in source order."""
    found = []
    for path in sorted((ROOT / "functions" / "aperture" / "storage").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        collection = next(
            (
                node.value.value
                for node in tree.body
                if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "COLLECTION" for t in node.targets)
                and isinstance(node.value, ast.Constant)
            ),
            None,
        )
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            calls = [c for c in ast.walk(function) if isinstance(c, ast.Call)]
            nearest = [c for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr == "find_nearest"]
            if not nearest:
                continue
            filters = sorted(
                (c for c in calls if isinstance(c.func, ast.Name) and c.func.id == "FieldFilter"),
                key=lambda c: (c.lineno, c.col_offset),
            )
            fields = tuple(c.args[0].value for c in filters)
            operators = tuple(c.args[1].value for c in filters)
            for call in nearest:
                vector = next(k.value.value for k in call.keywords if k.arg == "vector_field")
                found.append((f"{path.name}:{function.name}", collection, fields, operators, vector))
    return found


def test_every_vector_query_has_its_index(tf: Tf):
    """A find_nearest with pre-filters needs a composite vector index with
    those equality fields first and the vector field last, in the cloud
    (Terraform) and in firestore.indexes.json; the emulator serves it without
    one, so only this test notices a missing or misordered index."""
    queries = _vector_queries()
    assert any(where == "images.py:nearest" for where, *_ in queries), "ImageStore.nearest not found"
    declared = set(_tf_indexes(tf).values())
    doc = json.loads((INFRA / "firestore.indexes.json").read_text())
    local = {
        (
            i["collectionGroup"],
            tuple(
                (f["fieldPath"], "VECTOR" if "vectorConfig" in f else f.get("order") or f.get("arrayConfig"))
                for f in i["fields"]
            ),
        )
        for i in doc["indexes"]
    }
    for where, collection, fields, operators, vector in queries:
        assert collection, f"{where}: no COLLECTION in its module"
        assert set(operators) <= {"=="}, f"{where}: vector pre-filters must be equality filters, not {operators}"
        wanted = (*((f, "ASCENDING") for f in fields), ("__name__", "ASCENDING"))
        assert (collection, (*wanted, (vector, "VECTOR${local.embedding_dimensions}"))) in declared, (
            f"{where}: no Terraform vector index {collection}({', '.join(fields)}, __name__, {vector})"
        )
        assert (collection, (*wanted, (vector, "VECTOR"))) in local, (
            f"{where}: no vector index {collection}({', '.join(fields)}, {vector}) in firestore.indexes.json"
        )
    nearest = [q for q in queries if q[0] == "images.py:nearest"][0]
    assert nearest[1:3] == ("images", ("team", "embedding_model"))


def test_firestore_ttl_policies(tf: Tf):
    ttl = set()
    for body in tf.resources["google_firestore_field"].values():
        if "ttl_config" in body:
            ttl.add((tf.attr(body, "collection"), tf.attr(body, "field")))
    assert {("audit", "expires_at"), ("histograms", "expires_at")} <= ttl


def test_firestore_indexes_json_is_deployed(tf: Tf):
    """infra/firestore.indexes.json (Firebase CLI format, used locally) and the
    Terraform must agree: every index the code relies on must exist in the cloud."""
    path = INFRA / "firestore.indexes.json"
    doc = json.loads(path.read_text())
    declared = set(_tf_indexes(tf).values())
    for index in doc.get("indexes", []):
        fields = []
        for field in index["fields"]:
            if "vectorConfig" in field:
                # The file serves the local stack and its local provider; the
                # cloud index is as long as the cloud provider's vectors.
                assert field["vectorConfig"]["dimension"] == vision_local.DIMENSIONS
                fields.append((field["fieldPath"], "VECTOR${local.embedding_dimensions}"))
            elif "arrayConfig" in field:
                fields.append((field["fieldPath"], field["arrayConfig"]))
            else:
                fields.append((field["fieldPath"], field["order"]))
        if fields and fields[-1][0] == "__name__":
            fields.pop()
        assert (index["collectionGroup"], tuple(fields)) in declared, f"not in Terraform: {index}"
    ttl = {
        (tf.attr(b, "collection"), tf.attr(b, "field"))
        for b in tf.resources["google_firestore_field"].values()
        if "ttl_config" in b
    }
    for override in doc.get("fieldOverrides", []):
        if override.get("ttl"):
            assert (override["collectionGroup"], override["fieldPath"]) in ttl, f"TTL not in Terraform: {override}"


# --------------------------------------------------------------------------------
# API Gateway
# --------------------------------------------------------------------------------


def test_api_gateway(tf: Tf):
    for rtype in ("google_api_gateway_api", "google_api_gateway_api_config", "google_api_gateway_gateway"):
        for name, body in tf.resources[rtype].items():
            assert "google-beta" in str(tf.attr(body, "provider")), f"{rtype}.{name} needs google-beta"
    config = tf.resource("google_api_gateway_api_config", "aperture")
    document = tf.blocks(tf.blocks(config, "openapi_documents")[0], "document")[0]
    assert tf.attr(document, "contents") == "${base64encode(local.openapi_document)}"
    # openapi.yaml rendered with the project and region (the backends of the
    # functions target); gateway.tf readdresses them for the run target
    compact = re.sub(r"\s+", "", tf.locals["openapi_functions"])
    assert compact.startswith("${templatefile(")
    assert "${path.module}/openapi.yaml" in compact
    assert "var.project_id" in compact and "var.region" in compact
    assert re.search(r"project'?\"?[:=]", compact) and re.search(r"region'?\"?[:=]", compact)
    assert "local.openapi_functions" in tf.locals["openapi_document"]
    lifecycle = tf.blocks(config, "lifecycle")[0]
    assert tf.attr(lifecycle, "create_before_destroy") is True
    backend = tf.blocks(tf.blocks(config, "gateway_config")[0], "backend_config")[0]
    assert tf.attr(backend, "google_service_account") == "${google_service_account.gateway.email}"
    gateway = tf.resource("google_api_gateway_gateway", "aperture")
    assert tf.attr(gateway, "api_config") == "${google_api_gateway_api_config.aperture.id}"
    managed = tf.resource("google_project_service", "gateway_managed_service")
    assert tf.attr(managed, "service") == "${google_api_gateway_api.aperture.managed_service}"


def _openapi_backends() -> dict[str, str]:
    yaml = require("yaml")
    spec = yaml.safe_load((INFRA / "openapi.yaml").read_text())
    backends = {}
    top = spec.get("x-google-backend")
    if top:
        backends["(default)"] = top["address"]
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method.lower() in {"get", "put", "post", "delete", "options", "head", "patch"}:
                backend = op.get("x-google-backend") or top
                assert backend, f"{method} {path} has no backend"
                backends[f"{method.upper()} {path}"] = backend["address"]
    return backends


def test_every_openapi_backend_is_a_deployed_http_function(functions):
    backends = _openapi_backends()
    assert backends
    used = set()
    for operation, address in backends.items():
        assert address.startswith("https://${region}-${project}.cloudfunctions.net/"), operation
        name = address.rstrip("/").rsplit("/", 1)[-1]
        assert name in functions, f"{operation}: backend {name} is not in local.functions"
        assert functions[name]["kind"] == "http", f"{operation}: backend {name} is not an HTTP function"
        used.add(name)
    # and the other way round: an HTTP function no route reaches is dead weight
    http = {name for name, entry in functions.items() if entry["kind"] == "http"}
    assert http <= used, f"HTTP functions no openapi.yaml operation routes to: {sorted(http - used)}"


# --------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------


def test_outputs(tf: Tf):
    for name in ("gateway_url", "source_bucket", "uploads_bucket", "derived_bucket", "function_urls"):
        assert name in tf.outputs, f"output {name} missing"
    assert "default_hostname" in tf.attr(tf.outputs["gateway_url"], "value")


# --------------------------------------------------------------------------------
# checkov
# --------------------------------------------------------------------------------

# Findings accepted on purpose: (check id, resource or "*") -> why it does not apply.
CHECKOV_SKIPS = {
    # Customer-managed encryption keys: Google-managed encryption at rest is on for
    # every service; the spec asks for no CMEK, and a KMS key ring (billed per key
    # version, with its own rotation and service-agent grants) is an org policy
    # choice an operator can add without changing the design.
    ("CKV_GCP_84", "*"): "Artifact Registry uses Google-managed encryption (no CMEK requirement)",
    # The same for the Pub/Sub topics: their messages name a job item ({job_id,
    # index}) and carry no image data.
    ("CKV_GCP_83", "*"): "Pub/Sub topics use Google-managed encryption (no CMEK requirement)",
    # The access-logs bucket is the sink of every other bucket's usage logs; a
    # log bucket logging its own access would log its log writes (and CKV_GCP_63
    # forbids a bucket logging to itself anyway).
    ("CKV_GCP_62", "google_storage_bucket.access_logs"): "the access-log sink itself",
}


def _checkov_command() -> list[str]:
    """checkov pins old networkx/packaging/cachetools and cannot share the
    project's .venv (scikit-image needs networkx>=3), so it usually lives in a
    tool venv of its own. Looked for, in order: $CHECKOV, .venv-tools/bin/checkov,
    next to this interpreter, on PATH."""
    candidates = [
        os.environ.get("CHECKOV", ""),
        str(ROOT / ".venv-tools" / "bin" / "checkov"),
        str(Path(sys.executable).with_name("checkov")),
        shutil.which("checkov") or "",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    try:
        import checkov  # noqa: F401
    except ImportError:
        pytest.fail("checkov not found: `make test` installs it into .venv-tools (requirements-tools.txt)")
    return [sys.executable, "-m", "checkov.main"]


def test_checkov_finds_nothing_unexplained(tmp_path):
    env = dict(os.environ)
    # Offline: no platform look-ups (guidelines, id mapping, version check).
    env.update(BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false", LOG_LEVEL="ERROR")
    env.pop("BC_API_KEY", None)
    output = tmp_path / "checkov.json"
    cmd = _checkov_command() + [
        "-d", str(INFRA),
        "--framework", "terraform",
        "--quiet", "--compact", "--skip-download",
        "-o", "json",
    ]  # fmt: skip
    with output.open("w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode in (0, 1), f"checkov crashed ({proc.returncode}): {proc.stderr[-2000:]}"
    report = json.loads(output.read_text() or "{}")
    reports = report if isinstance(report, list) else [report]
    failed, used = [], set()
    for rep in reports:
        summary = rep.get("summary", {})
        assert summary.get("parsing_errors", 0) == 0, f"checkov could not parse: {summary}"
        for finding in rep.get("results", {}).get("failed_checks", []):
            check, resource = finding["check_id"], finding["resource"]
            key = (check, resource) if (check, resource) in CHECKOV_SKIPS else (check, "*")
            if key in CHECKOV_SKIPS:
                used.add(key)
            else:
                failed.append(f"{check} {resource}: {finding['check_name']} ({finding.get('file_path')})")
    assert not failed, "checkov findings:\n" + "\n".join(failed)
    assert any(rep.get("summary", {}).get("passed", 0) > 0 for rep in reports), "checkov checked nothing"
    stale = set(CHECKOV_SKIPS) - used
    assert not stale, f"skips that no longer match a finding (remove them): {stale}"
