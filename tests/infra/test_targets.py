"""Two deployment targets, chosen by var.target (issue 17 item 8; S12).

"functions": one Cloud Functions gen2 function per registry entry
(functions.tf); "run": one Cloud Run service per registry entry, all running
the Dockerfile's image (cloudrun.tf). Offline, the target-dependent
expressions are evaluated here for each target: every registry function must
have exactly one deployment resource, with its entry point, its identity,
sizing, environment, invokers, triggers and the gateway's backend pointing at
it, whichever target runs it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aperture.functions import FUNCTIONS as REGISTRY
from tests.infra.test_terraform import Tf, _openapi_backends
from tests.support.tools import require

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
TARGETS = ("functions", "run")
DEPLOYMENT_TYPES = ("google_cloudfunctions2_function", "google_cloud_run_v2_service")
KIND_OF_TRIGGER = {"http": "http", "cloudevent": "event"}
PROJECT, PROJECT_NUMBER, REGION = "example-project", "123456789012", "us-central1"


@pytest.fixture(scope="module")
def tf() -> Tf:
    return Tf()


@pytest.fixture(scope="module")
def functions(tf: Tf) -> dict[str, dict]:
    return tf.locals["functions"]


def _filtered(tf: Tf, name: str) -> str:
    """The target a `{ for name, f in local.functions : name => f if var.target == "T" }` local keeps."""
    text = re.sub(r"\s+", " ", tf.locals[name])
    match = re.fullmatch(
        r'\$\{\{ ?for (\w+), (\w+) in local\.functions : \1 => \2 if var\.target == "(\w+)" ?\}\}', text
    )
    assert match, f"local.{name} is not a filter of local.functions by var.target: {tf.locals[name]}"
    return match.group(3)


def deployed(tf: Tf, functions: dict, for_each: str, target: str) -> set[str]:
    """The keys a deployment resource's for_each gives with var.target = target."""
    match = re.fullmatch(r"\$\{local\.(\w+)\}", for_each)
    assert match, f"for_each {for_each!r} is not a local"
    if match.group(1) == "functions":
        return set(functions)
    return set(functions) if _filtered(tf, match.group(1)) == target else set()


def test_the_target_variable(tf: Tf):
    assert tf.var_default("target") == "functions"
    validation = tf.blocks(tf.variables["target"], "validation")[0]
    assert set(re.findall(r'"(\w+)"', tf.attr(validation, "condition"))) == set(TARGETS)
    assert tf.var_default("image") == ""
    example = (INFRA / "terraform.tfvars.example").read_text()
    assert re.search(r"^#\s*target\s*=", example, re.M) and re.search(r"^#\s*image\s*=", example, re.M)


@pytest.mark.parametrize("target", TARGETS)
def test_every_registry_function_has_exactly_one_deployment(tf: Tf, functions, target):
    where: dict[str, list[str]] = {name: [] for name in REGISTRY}
    for rtype in DEPLOYMENT_TYPES:
        body = tf.resource(rtype, "function")
        for name in deployed(tf, functions, tf.attr(body, "for_each"), target):
            assert name in where, f"{rtype} deploys {name}, which is not in the registry"
            where[name].append(rtype)
    expected = {"functions": "google_cloudfunctions2_function", "run": "google_cloud_run_v2_service"}[target]
    assert where == {name: [expected] for name in REGISTRY}, where
    # and nothing else deploys code: no other function or service resource
    others = [t for t in tf.resources if re.match(r"google_(cloudfunctions2?_function|cloud_run(_v2)?_service)$", t)]
    assert sorted(others) == sorted(DEPLOYMENT_TYPES)
    assert all(set(tf.resources[t]) == {"function"} for t in DEPLOYMENT_TYPES)


def test_each_deployment_runs_its_entry_point(tf: Tf, functions):
    # the table's entry point is the registry's name (test_terraform checks main.py has it)
    assert all(entry["entry_point"] == name for name, entry in functions.items())
    # gen2: the source build's entry point
    fn = tf.resource("google_cloudfunctions2_function", "function")
    assert tf.attr(tf.blocks(fn, "build_config")[0], "entry_point") == "${each.value.entry_point}"
    assert tf.attr(fn, "name") == "${each.key}"
    # Cloud Run: the image's CMD starts functions-framework --target=$FUNCTION_TARGET
    service = tf.resource("google_cloud_run_v2_service", "function")
    assert tf.attr(service, "name") == "${each.key}"
    container = tf.blocks(tf.blocks(service, "template")[0], "containers")
    assert len(container) == 1
    container = container[0]
    assert tf.attr(container, "image") == "${var.image}"
    assert "command" not in container and "args" not in container, "the Dockerfile's CMD starts the function"
    env = {tf.attr(e, "name"): tf.attr(e, "value") for e in tf.blocks(container, "env")}
    assert env["FUNCTION_TARGET"] == "${each.value.entry_point}"
    signature = env["FUNCTION_SIGNATURE_TYPE"]
    assert signature == '${each.value.kind == "http" ? "http" : "cloudevent"}'
    for name, function in REGISTRY.items():
        kind = functions[name]["kind"]
        assert ("http" if kind == "http" else "cloudevent") == function.trigger, name
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (.+)$", dockerfile, re.M).group(1)
    assert "--target=${FUNCTION_TARGET}" in cmd and "--signature-type=${FUNCTION_SIGNATURE_TYPE" in cmd
    # the rest of the environment is the functions' own
    dynamic = tf.dynamic(container, "env")
    assert tf.attr(dynamic, "for_each") == "${merge(local.common_env, each.value.env)}"


