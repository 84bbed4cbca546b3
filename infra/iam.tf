# Identities and grants. Least privilege:
#  - one service account per function (local.functions), holding only the roles
#    its table entry lists: bucket roles on that bucket, topic roles on that
#    topic; project-wide only for roles that exist nowhere else (Firestore,
#    Eventarc receiver, Vertex AI, and API keys through a custom role with only
#    the permissions key issuing takes);
#  - invoker grants name the function's Cloud Run service, whichever target
#    (var.target) runs it: a gen2 function's own or a plain service;
#  - the gateway's account may only invoke the HTTP functions;
#  - the Pub/Sub push account may only invoke the functions fed by a push
#    subscription (local.push_functions);
#  - the build account may only read the source archive, push to the aperture
#    repository and write build logs;
#  - no primitive role (owner/editor/viewer) and no allUsers invoker anywhere.

resource "google_service_account" "function" {
  for_each = local.functions

  account_id   = "${local.prefix}-${each.key}"
  display_name = "Aperture ${each.key} function"
  description  = "Runtime identity of the ${each.key} function (${each.value.kind}); used by nothing else."

  lifecycle {
    # A misspelt name in var.min_instances would silently keep nothing warm.
    precondition {
      condition     = alltrue([for name in keys(var.min_instances) : contains(keys(local.functions), name)])
      error_message = "min_instances names a function that does not exist (the functions are those of local.functions)."
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "gateway" {
  account_id   = "${local.prefix}-gateway"
  display_name = "Aperture API Gateway"
  description  = "Identity API Gateway uses to call the HTTP functions."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "pubsub_push" {
  account_id   = "${local.prefix}-pubsub-push"
  display_name = "Aperture Pub/Sub push"
  description  = "Identity in the OIDC token of the push subscriptions (pubsub.tf); may only invoke the functions they feed."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "build" {
  account_id   = "${local.prefix}-build"
  display_name = "Aperture function builds"
  description  = "Cloud Build identity for the gen2 function builds."

  depends_on = [google_project_service.apis]
}

# --- per-function grants, all derived from local.functions -----------------------

resource "google_project_iam_member" "function" {
  for_each = local.function_project_roles

  project = var.project_id
  role    = each.value.role
  member  = google_service_account.function[each.value.function].member

  # local.key_issuer_role is spelt out (for_each keys must be known at plan),
  # so the custom role's creation is ordered here.
  depends_on = [google_project_iam_custom_role.key_issuer]
}

# The admin function's API-keys permission (S5: keys are Google API keys
# restricted to the gateway's managed service). API keys have no IAM policy of
# their own and IAM Conditions cannot select them, so the grant is
# project-wide; what can be narrowed is the permission set. The predefined
# roles/serviceusage.apiKeysAdmin also lists, reads by name-lookup, updates and
# undeletes every key of the project; this role has only what
# GoogleKeyIssuer calls: create, getKeyString (when create's answer lacks the
# string), delete (revocation), and operations.get (both are long-running).
# Without keys.list/lookup the function cannot find a key it was not told the
# name of. The remaining risk (docs/deployment.md, "Least privilege"): the
# admin identity can read and delete any key whose name it learns, and create
# keys; so Aperture gets a project of its own, and only `admin` has the role.
resource "google_project_iam_custom_role" "key_issuer" {
  project     = var.project_id
  role_id     = local.key_issuer_role_id
  title       = "Aperture API key issuer"
  description = "Create, read once and delete the API keys of Aperture teams (the admin function only)."
  permissions = [
    "apikeys.keys.create",
    "apikeys.keys.delete",
    "apikeys.keys.getKeyString",
    "serviceusage.operations.get",
  ]

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "function" {
  for_each = local.function_bucket_roles

  bucket = local.buckets[each.value.bucket]
  role   = each.value.role
  member = google_service_account.function[each.value.function].member
}

# Pub/Sub roles on one topic only (the jobs function publishes to the jobs
# topic, process and repair to the processing dead-letter topic; nothing gets
# pubsub roles project-wide).
resource "google_pubsub_topic_iam_member" "function" {
  for_each = local.function_topic_roles

  project = var.project_id
  topic   = local.topic_names[each.value.topic]
  role    = each.value.role
  member  = google_service_account.function[each.value.function].member
}

# V4 signed URLs without key files: the function signs with signBlob as itself,
# so it may create tokens for its own account only.
resource "google_service_account_iam_member" "function_self_signer" {
  for_each = { for name, f in local.functions : name => f if f.sign_urls }

  service_account_id = google_service_account.function[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.function[each.key].member
}

# Eventarc-triggered functions: Eventarc presents an OIDC token of the
# function's own account, which must be allowed to invoke that one service.
resource "google_cloud_run_v2_service_iam_member" "self_invoker" {
  for_each = local.eventarc_functions

  project  = var.project_id
  location = var.region
  name     = local.function_services[each.key]
  role     = "roles/run.invoker"
  member   = google_service_account.function[each.key].member
}

# Functions fed by a push subscription (pubsub.tf): only the push account,
# whose OIDC token Pub/Sub presents, may call them.
resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  for_each = local.push_functions

  project  = var.project_id
  location = var.region
  name     = local.function_services[each.key]
  role     = "roles/run.invoker"
  member   = google_service_account.pubsub_push.member
}

# HTTP functions: only API Gateway may call them.
resource "google_cloud_run_v2_service_iam_member" "gateway_invoker" {
  for_each = local.http_functions

  project  = var.project_id
  location = var.region
  name     = local.function_services[each.key]
  role     = "roles/run.invoker"
  member   = google_service_account.gateway.member
}

# --- build account ---------------------------------------------------------------

resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter"])

  project = var.project_id
  role    = each.value
  member  = google_service_account.build.member
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.aperture.location
  repository = google_artifact_registry_repository.aperture.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

resource "google_storage_bucket_iam_member" "build_source_reader" {
  bucket = google_storage_bucket.function_source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

# Cloud Functions copies each source archive into its own staging bucket
# gcf-v2-sources-PROJECT_NUMBER-REGION (created on first deploy, so it cannot be
# bound by name in advance) and the build reads it from there. The condition
# keeps the grant off every other bucket (uploads, derived, ...).
resource "google_project_iam_member" "build_staging_reader" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.build.member

  condition {
    title       = "gcf-v2-sources-only"
    description = "Only the Cloud Functions source staging bucket of this project."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-\")"
  }
}

# --- Google-managed service agents ---------------------------------------------

# Cloud Storage publishes object events to Pub/Sub for Eventarc storage triggers.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "gcs_pubsub_publisher" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

# Pub/Sub's service agent, service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com
# (created here if the project does not have it yet). Dead lettering runs as
# this agent: it republishes a message to the dead-letter topic and acks it on
# the source subscription, so it needs publisher on each dead-letter topic and
# subscriber on each subscription with a dead-letter policy; both granted on
# that one resource.
resource "google_project_service_identity" "pubsub" {
  provider = google-beta

  project = var.project_id
  service = "pubsub.googleapis.com"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.topics

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.key].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_project_service_identity.pubsub.email}"
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.push_functions

  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_project_service_identity.pubsub.email}"
}

# The agent mints the push subscriptions' OIDC tokens for the push account.
# Projects created since April 2021 grant this implicitly; older ones need it.
# Granted on that one account, not project-wide.
resource "google_service_account_iam_member" "pubsub_push_token_creator" {
  service_account_id = google_service_account.pubsub_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_project_service_identity.pubsub.email}"
}
