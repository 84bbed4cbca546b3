"""Least privilege of the deployment itself (issue 17 item 7; S12).

The deployer account (scripts/deploy.sh) holds only roles an apply of infra/
needs, each tied here to the resource types that need it; its project-IAM
role is conditional on the roles infra/ actually grants; the usage-logs grant
to a Google group (refused under Domain Restricted Sharing) is optional.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.infra.test_terraform import Tf
from tests.support.tools import require

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "scripts" / "deploy.sh"
DOC = ROOT / "docs" / "deployment.md"

# role -> resource types of infra/ whose apply needs it (any one suffices).
NEEDED_BY = {
    "roles/apigateway.admin": {"google_api_gateway_api", "google_api_gateway_api_config", "google_api_gateway_gateway"},
    "roles/artifactregistry.admin": {
        "google_artifact_registry_repository",
        "google_artifact_registry_repository_iam_member",
    },
    "roles/cloudfunctions.developer": {"google_cloudfunctions2_function"},
    # the repair sweep's schedule (no narrower role creates jobs)
    "roles/cloudscheduler.admin": {"google_cloud_scheduler_job"},
    "roles/datastore.owner": {"google_firestore_database", "google_firestore_index", "google_firestore_field"},
    "roles/eventarc.developer": {"google_eventarc_trigger"},
    "roles/iam.roleAdmin": {"google_project_iam_custom_role"},
    "roles/iam.serviceAccountAdmin": {"google_service_account", "google_service_account_iam_member"},
    # actAs: resources that run as, or mint tokens of, one of the accounts
    "roles/iam.serviceAccountUser": {
        "google_cloudfunctions2_function",
        "google_cloud_run_v2_service",
        "google_eventarc_trigger",
        "google_pubsub_subscription",
        "google_api_gateway_api_config",
    },
    "roles/pubsub.admin": {"google_pubsub_topic_iam_member", "google_pubsub_subscription_iam_member"},
    "roles/run.admin": {"google_cloud_run_v2_service_iam_member", "google_cloud_run_v2_service"},
    "roles/servicemanagement.admin": {"google_api_gateway_api"},
    # IAM on the link-signing secret (setIamPolicy is in no narrower predefined role)
    "roles/secretmanager.admin": {"google_secret_manager_secret_iam_member"},
    "roles/serviceusage.serviceUsageAdmin": {"google_project_service", "google_project_service_identity"},
    "roles/storage.admin": {"google_storage_bucket", "google_storage_bucket_iam_member"},
}
# Needed by Cloud Build itself (its logs, written as the deployer), not by a resource.
BUILD_ROLES = {"roles/logging.logWriter"}
# Held before, and never needed: a build as a user-specified account only writes
# logs; no IAM is set on functions or triggers.
DROPPED = {
    "roles/cloudbuild.builds.builder",
    "roles/cloudfunctions.admin",
    "roles/eventarc.admin",
}


@pytest.fixture(scope="module")
def tf() -> Tf:
    return Tf()


def deployer_roles() -> list[str]:
    block = re.search(r"^DEPLOYER_ROLES=\(\n(.*?)^\)", DEPLOY.read_text(), re.M | re.S)
    assert block, "scripts/deploy.sh: no DEPLOYER_ROLES=( ... )"
    return block.group(1).split()


def test_every_deployer_role_is_needed_by_what_infra_declares(tf: Tf):
    roles = deployer_roles()
    assert len(roles) == len(set(roles))
    declared = set(tf.resources)
    for role in roles:
        if role in BUILD_ROLES:
            yaml = require("yaml")
            build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
            assert build["options"]["logging"] == "CLOUD_LOGGING_ONLY", "the build's logs go to Cloud Logging"
            continue
        assert role in NEEDED_BY, f"{role}: no resource of infra/ needs it (or say which in NEEDED_BY)"
        assert NEEDED_BY[role] & declared, f"{role}: none of {sorted(NEEDED_BY[role])} is declared any more"
    # and every role an apply needs is held (the apply would stop half-way otherwise)
    missing = {role for role, types in NEEDED_BY.items() if types & declared} - set(roles)
    assert not missing, f"the deployer lacks {missing}"


def test_no_role_beyond_need(tf: Tf):
    roles = set(deployer_roles())
    assert not roles & DROPPED, roles & DROPPED
    assert not {r for r in roles if r in ("roles/owner", "roles/editor", "roles/viewer")}
    # project IAM is never granted unconditionally
    assert "roles/resourcemanager.projectIamAdmin" not in roles
    if not any(t.startswith("google_secret_manager") for t in tf.resources):
        assert not {r for r in roles if r.startswith("roles/secretmanager.")}, "nothing uses Secret Manager"
    # admin roles only where the developer role cannot do it (setting IAM on the resource)
    if not any(t.startswith("google_cloudfunctions2_function_iam") for t in tf.resources):
        assert "roles/cloudfunctions.admin" not in roles
    # the grants earlier versions made are taken away again
    removal = re.search(r"for role in ([^;]*?); do\n\s+gcloud projects remove-iam-policy-binding", DEPLOY.read_text())
    assert removal, "no removal of dropped grants"
    removed = set(removal.group(1).replace("\\\n", " ").split())
    assert removed == DROPPED | {"roles/resourcemanager.projectIamAdmin"}
    assert '--role "$role" --condition None' in DEPLOY.read_text().split("remove-iam-policy-binding", 1)[1][:200]


def terraform_project_roles(tf: Tf, project: str, prefix: str) -> set[str]:
    """Every role infra/ grants project-wide (google_project_iam_member), rendered."""
    key_issuer = f"projects/{project}/roles/{prefix.replace('-', '_')}_key_issuer"
    roles: set[str] = set()
    for entry in tf.locals["functions"].values():
        roles |= {key_issuer if r == "${local.key_issuer_role}" else r for r in entry["project_roles"]}
    for name, body in tf.resources["google_project_iam_member"].items():
        if name == "function":
            assert tf.attr(body, "for_each") == "${local.function_project_roles}"
            continue
        role = tf.attr(body, "role")
        if role == "${each.value}":
            roles |= set(re.findall(r'"(roles/[\w.]+)"', str(tf.attr(body, "for_each"))))
        else:
            roles.add(role)
    assert all(r.startswith(("roles/", "projects/")) for r in roles), roles
    return roles


def condition_yaml(project: str, prefix: str) -> dict:
    """The IAM condition deploy.sh writes, produced by its own bash lines."""
    text = DEPLOY.read_text()
    start = text.index("PROJECT_GRANTS=(")
    end = text.index('} >"$CONDITION_FILE"')
    snippet = text[start:end] + "}\n"
    out = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\nPROJECT_ID={project}\nPREFIX={prefix}\n{snippet}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return require("yaml").safe_load(out)


@pytest.mark.parametrize("project, prefix", [("my-project", "aperture"), ("p-1", "my-app")])
def test_project_iam_is_limited_to_the_roles_infra_grants(tf: Tf, project, prefix):
    condition = condition_yaml(project, prefix)
    assert set(condition) == {"title", "description", "expression"}
    match = re.fullmatch(
        r"api\.getAttribute\('iam\.googleapis\.com/modifiedGrantsByRole', \[\]\)\.hasOnly\(\[(.*)\]\)",
        condition["expression"],
    )
    assert match, condition["expression"]
    allowed = set(re.findall(r"'([^']+)'", match.group(1)))
    assert allowed == terraform_project_roles(tf, project, prefix)
    text = DEPLOY.read_text()
    assert re.search(
        r"--role roles/resourcemanager\.projectIamAdmin --condition-from-file \"\$CONDITION_FILE\"", text
    ), "projectIamAdmin is granted with the condition"


def test_the_docs_explain_every_deployer_role():
    section = DOC.read_text().split("### Least privilege", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(roles/[\w.]+)`", section, re.M))
    assert documented | {"roles/resourcemanager.projectIamAdmin"} == set(deployer_roles()) | {
        "roles/resourcemanager.projectIamAdmin"
    }
    assert "`roles/resourcemanager.projectIamAdmin`, **conditional**" in section
    for role in DROPPED:
        assert role.split("/")[1] in section, f"say why {role} was dropped"
    assert "Remaining risk" in section


def test_the_usage_logs_grant_is_optional(tf: Tf):
    assert tf.var_default("usage_logs") is True
    grant = tf.resource("google_storage_bucket_iam_member", "access_logs_writer")
    assert tf.attr(grant, "member") == "group:cloud-storage-analytics@google.com"
    assert tf.attr(grant, "count") == "${var.usage_logs ? 1 : 0}"
    # without the grant, no bucket names the log bucket (logs would be lost silently)
    for name, body in tf.resources["google_storage_bucket"].items():
        assert "logging" not in body, f"{name}: logging must follow var.usage_logs"
        logging = tf.dynamic(body, "logging")
        if name == "access_logs":
            assert logging is None
            continue
        assert logging is not None, f"{name}: no usage logs"
        assert tf.attr(logging, "for_each") == "${var.usage_logs ? [1] : []}"
    # no other Google-domain or external member is granted anything
    for rtype, named in tf.resources.items():
        if rtype.endswith("_iam_member"):
            for rname, body in named.items():
                member = str(tf.attr(body, "member"))
                if member.startswith(("group:", "user:", "domain:")):
                    assert (rtype, rname) == ("google_storage_bucket_iam_member", "access_logs_writer"), member