def test_cloud_run_services_get_the_functions_identity_sizing_and_ingress(tf: Tf):
    service = tf.resource("google_cloud_run_v2_service", "function")
    fn = tf.resource("google_cloudfunctions2_function", "function")
    gen2 = tf.blocks(fn, "service_config")[0]
    template = tf.blocks(service, "template")[0]
    assert tf.attr(template, "service_account") == "${google_service_account.function[each.key].email}"
    assert tf.attr(gen2, "service_account_email") == "${google_service_account.function[each.key].email}"
    assert tf.attr(template, "max_instance_request_concurrency") == "${each.value.concurrency}"
    assert tf.attr(template, "timeout") == "${each.value.timeout}s"
    scaling = tf.blocks(template, "scaling")[0]
    assert tf.attr(scaling, "min_instance_count") == "${local.min_instances[each.key]}"
    assert tf.attr(scaling, "max_instance_count") == tf.attr(gen2, "max_instance_count")
    limits = tf.attr(tf.blocks(tf.blocks(template, "containers")[0], "resources")[0], "limits")
    assert limits == {"cpu": "${each.value.cpu}", "memory": "${each.value.memory}"}
    ingress = tf.attr(service, "ingress")
    assert ingress == '${each.value.kind == "http" ? "INGRESS_TRAFFIC_ALL" : "INGRESS_TRAFFIC_INTERNAL_ONLY"}'
    # the image is required for this target, with a message saying where it comes from
    [precondition] = tf.blocks(tf.blocks(service, "lifecycle")[0], "precondition")
    assert tf.attr(precondition, "condition") == '${var.image != ""}'


def _bucket_triggers(tf: Tf, functions, target: str) -> dict[str, list[str]]:
    """function -> buckets whose finalize events reach it, one entry per trigger, for `target`
    (every trigger_bucket of this project's buckets: source_bucket_trigger at its default)."""
    got: dict[str, list[str]] = {}
    extra = re.sub(r"\s+", " ", tf.locals["extra_bucket_triggers"])
    run = re.sub(r"\s+", " ", tf.locals["run_bucket_triggers"])
    assert 'if var.target == "functions"' in extra and "slice(buckets, min(1, length(buckets))" in extra
    assert 'if var.target == "run"' in run and "for b in buckets :" in run
    assert "buckets[0]" in tf.locals["primary_event_bucket"]
    for name, entry in functions.items():
        buckets = list(entry["trigger_buckets"])
        if not buckets:
            continue
        if target == "functions":
            # the gen2 function's own event_trigger (only gen2 functions have one), then the others
            got[name] = [buckets[0], *buckets[1:]]
        else:
            got[name] = buckets
    return got


@pytest.mark.parametrize("target", TARGETS)
def test_every_bucket_event_reaches_its_function_once(tf: Tf, functions, target):
    triggers = _bucket_triggers(tf, functions, target)
    for name, entry in functions.items():
        if entry["trigger_buckets"]:
            assert sorted(triggers[name]) == sorted(set(entry["trigger_buckets"])), (target, name)
    # the resources behind those evaluations
    fn = tf.resource("google_cloudfunctions2_function", "function")
    assert "local.primary_event_bucket" in tf.attr(tf.dynamic(fn, "event_trigger"), "for_each")
    assert tf.attr(tf.resource("google_eventarc_trigger", "extra_bucket"), "for_each") == (
        "${local.extra_bucket_triggers}"
    )
    run = tf.resource("google_eventarc_trigger", "run_bucket")
    assert tf.attr(run, "for_each") == "${local.run_bucket_triggers}"
    destination = tf.blocks(tf.blocks(run, "destination")[0], "cloud_run_service")[0]
    assert tf.attr(destination, "service") == "${each.value.function}"
    assert "google_cloud_run_v2_service.function" in str(tf.attr(run, "depends_on"))
    assert tf.attr(run, "service_account") == "${google_service_account.function[each.value.function].email}"
    criteria = {tf.attr(c, "attribute"): tf.attr(c, "value") for c in tf.blocks(run, "matching_criteria")}
    assert criteria == {
        "type": "google.cloud.storage.object.v1.finalized",
        "bucket": "${local.buckets[each.value.bucket]}",
    }


