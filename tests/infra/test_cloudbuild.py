"""Offline checks of cloudbuild.yaml (S12): test, build, push, deploy, in order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.tools import require
from tests.support.uploads import (
    BUILD_OUTPUTS,
    SOURCES,
    TERRAFORM_VARIABLE_FILES,
    gcloudignore_excluded,
    git_ignored_paths,
)

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


def _test_step(build: dict) -> dict:
    return next(s for s in build["steps"] if re.search(r"\bmake test\b", _script(s)))


def test_the_test_step_has_the_emulators(build):
    step = _test_step(build)
    assert step["name"].startswith("gcr.io/google.com/cloudsdktool/google-cloud-cli:")
    tag = step["name"].split(":", 1)[1]
    tag = re.sub(r"\$\{(_\w+)\}", lambda m: build["substitutions"][m.group(1)], tag)
    assert "emulators" in tag, "the test image needs Java and the gcloud emulators"
    assert "python3" in _script(step)


def _python_version_of_the_functions() -> str:
    """X.Y of the deployed runtime: Cloud Functions' pythonXY and the Dockerfile's base."""
    functions_tf = (ROOT / "infra" / "functions.tf").read_text()
    runtime = re.search(r'runtime\s*=\s*"python(\d)(\d+)"', functions_tf)
    assert runtime, "no pythonXY runtime in infra/functions.tf"
    version = f"{runtime.group(1)}.{runtime.group(2)}"
    base = re.search(r"^FROM python:(\d+\.\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert base and base.group(1) == version, f"Dockerfile base {base and base.group(1)} vs runtime {version}"
    return version


def test_the_test_image_is_pinned_and_tests_under_the_functions_python(build):
    """The floating `emulators` tag moved to a Python 3.13 base while the
    functions run 3.11: the image is pinned (a release tag or a digest), and the
    step installs and checks the functions' Python by name and runs make with it."""
    step = _test_step(build)
    image = re.sub(r"\$\{(_\w+)\}", lambda m: build["substitutions"][m.group(1)], step["name"])
    reference = image.split(":", 1)[1]
    assert re.fullmatch(r"\d+\.\d+\.\d+-emulators(@sha256:[0-9a-f]{64})?|emulators@sha256:[0-9a-f]{64}", reference), (
        f"{image}: pin the test image to a gcloud release (N.N.N-emulators) or a digest"
    )
    version = _python_version_of_the_functions()
    script = _script(step)
    python = f"python{version}"
    apt = re.search(r"apt-get install[^\n]*?((?:\s+[\w.+-]+)+)", script.replace("\\\n", " "))
    assert apt and python in apt.group(1).split(), f"the test step must install {python} by name"
    assert f"{python}-venv" in script.split(), "make creates .venv with the venv module"
    assert re.search(rf"{re.escape(python)} -c .*version_info\[:2\] == \({version.replace('.', ', ')}\)", script)
    assert re.search(rf"\bmake test PYTHON={re.escape(python)}\b", script), "make would pick the image's python3"


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


def _apply_vars(text: str) -> set[str]:
    """Names of the -var flags of the `terraform ... apply` command in text."""
    command = re.search(r"terraform\b[^\n]*\bapply\b(?:[^\n]*\\\n)*[^\n]*", text)
    assert command, "no terraform apply"
    return set(re.findall(r"-var[= ]\"?(\w+)=", command.group(0)))


def test_the_cloud_build_apply_gets_the_variables_of_the_first_apply(build):
    """scripts/deploy.sh applies once from the operator's machine, then Cloud
    Build applies again: whatever the first apply was given (its -var flags,
    TF_EXTRA_ARGS, the variable files Terraform loads from infra/) the second
    must get too, or it undoes the first (a foreign source bucket would be
    swapped for a new one, its trigger re-created...)."""
    deploy = (ROOT / "scripts" / "deploy.sh").read_text()
    step = next(s for s in build["steps"] if "terraform apply" in _script(s))
    script = _script(step)
    # the same -var flags
    assert _apply_vars(deploy) == _apply_vars(script)
    # TF_EXTRA_ARGS: into the first apply, and as _TF_EXTRA_ARGS into the build's
    assert re.search(r"terraform -chdir=infra apply(?:[^\n]*\\\n)*[^\n]*\$\{TF_EXTRA_ARGS:-\}", deploy)
    assert "${_TF_EXTRA_ARGS}" in script
    submit = re.search(r"gcloud builds submit(?:[^\n]*\\\n)*[^\n]*", deploy).group(0)
    substitutions = re.search(r'--substitutions "([^"]*)"', submit).group(1)
    delimiter = ","
    if substitutions.startswith("^"):  # gcloud's alternative delimiter: ^D^K=V D K=V
        delimiter, substitutions = substitutions[1:].split("^", 1)
    passed = dict(pair.split("=", 1) for pair in substitutions.split(delimiter))
    assert passed.get("_TF_EXTRA_ARGS") == "${TF_EXTRA_ARGS:-}", passed
    assert delimiter != ",", "-var values may contain commas: pass the substitutions with another delimiter"
    assert set(passed) - {"SHORT_SHA"} <= set(build["substitutions"]), "substitutions the build does not declare"
    # the variable files Terraform reads by itself are uploaded with the source
    uploaded = {path: not excluded for path, excluded in gcloudignore_excluded(TERRAFORM_VARIABLE_FILES).items()}
    assert all(uploaded.values()), f".gcloudignore keeps these from the Cloud Build apply: {uploaded}"
    assert step.get("dir") == "infra", "Terraform loads terraform.tfvars from its working directory"


def test_uploads_carry_no_local_build_output():
    """`gcloud builds submit` uploads the tree minus .gcloudignore: the tool
    venv, caches and build output stay home, sources go."""
    excluded = gcloudignore_excluded(BUILD_OUTPUTS + SOURCES)
    leaking = [path for path in BUILD_OUTPUTS if not excluded[path]]
    assert not leaking, f".gcloudignore uploads local build output: {leaking}"
    dropped = [path for path in SOURCES if excluded[path]]
    assert not dropped, f".gcloudignore drops sources Cloud Build needs: {dropped}"


def test_uploads_carry_nothing_git_ignores_here():
    """And whatever git ignores in this working tree (what `make` and the tools
    actually left here) is not uploaded either, except the Terraform variable
    files, which are uploaded on purpose."""
    ignored = [path for path in git_ignored_paths() if not path.startswith("infra/terraform.tfvars")]
    # `make test` has made .venv (and the tools' venv) here before pytest runs: never empty.
    assert ignored, "git ignores nothing here: not a git working tree, or run without `make`"
    probes = [path + "probe" if path.endswith("/") else path for path in ignored]
    excluded = gcloudignore_excluded(probes)
    leaking = [path for path, probe in zip(ignored, probes, strict=True) if not excluded[probe]]
    assert not leaking, f"git ignores these, but gcloud builds submit would upload them: {leaking}"


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
