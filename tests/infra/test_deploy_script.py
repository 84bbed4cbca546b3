"""scripts/deploy.sh, run for real against stand-ins of gcloud, terraform, git,
curl and sleep that record their arguments (issue 17 items 7-9; S12).

What `make deploy` does on an empty project, in order: ADC and its quota
project, the APIs, the state bucket, the deployer and its grants (the
conditional project-IAM one from a file), the first apply (tried again while
IAM propagates; only the repository for Cloud Run), Cloud Build with the same
variables, the gateway URL.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tools import require

ROOT = Path(__file__).resolve().parents[2]

STUB = """#!/usr/bin/env bash
# records "<tool> <args...>" (one JSON list per line) and plays its part
printf '%s\\n' "$("$STUB_PYTHON" -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$(basename "$0")" "$@")" >> "$STUB_LOG"
tool=$(basename "$0")
case "$tool $*" in
  "git rev-parse --short HEAD") echo abc1234 ;;
  "gcloud auth application-default print-access-token") [ -z "${NO_ADC:-}" ] || exit 1; echo token ;;
  "gcloud iam service-accounts describe"*) exit 1 ;;
  "gcloud storage buckets describe"*) exit 1 ;;
  "gcloud secrets describe"*) exit 1 ;;
  "openssl rand"*) echo c2VjcmV0 ;;
  "gcloud secrets versions add"*) cat > "$STUB_DIR/secret" ;;
  "gcloud projects add-iam-policy-binding"*)
    for arg in "$@"; do
      case "$prev" in --condition-from-file) cp "$arg" "$STUB_DIR/condition.yaml" ;; esac
      prev=$arg
    done ;;
  "terraform -chdir=infra apply"*)
    count=$(cat "$STUB_DIR/applies" 2>/dev/null || echo 0); echo $((count + 1)) > "$STUB_DIR/applies"
    [ "$count" -lt "${FAIL_APPLIES:-0}" ] && exit 1 ;;
  "terraform -chdir=infra output -raw gateway_url") echo https://aperture-gateway-x.uc.gateway.dev ;;
  "curl"*) echo OK ;;
