# The second target (var.target = "run"), for teams that run containers: the
# Dockerfile image (every function in one image, picked by FUNCTION_TARGET)
# deployed as one Cloud Run service per entry of local.functions, with the
# same names, identities, sizing, environment, invokers, triggers and push
# subscriptions as the Cloud Functions target (functions.tf), and behind the
# same gateway (gateway.tf points its backends at these services). Cloud Build
# builds and pushes the image (cloudbuild.yaml); `make deploy TARGET=run`
# passes it as var.image.
#
# With var.target = "functions" (the default) nothing here is created.

resource "google_cloud_run_v2_service" "function" {
  for_each = local.run_functions

  name     = each.key
  location = var.region
  # HTTP functions: reached by API Gateway over the internet, invoked only by
  # the gateway's account (iam.tf). Event functions: Eventarc and Pub/Sub push
  # of this project only, as ALLOW_INTERNAL_ONLY does for the gen2 functions.
  ingress     = each.value.kind == "http" ? "INGRESS_TRAFFIC_ALL" : "INGRESS_TRAFFIC_INTERNAL_ONLY"
  description = "Aperture ${each.key} (${each.value.kind}) from the functions image"
  # The gateway addresses every service by its deterministic URL
  # (https://NAME-PROJECT_NUMBER.REGION.run.app, gateway.tf) and ESPv2 sends
  # that URL as the ID token's audience; both run.app URLs are accepted, and
  # naming it keeps that true whichever URL Cloud Run shows first.
  custom_audiences    = ["https://${each.key}-${data.google_project.this.number}.${var.region}.run.app"]
  deletion_protection = false
  labels              = merge(local.labels, { function = each.key, kind = each.value.kind })

  template {
    service_account                  = google_service_account.function[each.key].email
    timeout                          = "${each.value.timeout}s"
    max_instance_request_concurrency = each.value.concurrency

    scaling {
      min_instance_count = local.min_instances[each.key]
      max_instance_count = ceil(each.value.max_instances * var.max_instances_scale)
    }

    containers {
      image = var.image

      resources {
        limits = {
          cpu    = each.value.cpu
          memory = each.value.memory
        }
        # CPU only while a request runs, like a function; a faster cold start.
        cpu_idle          = true
        startup_cpu_boost = true
      }

      # The image's CMD starts functions-framework --target=$FUNCTION_TARGET
      # (Dockerfile); the entry point is the table's, the signature the
      # registry's trigger (decorated entry points pick their own anyway).
      env {
        name  = "FUNCTION_TARGET"
        value = each.value.entry_point
      }
      env {
        name  = "FUNCTION_SIGNATURE_TYPE"
        value = each.value.kind == "http" ? "http" : "cloudevent"
      }
      dynamic "env" {
        for_each = merge(local.common_env, each.value.env)
        content {
          name  = env.key
          value = env.value
        }
      }
      dynamic "env" {
        for_each = each.value.link_secret ? [local.link_secret_name] : []
        content {
          name = "APERTURE_LINK_SECRET"
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.image != ""
      error_message = "target = \"run\" needs var.image, the image cloudbuild.yaml pushes (REGION-docker.pkg.dev/PROJECT/PREFIX/functions:SHA); `make deploy TARGET=run` passes it."
    }
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.function,
    google_storage_bucket_iam_member.function,
    google_pubsub_topic_iam_member.function,
    google_secret_manager_secret_iam_member.link_signing,
  ]
}

# Every bucket an event function listens to, one Eventarc trigger each, aimed
# at its service (a Cloud Run service has no event_trigger of its own, so the
# uploads bucket gets one here too; with the functions target, the gen2
# function's own trigger covers it and functions.tf adds the others).
resource "google_eventarc_trigger" "run_bucket" {
  for_each = local.run_bucket_triggers

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

  destination {
    cloud_run_service {
      # the bare service name (the function's), in its own region
      service = each.value.function
      region  = var.region
    }
  }

  labels = local.labels

  depends_on = [
    google_cloud_run_v2_service.function,
    google_project_iam_member.function,
    google_project_iam_member.gcs_pubsub_publisher,
    google_cloud_run_v2_service_iam_member.self_invoker,
  ]
}