def test_invokers_pushes_and_outputs_name_whichever_target_runs_the_function(tf: Tf):
    services = re.sub(r"\s+", "", tf.locals["function_services"])
    urls = re.sub(r"\s+", "", tf.locals["function_urls"])
    for text, gen2, run in (
        (services, 'regex("[^/]+$",f.service_config[0].service)', "s.name"),
        (urls, "f.service_config[0].uri", "s.uri"),
    ):
        assert text.startswith("${merge(")
        assert f"forname,fingoogle_cloudfunctions2_function.function:name=>{gen2}" in text
        assert f"forname,singoogle_cloud_run_v2_service.function:name=>{run}" in text
    for name in ("gateway_invoker", "self_invoker", "push_invoker"):
        body = tf.resource("google_cloud_run_v2_service_iam_member", name)
        assert tf.attr(body, "name") == "${local.function_services[each.key]}", name
    for name in ("push", "dead_letter_push"):
        push = tf.blocks(tf.resource("google_pubsub_subscription", name), "push_config")[0]
        assert tf.attr(push, "push_endpoint").startswith("${local.function_urls[each.key]}/")
        assert tf.attr(tf.blocks(push, "oidc_token")[0], "audience") == "${local.function_urls[each.key]}"
    assert tf.attr(tf.outputs["function_urls"], "value") == "${local.function_urls}"
    # no resource outside functions.tf reaches into the gen2 functions directly
    for path in INFRA.glob("*.tf"):
        if path.name in ("functions.tf", "main.tf"):
            continue
        assert "google_cloudfunctions2_function." not in path.read_text(), path.name


def _gateway_regex(tf: Tf) -> tuple[str, str]:
    """The (pattern, replacement) gateway.tf readdresses backends with, as Python re."""
    text = tf.locals["openapi_document"]
    match = re.search(r'replace\(\s*local\.openapi_functions,\s*"/(.+?)/",\s*"(.+?)",?\s*\)', text, re.S)
    assert match, text
    pattern, replacement = (s.replace("\\\\", "\\") for s in match.groups())
    values = {
        "${var.region}": REGION,
        "${var.project_id}": PROJECT,
        "${data.google_project.this.number}": PROJECT_NUMBER,
    }
    for name, value in values.items():
        pattern, replacement = pattern.replace(name, value), replacement.replace(name, value)
    assert "${" not in pattern.replace("$${", "")
    return pattern, replacement.replace("$${1}", r"\g<1>")


@pytest.mark.parametrize("target", TARGETS)
def test_the_gateway_backends_point_at_the_target(tf: Tf, functions, target):
    text = re.sub(r"\s+", " ", tf.locals["openapi_document"])
    assert text.startswith('${var.target == "run" ? replace(') and text.endswith(": local.openapi_functions}")
    pattern, replacement = _gateway_regex(tf)
    http = {name for name, entry in functions.items() if entry["kind"] == "http"}
    audiences = tf.attr(tf.resource("google_cloud_run_v2_service", "function"), "custom_audiences")
    for operation, address in _openapi_backends().items():
        rendered = address.replace("${region}", REGION).replace("${project}", PROJECT)
        if target == "run":
            rendered = re.sub(pattern, replacement, rendered)
            match = re.fullmatch(rf"https://([a-z][-a-z0-9]*)-{PROJECT_NUMBER}\.{REGION}\.run\.app", rendered)
            assert match, f"{operation}: {rendered}"
            name = match.group(1)
            # the address is an audience the service accepts
            audience = audiences[0].replace("${each.key}", name).replace("${var.region}", REGION)
            assert audience.replace("${data.google_project.this.number}", PROJECT_NUMBER) == rendered
        else:
            match = re.fullmatch(rf"https://{REGION}-{PROJECT}\.cloudfunctions\.net/([a-z][-a-z0-9]*)", rendered)
            assert match, f"{operation}: {rendered}"
            name = match.group(1)
        assert name in http, f"{operation}: {name} is not an HTTP function"
        # a deterministic run.app host is one DNS label of at most 63 characters
        assert len(f"{name}-{PROJECT_NUMBER}") <= 63


def test_deploy_passes_the_target_and_the_image_to_both_applies():
    script = (ROOT / "scripts" / "deploy.sh").read_text()
    assert re.search(r"^TARGET=\$\{TARGET:-functions\}$", script, re.M)
    assert "IMAGE=${REGION}-docker.pkg.dev/${PROJECT_ID}/${PREFIX}/functions:${SHORT_SHA}" in script
    assert 'TF_EXTRA_ARGS="-var=target=${TARGET} -var=image=${IMAGE}' in script
    # the image cloudbuild.yaml pushes is the one passed
    yaml = require("yaml")
    build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    pushed = {a for s in build["steps"] if s.get("id") == "push" for a in s["args"] if "docker.pkg.dev" in a}
    assert pushed == {"${_REGION}-docker.pkg.dev/$PROJECT_ID/${_NAME_PREFIX}/functions:$SHORT_SHA"}
    assert "SHORT_SHA=$SHORT_SHA|" in script
    # Cloud Run needs the image before its services: the first apply on this
    # machine creates only the repository; Cloud Build pushes, then applies all
    assert "ONLY=(-target=google_artifact_registry_repository.aperture)" in script
    assert re.search(r'if \[ "\$TARGET" = run \]; then\s+ONLY=', script)
