"""Offline checks of cloudbuild.yaml (S12): test, build, push, deploy, in order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.tools import require

ROOT = Path(__file__).resolve().parents[2]
CLOUDBUILD = ROOT / "cloudbuild.yaml"

# Substitutions Cloud Build provides itself (or `gcloud builds submit
# --substitutions` may set by hand).
BUILTIN = {
    "PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION", "TRIGGER_NAME", "COMMIT_SHA",
    "REVISION_ID", "SHORT_SHA", "REPO_NAME", "REPO_FULL_NAME", "BRANCH_NAME", "TAG_NAME",
    "REF_NAME", "TRIGGER_BUILD_CONFIG_PATH", "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT",
}  # fmt: skip


@pytest.fixture(scope="module")
def build() -> dict:
    yaml = require("yaml")
    doc = yaml.safe_load(CLOUDBUILD.read_text())
    assert isinstance(doc, dict) and doc.get("steps"), "cloudbuild.yaml has no steps"
    return doc


def _script(step: dict) -> str:
    return " ".join(str(a) for a in ([step.get("entrypoint", "")] + list(step.get("args", []))))


def _index(steps: list[dict], predicate, what: str) -> int:
    found = [i for i, step in enumerate(steps) if predicate(step)]
    assert found, f"no {what} step"
    return found[0]


def test_steps_test_build_push_deploy_in_order(build):
    steps = build["steps"]
    test = _index(steps, lambda s: re.search(r"\bmake test\b", _script(s)), "test")
    docker_build = _index(
        steps, lambda s: "docker" in s["name"] and s.get("args", [None])[0] == "build", "docker build"
    )
    push = _index(steps, lambda s: "docker" in s["name"] and s.get("args", [None])[0] == "push", "docker push")
    deploy = _index(steps, lambda s: "terraform apply" in _script(s), "terraform apply")
    assert test < docker_build < push < deploy
    # waitFor must not let a later step start before the earlier one finished
    ids = [s.get("id") for s in steps]
    for later, earlier in ((docker_build, test), (push, docker_build), (deploy, push)):
        wait = steps[later].get("waitFor")
        if wait is not None:
            assert ids[earlier] in wait, f"step {ids[later]} does not wait for {ids[earlier]}"


def test_the_test_step_has_the_emulators(build):
    step = next(s for s in build["steps"] if re.search(r"\bmake test\b", _script(s)))
    assert step["name"].startswith("gcr.io/google.com/cloudsdktool/google-cloud-cli:")
    tag = step["name"].split(":", 1)[1]
    tag = re.sub(r"\$\{(_\w+)\}", lambda m: build["substitutions"][m.group(1)], tag)
    assert "emulators" in tag, "the test image needs Java and the gcloud emulators"
    assert "python3" in _script(step)


def test_image_goes_to_artifact_registry_tagged_by_commit(build):
    steps = build["steps"]
    docker_build = next(s for s in steps if "docker" in s["name"] and s["args"][0] == "build")
    tags = [a.split("=", 1)[1] for a in docker_build["args"] if a.startswith("--tag=")]
    tags += [docker_build["args"][i + 1] for i, a in enumerate(docker_build["args"]) if a in ("-t", "--tag")]
    assert tags, "docker build has no tag"
    pattern = r"\$\{_REGION\}-docker\.pkg\.dev/\$PROJECT_ID/(aperture|\$\{_NAME_PREFIX\})/functions:\$SHORT_SHA"
    for tag in tags:
        assert re.fullmatch(pattern, tag), tag
    assert "Dockerfile" in " ".join(docker_build["args"])
    push = next(s for s in steps if "docker" in s["name"] and s["args"][0] == "push")
    assert push["args"][1] in tags
    assert set(build.get("images", [])) <= set(tags)
    assert build["substitutions"].get("_NAME_PREFIX", "aperture") == "aperture"


def test_deploy_runs_terraform_in_infra(build):
    step = next(s for s in build["steps"] if "terraform apply" in _script(s))
    assert step["name"].startswith("hashicorp/terraform:")
    assert step.get("dir") == "infra"
    script = _script(step)
    assert script.index("terraform init") < script.index("terraform apply")
    assert "-auto-approve" in script
    assert "backend-config" in script, "state must go to the GCS backend"
    assert "project_id=$PROJECT_ID" in script


def test_options_and_substitutions(build):
    assert build["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    defined = set(build.get("substitutions", {}))
    assert all(name.startswith("_") for name in defined)
    text = CLOUDBUILD.read_text()
    code = "\n".join(line.split("#", 1)[0] if line.lstrip().startswith("#") else line for line in text.splitlines())
    # Every $NAME / ${NAME} is a substitution Cloud Build can resolve; a shell
    # variable would have to be written $$NAME (Cloud Build rejects unknown ones).
    used = set()
    for match in re.finditer(r"(?<!\$)\$(?:\{(\w+)\}|(\w+))", code):
        used.add(match.group(1) or match.group(2))
    unknown = used - defined - BUILTIN
    assert not unknown, f"undefined substitutions: {unknown}"
    unused = {name for name in defined if f"${{{name}}}" not in code and f"${name}" not in code}
    assert not unused, f"unused substitutions: {unused}"
    for name, value in build["substitutions"].items():
        assert value is not None, f"{name} needs a default"


def test_make_deploy_runs_the_documented_script():
    import subprocess

    script = ROOT / "scripts" / "deploy.sh"
    makefile = (ROOT / "Makefile").read_text()

    assert "deploy:\n\tbash scripts/deploy.sh" in makefile
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    for step in (
        "terraform -chdir=infra init",
        "terraform -chdir=infra apply",
        "gcloud builds submit",
        "output -raw gateway_url",
    ):
        assert step in text, step