esac
exit 0
"""


def run_deploy(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "terraform", "git", "curl", "sleep", "openssl"):
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    config = tmp_path / "gcloud"
    config.mkdir()
    (config / "application_default_credentials.json").write_text(json.dumps({"type": "authorized_user"}))
    log = tmp_path / "calls.jsonl"
    environment = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CLOUDSDK_CONFIG": str(config),
        "STUB_LOG": str(log),
        "STUB_DIR": str(tmp_path),
        "STUB_PYTHON": sys.executable,
        "PROJECT_ID": "my-project",
        **env,
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deploy.sh")], env=environment, capture_output=True, text=True, timeout=60
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc, calls


def commands(calls: list[list[str]], *prefix: str) -> list[list[str]]:
    return [c for c in calls if c[: len(prefix)] == list(prefix)]


def test_a_first_deploy_in_order(tmp_path):
    proc, calls = run_deploy(tmp_path)
    assert proc.returncode == 0, proc.stderr
    steps = [
        ("gcloud", "auth", "application-default", "print-access-token"),
        ("gcloud", "auth", "application-default", "set-quota-project", "my-project"),
        ("gcloud", "services", "enable"),
        ("gcloud", "storage", "buckets", "create", "gs://my-project-tfstate"),
        ("gcloud", "iam", "service-accounts", "create", "aperture-deployer"),
        ("gcloud", "projects", "add-iam-policy-binding", "my-project"),
        ("gcloud", "secrets", "create", "aperture-link-signing"),
        ("gcloud", "secrets", "versions", "add", "aperture-link-signing"),
        ("terraform", "-chdir=infra", "init"),
        ("terraform", "-chdir=infra", "apply"),
        ("gcloud", "builds", "submit"),
        ("terraform", "-chdir=infra", "output", "-raw", "gateway_url"),
        ("curl",),
    ]
    positions = []
    for step in steps:
        found = [i for i, call in enumerate(calls) if tuple(call[: len(step)]) == step]
        assert found, f"{' '.join(step)} was not run"
        positions.append(found[0])
    assert positions == sorted(positions), "steps out of order"
    # the APIs whose service agents the first apply relies on are enabled first
    [enable] = commands(calls, "gcloud", "services", "enable")
    for api in ("pubsub", "eventarc", "run", "cloudfunctions", "apigateway", "servicemanagement"):
        assert f"{api}.googleapis.com" in enable, api
    # each deployer role granted once, unconditionally, except project IAM (conditional, from a file)
    grants = commands(calls, "gcloud", "projects", "add-iam-policy-binding")
    plain = [c[c.index("--role") + 1] for c in grants if "--condition" in c and c[c.index("--condition") + 1] == "None"]
    assert "roles/resourcemanager.projectIamAdmin" not in plain and len(plain) == len(set(plain)) == 16
    [conditional] = [c for c in grants if "--condition-from-file" in c]
    assert conditional[conditional.index("--role") + 1] == "roles/resourcemanager.projectIamAdmin"
    condition = require("yaml").safe_load((tmp_path / "condition.yaml").read_text())
    assert "'projects/my-project/roles/aperture_key_issuer'" in condition["expression"]
    removed = commands(calls, "gcloud", "projects", "remove-iam-policy-binding")
    assert {c[c.index("--role") + 1] for c in removed} >= {"roles/cloudbuild.builds.builder"}
    assert "roles/secretmanager.admin" in plain  # it sets who may read the link-signing secret
    assert "secretmanager.googleapis.com" in enable
    assert (tmp_path / "secret").read_text() == "c2VjcmV0\n"  # the value went by stdin, never argv


def _apply_args(call: list[str]) -> list[str]:
    return call[call.index("apply") + 1 :]


@pytest.mark.parametrize("target", ["functions", "run"])
def test_both_applies_get_the_target_and_the_image(tmp_path, target):
    proc, calls = run_deploy(tmp_path, TARGET=target, TF_EXTRA_ARGS="-var source_bucket=seetree-demo-open")
    assert proc.returncode == 0, proc.stderr
    [apply] = commands(calls, "terraform", "-chdir=infra", "apply")
    args = _apply_args(apply)
    image = "us-central1-docker.pkg.dev/my-project/aperture/functions:abc1234"
    assert f"-var=target={target}" in args and f"-var=image={image}" in args
    assert args[args.index("-var=image=" + image) + 1 : args.index("-var=image=" + image) + 3] == [
        "-var",
        "source_bucket=seetree-demo-open",
    ]
    # Cloud Run needs the image first: this machine applies only the repository
    targeted = [a for a in args if a.startswith("-target=")]
    assert targeted == (["-target=google_artifact_registry_repository.aperture"] if target == "run" else [])
    [submit] = commands(calls, "gcloud", "builds", "submit")
    substitutions = submit[submit.index("--substitutions") + 1]
    assert substitutions.startswith("^|^")
    passed = dict(pair.split("=", 1) for pair in substitutions[3:].split("|"))
    assert passed["SHORT_SHA"] == "abc1234"
    assert shlex.split(passed["_TF_EXTRA_ARGS"]) == [
        f"-var=target={target}",
        f"-var=image={image}",
        "-var",
        "source_bucket=seetree-demo-open",
    ]


def test_the_first_apply_is_tried_again_while_iam_propagates(tmp_path):
    proc, calls = run_deploy(tmp_path, FAIL_APPLIES="2")
    assert proc.returncode == 0, proc.stderr
    assert len(commands(calls, "terraform", "-chdir=infra", "apply")) == 3
    assert commands(calls, "sleep") == [["sleep", "60"], ["sleep", "60"]]


def test_three_failed_applies_stop_before_cloud_build(tmp_path):
    proc, calls = run_deploy(tmp_path, FAIL_APPLIES="3")
    assert proc.returncode == 1 and "failed three times" in proc.stderr
    assert len(commands(calls, "terraform", "-chdir=infra", "apply")) == 3
    assert not commands(calls, "gcloud", "builds", "submit")


@pytest.mark.parametrize(
    "env, message", [({"TARGET": "gke"}, "TARGET must be"), ({"NO_ADC": "1"}, "application-default login")]
)
def test_a_bad_target_or_missing_credentials_stop_before_anything_changes(tmp_path, env, message):
    proc, calls = run_deploy(tmp_path, **env)
    assert proc.returncode == 2 and message in proc.stderr
    changes = [c for c in calls if c[0] == "terraform" or c[:2] in (["gcloud", "services"], ["gcloud", "projects"])]
    assert not changes
