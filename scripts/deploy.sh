#!/usr/bin/env bash
# `make deploy`: from an empty project to a working URL (docs/deployment.md, section 3).
# Needs gcloud (authenticated as a project owner) and terraform on PATH.
#   make deploy PROJECT_ID=my-project [REGION=us-central1] [PREFIX=aperture] [TARGET=functions|run]
for tool in gcloud terraform git curl openssl; do
  command -v "$tool" >/dev/null || { echo "make deploy needs $tool on PATH" >&2; exit 2; }
done
cd "$(dirname "$0")/.."
set -euo pipefail
PROJECT_ID=${PROJECT_ID:?set PROJECT_ID}
REGION=${REGION:-us-central1}
PREFIX=${PREFIX:-aperture}
TARGET=${TARGET:-functions}
case "$TARGET" in
  functions | run) ;;
  *) echo "TARGET must be functions (Cloud Functions) or run (Cloud Run)" >&2; exit 2 ;;
esac
STATE_BUCKET=${PROJECT_ID}-tfstate
DEPLOYER=${PREFIX}-deployer@${PROJECT_ID}.iam.gserviceaccount.com
SHORT_SHA=$(git rev-parse --short HEAD)
# The image Cloud Build builds and pushes for this commit (cloudbuild.yaml);
# the Cloud Run target runs it, the functions target ignores it.
IMAGE=${REGION}-docker.pkg.dev/${PROJECT_ID}/${PREFIX}/functions:${SHORT_SHA}
# Both applies, this machine's (step 4) and Cloud Build's (step 5), get the
# target and the image through TF_EXTRA_ARGS, so neither undoes the other.
TF_EXTRA_ARGS="-var=target=${TARGET} -var=image=${IMAGE}${TF_EXTRA_ARGS:+ $TF_EXTRA_ARGS}"
case "$TF_EXTRA_ARGS" in
  *"|"*) echo "TF_EXTRA_ARGS must not contain '|'" >&2; exit 2 ;;
esac

# 0. Application Default Credentials with this project as their quota project:
#    Terraform's first apply runs as you, and Google APIs called with user
#    credentials (API Keys, Vision, Vertex AI: `aperture bootstrap` afterwards)
#    refuse requests without a quota project.
if ! gcloud auth application-default print-access-token >/dev/null 2>&1; then
  echo "no Application Default Credentials: run \`gcloud auth application-default login\` first" >&2
  exit 2
fi
ADC_FILE=${CLOUDSDK_CONFIG:-$HOME/.config/gcloud}/application_default_credentials.json
if [ -f "$ADC_FILE" ] && ! grep -q "\"quota_project_id\": *\"$PROJECT_ID\"" "$ADC_FILE"; then
  echo "setting the quota project of your Application Default Credentials to $PROJECT_ID"
  gcloud auth application-default set-quota-project "$PROJECT_ID"
fi

# 1. APIs Terraform itself needs before it can enable the rest, and those whose
#    Google-managed service agents the first apply grants to or relies on
#    (Pub/Sub, Eventarc, Cloud Run, Cloud Functions, API Gateway...): enabled
#    now, their agents are created and their roles propagate while steps 2-3
#    run (infra/apis.tf enables the same ones again, a no-op).
gcloud services enable --project "$PROJECT_ID" \
  serviceusage.googleapis.com cloudresourcemanager.googleapis.com iam.googleapis.com \
  storage.googleapis.com cloudbuild.googleapis.com artifactregistry.googleapis.com \
  pubsub.googleapis.com eventarc.googleapis.com run.googleapis.com cloudfunctions.googleapis.com \
  apigateway.googleapis.com servicemanagement.googleapis.com servicecontrol.googleapis.com \
  iamcredentials.googleapis.com firestore.googleapis.com secretmanager.googleapis.com

# 2. Remote state: a private, versioned bucket (Terraform cannot create its own backend).
gcloud storage buckets describe "gs://$STATE_BUCKET" --project "$PROJECT_ID" >/dev/null 2>&1 ||
  gcloud storage buckets create "gs://$STATE_BUCKET" --project "$PROJECT_ID" --location "$REGION" \
    --uniform-bucket-level-access --public-access-prevention
gcloud storage buckets update "gs://$STATE_BUCKET" --versioning

# 3. The deployer identity Cloud Build runs Terraform as (once), with what an
#    apply needs and no more (docs/deployment.md, "Least privilege", says why
#    each role):
gcloud iam service-accounts describe "$DEPLOYER" --project "$PROJECT_ID" >/dev/null 2>&1 ||
  gcloud iam service-accounts create "${PREFIX}-deployer" --project "$PROJECT_ID" \
    --display-name "Aperture deployer (Cloud Build + Terraform)"
DEPLOYER_ROLES=(
  roles/apigateway.admin
  roles/artifactregistry.admin
  roles/cloudfunctions.developer
  roles/cloudscheduler.admin
  roles/datastore.owner
  roles/eventarc.developer
  roles/iam.roleAdmin
  roles/iam.serviceAccountAdmin
  roles/iam.serviceAccountUser
  roles/logging.logWriter
  roles/pubsub.admin
  roles/run.admin
  roles/secretmanager.admin
  roles/servicemanagement.admin
  roles/serviceusage.serviceUsageAdmin
  roles/storage.admin
)
for role in "${DEPLOYER_ROLES[@]}"; do
  gcloud projects add-iam-policy-binding "$PROJECT_ID" --member "serviceAccount:$DEPLOYER" \
    --role "$role" --condition None --quiet >/dev/null
