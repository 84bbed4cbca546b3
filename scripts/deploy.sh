#!/usr/bin/env bash
# `make deploy`: from an empty project to a working URL (docs/deployment.md, section 3).
# Needs gcloud (authenticated as a project owner) and terraform on PATH.
for tool in gcloud terraform git curl; do
  command -v "$tool" >/dev/null || { echo "make deploy needs $tool on PATH" >&2; exit 2; }
done
cd "$(dirname "$0")/.."
set -euo pipefail
PROJECT_ID=${PROJECT_ID:?set PROJECT_ID}
REGION=${REGION:-us-central1}
PREFIX=${PREFIX:-aperture}
STATE_BUCKET=${PROJECT_ID}-tfstate
DEPLOYER=${PREFIX}-deployer@${PROJECT_ID}.iam.gserviceaccount.com

# 1. APIs Terraform itself needs before it can enable the rest.
gcloud services enable --project "$PROJECT_ID" \
  serviceusage.googleapis.com cloudresourcemanager.googleapis.com iam.googleapis.com \
  storage.googleapis.com cloudbuild.googleapis.com

# 2. Remote state: a private, versioned bucket (Terraform cannot create its own backend).
gcloud storage buckets describe "gs://$STATE_BUCKET" --project "$PROJECT_ID" >/dev/null 2>&1 ||
  gcloud storage buckets create "gs://$STATE_BUCKET" --project "$PROJECT_ID" --location "$REGION" \
    --uniform-bucket-level-access --public-access-prevention
gcloud storage buckets update "gs://$STATE_BUCKET" --versioning

# 3. The deployer identity Cloud Build runs Terraform as (once).
gcloud iam service-accounts describe "$DEPLOYER" --project "$PROJECT_ID" >/dev/null 2>&1 ||
  gcloud iam service-accounts create "${PREFIX}-deployer" --project "$PROJECT_ID" \
    --display-name "Aperture deployer (Cloud Build + Terraform)"
for role in roles/apigateway.admin roles/artifactregistry.admin roles/cloudbuild.builds.builder \
  roles/cloudfunctions.admin roles/datastore.owner roles/eventarc.admin \
  roles/iam.serviceAccountAdmin roles/iam.serviceAccountUser roles/logging.logWriter \
  roles/pubsub.admin roles/resourcemanager.projectIamAdmin roles/run.admin \
  roles/secretmanager.admin roles/servicemanagement.admin roles/serviceusage.serviceUsageAdmin \
  roles/storage.admin; do
  gcloud projects add-iam-policy-binding "$PROJECT_ID" --member "serviceAccount:$DEPLOYER" \
    --role "$role" --condition None --quiet >/dev/null
done

# 4. First apply from the operator's machine: creates the Artifact Registry
#    repository the build pushes to, the buckets, Firestore, the functions and
#    the gateway. (Later deploys go through Cloud Build only.)
terraform -chdir=infra init -input=false -reconfigure \
  -backend-config="bucket=$STATE_BUCKET" -backend-config="prefix=$PREFIX"
terraform -chdir=infra apply -input=false -auto-approve \
  -var "project_id=$PROJECT_ID" -var "region=$REGION" -var "name_prefix=$PREFIX" \
  ${TF_EXTRA_ARGS:-}

# 5. Cloud Build: the test suite (with the emulators), the image, terraform apply.
gcloud builds submit --project "$PROJECT_ID" --config cloudbuild.yaml \
  --service-account "projects/$PROJECT_ID/serviceAccounts/$DEPLOYER" \
  --substitutions "SHORT_SHA=$(git rev-parse --short HEAD),_REGION=$REGION,_NAME_PREFIX=$PREFIX,_TF_STATE_BUCKET=$STATE_BUCKET" .

# 6. Where it answers.
GATEWAY_URL=$(terraform -chdir=infra output -raw gateway_url)
curl -fsS "$GATEWAY_URL/health" && echo " <- $GATEWAY_URL"
