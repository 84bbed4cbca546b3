# Cloud Functions gen2, one per entry of local.functions (main.tf), which has
# one entry per function of the registry (functions/aperture/functions.py).

# Artifact Registry: the gen2 builds push their images here (instead of the
# default gcf-artifacts repository, so the build account can be scoped to it)
# and Cloud Build pushes the all-functions image here (cloudbuild.yaml).
resource "google_artifact_registry_repository" "aperture" {
  location      = var.region
  repository_id = local.prefix
  description   = "Aperture function images"
  format        = "DOCKER"

  docker_config {
    immutable_tags = false
  }

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.apis]
}

# The zipped functions/ directory: main.py (entry points), requirements.txt,
# the aperture package and the source of its C extension (native/jpegrows). The object name carries the content hash, so a code
# change redeploys every function and nothing else does.
data "archive_file" "functions" {
  type        = "zip"
  source_dir  = "${path.module}/../functions"
  output_path = "${path.module}/.terraform/tmp/functions.zip"
  # Local build output and caches stay out: they are not needed (Cloud
  # Functions installs requirements.txt and compiles native/jpegrows from
  # source) and, being in the zip, they would change its hash and redeploy
  # every function after a mere test run. Each pattern is given both for the
  # top of functions/ and for any depth, so that neither depends on whether
  # the provider's doublestar matching lets a leading "**/" match no directory.
  # tests/infra/test_apply_semantics.py checks sample paths against the list.
  excludes = [
    "__pycache__",
    "**/__pycache__",
    "**/__pycache__/**",
    "*.pyc",
    "**/*.pyc",
    "*.so",
    "**/*.so",
    ".pytest_cache",
    "**/.pytest_cache/**",
    ".mypy_cache",
    "**/.mypy_cache/**",
    ".ruff_cache",
    "**/.ruff_cache/**",
    ".hypothesis",
    "**/.hypothesis/**",
    ".import_linter_cache",
    "**/.import_linter_cache/**",
    ".venv",
    "**/.venv/**",
    ".venv-*",
    "tests",
    "**/tests/**",
    "*.egg-info",
    "**/*.egg-info/**",
    "build",
    "**/build/**",
    "dist",
    "**/dist/**",
  ]
}

resource "google_storage_bucket_object" "functions_source" {
  name         = "functions-${data.archive_file.functions.output_sha256}.zip"
  bucket       = google_storage_bucket.function_source.name
  source       = data.archive_file.functions.output_path
  content_type = "application/zip"
}

resource "google_cloudfunctions2_function" "function" {
  # every function with var.target = "functions" (the default), none with
  # "run" (cloudrun.tf deploys them as Cloud Run services instead)
  for_each = local.cloud_functions

  name        = each.key
  location    = var.region
  description = "Aperture ${each.key} (${each.value.kind})"

  build_config {
    runtime           = "python311"
    entry_point       = each.value.entry_point
    docker_repository = google_artifact_registry_repository.aperture.id
    service_account   = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_source.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.function[each.key].email
    available_memory                 = each.value.memory
    available_cpu                    = each.value.cpu
    timeout_seconds                  = each.value.timeout
    min_instance_count               = local.min_instances[each.key]
    max_instance_count               = ceil(each.value.max_instances * var.max_instances_scale)
    max_instance_request_concurrency = each.value.concurrency
    all_traffic_on_latest_revision   = true
    # HTTP functions are reached through API Gateway over the internet, but only
    # the gateway's service account may invoke them (iam.tf). Event functions
    # are pushed to by Eventarc or by Pub/Sub push subscriptions (pubsub.tf) of
    # this project at their run.app URL: internal.
    ingress_settings      = each.value.kind == "http" ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
    environment_variables = merge(local.common_env, each.value.env)

    dynamic "secret_environment_variables" {
      for_each = each.value.link_secret ? [local.link_secret_name] : []
      content {
        key        = "APERTURE_LINK_SECRET"
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  # kind = "event" with trigger_buckets: the first bucket; the others are
  # google_eventarc_trigger.extra_bucket below. A function with a trigger_topic
  # has no event_trigger: its push subscriptions (pubsub.tf) post to its URL,
  # and its @functions_framework.cloud_event entry point makes the CloudEvent.
  dynamic "event_trigger" {
    for_each = contains(keys(local.primary_event_bucket), each.key) ? [local.primary_event_bucket[each.key]] : []
    content {
      trigger_region        = local.bucket_locations[event_trigger.value]
      event_type            = "google.cloud.storage.object.v1.finalized"
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = google_service_account.function[each.key].email

      event_filters {
        attribute = "bucket"
        value     = local.buckets[event_trigger.value]
      }
    }
  }

  labels = merge(local.labels, { function = each.key, kind = each.value.kind })

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.build,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_reader,
    google_project_iam_member.build_staging_reader,
    google_project_iam_member.function,
    google_storage_bucket_iam_member.function,
    google_pubsub_topic_iam_member.function,
    google_secret_manager_secret_iam_member.link_signing,
    google_project_iam_member.gcs_pubsub_publisher,
  ]
}

# Why a separate trigger and not a second function: `process` must see objects
# finalized in BOTH the uploads and the source bucket, and a gen2 function has
# exactly one event_trigger. A second function (process-uploads/process-source)
# would double the deployments, the service accounts and the cold starts of the
# same code; an Eventarc trigger aimed at the function's Cloud Run service
# delivers the identical CloudEvent to the one deployment.
resource "google_eventarc_trigger" "extra_bucket" {
  for_each = local.extra_bucket_triggers

  name            = "${local.prefix}-${each.value.function}-${each.value.bucket}"
  location        = local.bucket_locations[each.value.bucket]
  service_account = google_service_account.function[each.value.function].email

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.storage.object.v1.finalized"
  }
  matching_criteria {
    attribute = "bucket"
    value     = local.buckets[each.value.bucket]
  }

  # cloud_run_service.service is the service's bare name (google provider:
  # "The name of the Cloud Run service being addressed"), while a gen2
  # function's service_config[0].service is the full resource name
  # projects/P/locations/R/services/NAME: Eventarc would refuse the trigger (or
  # never find the service) with the full path, so only its last segment is
  # passed (regex() returns the match). The reference keeps the trigger after
  # the function in the graph.
  destination {
    cloud_run_service {
      service = regex("[^/]+$", google_cloudfunctions2_function.function[each.value.function].service_config[0].service)
      region  = var.region
    }
  }

  labels = local.labels

  depends_on = [
    google_project_iam_member.function,
    google_project_iam_member.gcs_pubsub_publisher,
    google_cloud_run_v2_service_iam_member.self_invoker,
  ]
}