done
#    Project IAM: only the project-level roles infra/ grants (the functions'
#    project_roles, the build account's, Cloud Storage's agent's), by an IAM
#    condition on the roles a policy change touches.
PROJECT_GRANTS=(
  roles/aiplatform.user
  roles/datastore.user
  roles/eventarc.eventReceiver
  roles/logging.logWriter
  roles/pubsub.publisher
  roles/storage.objectViewer
  "projects/${PROJECT_ID}/roles/${PREFIX//-/_}_key_issuer"
)
CONDITION_FILE=$(mktemp)
trap 'rm -f "$CONDITION_FILE"' EXIT
{
  echo "title: aperture-terraform-grants"
  echo "description: Only the project roles Aperture's Terraform grants"
  printf "expression: \"api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly(["
  printf "'%s', " "${PROJECT_GRANTS[@]}" | sed 's/, $//'
  echo "])\""
} >"$CONDITION_FILE"
gcloud projects add-iam-policy-binding "$PROJECT_ID" --member "serviceAccount:$DEPLOYER" \
  --role roles/resourcemanager.projectIamAdmin --condition-from-file "$CONDITION_FILE" --quiet >/dev/null
#    Grants earlier versions of this script made and this one does not (an
#    unconditional projectIamAdmin would void the condition above).
for role in roles/cloudbuild.builds.builder roles/cloudfunctions.admin roles/eventarc.admin \
  roles/resourcemanager.projectIamAdmin; do
  gcloud projects remove-iam-policy-binding "$PROJECT_ID" --member "serviceAccount:$DEPLOYER" \
    --role "$role" --condition None --quiet >/dev/null 2>&1 || true
done

# 3b. The secret that signs image links (infra/secrets.tf): made here, once,
#    with 48 random bytes, so its value never passes through Terraform's state.
#    Terraform grants the functions that use it read access to it alone.
LINK_SECRET="${PREFIX}-link-signing"
gcloud secrets describe "$LINK_SECRET" --project "$PROJECT_ID" >/dev/null 2>&1 ||
  gcloud secrets create "$LINK_SECRET" --project "$PROJECT_ID" --replication-policy automatic
if [ -z "$(gcloud secrets versions list "$LINK_SECRET" --project "$PROJECT_ID" --filter state=enabled --limit 1 --format 'value(name)')" ]; then
  openssl rand -base64 48 | gcloud secrets versions add "$LINK_SECRET" --project "$PROJECT_ID" --data-file=- >/dev/null
fi

# 4. First apply from the operator's machine: creates the Artifact Registry
#    repository the build pushes to, the buckets, Firestore, the functions and
#    the gateway. (Later deploys go through Cloud Build only.) With TARGET=run
#    the services need the image Cloud Build has not built yet: only the
#    repository (and the APIs it needs) is applied here, the rest in step 5.
#    A first apply on a new project can meet grants and service agents that
#    exist but have not propagated yet ("service account does not exist",
#    Eventarc's "permission denied" on the storage agent): it is tried again
#    after a minute, up to three times (an apply is idempotent).
terraform -chdir=infra init -input=false -reconfigure \
  -backend-config="bucket=$STATE_BUCKET" -backend-config="prefix=$PREFIX"
first_apply() {
  # shellcheck disable=SC2086 # TF_EXTRA_ARGS is a list of arguments
  terraform -chdir=infra apply -input=false -auto-approve \
    -var "project_id=$PROJECT_ID" -var "region=$REGION" -var "name_prefix=$PREFIX" -var "image=$IMAGE" \
    ${TF_EXTRA_ARGS:-} "$@"
}
ONLY=()
if [ "$TARGET" = run ]; then
  ONLY=(-target=google_artifact_registry_repository.aperture)
fi
for attempt in 1 2 3; do
  if first_apply ${ONLY[@]+"${ONLY[@]}"}; then
    break
  fi
  if [ "$attempt" = 3 ]; then
    echo "the first apply failed three times; see docs/deployment.md (first apply)" >&2
    exit 1
  fi
  echo "apply failed (attempt $attempt): waiting 60 s for IAM and service agents to propagate" >&2
  sleep 60
done

# 5. Cloud Build: the test suite (with the emulators), the image, terraform apply.
#    Its apply must see the variables step 4 used, or it would undo them:
#    TF_EXTRA_ARGS goes along as _TF_EXTRA_ARGS, and infra/terraform.tfvars
#    (*.auto.tfvars) is uploaded with the source (.gcloudignore keeps it).
#    The substitutions are separated by "|" (gcloud's ^|^ syntax), so the
#    extra arguments may contain commas.
gcloud builds submit --project "$PROJECT_ID" --config cloudbuild.yaml \
  --service-account "projects/$PROJECT_ID/serviceAccounts/$DEPLOYER" \
  --substitutions "^|^SHORT_SHA=$SHORT_SHA|_REGION=$REGION|_NAME_PREFIX=$PREFIX|_TF_STATE_BUCKET=$STATE_BUCKET|_TF_EXTRA_ARGS=${TF_EXTRA_ARGS:-}" .

# 6. Where it answers.
GATEWAY_URL=$(terraform -chdir=infra output -raw gateway_url)
curl -fsS "$GATEWAY_URL/health" && echo " <- $GATEWAY_URL"
