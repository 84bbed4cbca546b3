# Batch jobs (S9): the jobs function publishes one message per image to
# aperture-jobs; a push subscription delivers each to the transform function.
#
# A push subscription of our own (rather than the function's event_trigger,
# whose subscription Eventarc creates and manages) is what allows a retry
# policy with backoff AND a dead-letter topic: a message that fails
# max_delivery_attempts times is parked in aperture-jobs-dead-letter instead of
# being retried for seven days. functions-framework turns the raw Pub/Sub push
# body into the same CloudEvent (google.cloud.pubsub.topic.v1.messagePublished)
# Eventarc would deliver, so the entry point is a plain @cloud_event function.

resource "google_pubsub_topic" "jobs" {
  name                       = "${local.prefix}-jobs"
  message_retention_duration = "86400s"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "jobs_dead_letter" {
  name                       = "${local.prefix}-jobs-dead-letter"
  message_retention_duration = "604800s"

  depends_on = [google_project_service.apis]
}

# Keeps dead letters for inspection (a topic without subscriptions drops them).
resource "google_pubsub_subscription" "jobs_dead_letter" {
  name                       = "${local.prefix}-jobs-dead-letter"
  topic                      = google_pubsub_topic.jobs_dead_letter.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "push" {
  for_each = local.pubsub_functions

  name  = "${local.prefix}-${each.key}-push"
  topic = local.topics[each.value.trigger_topic].id

  # Just above the function timeout, so a running transform is not redelivered.
  ack_deadline_seconds       = 600
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.jobs_dead_letter.id
    max_delivery_attempts = 5
  }

  push_config {
    push_endpoint = google_cloudfunctions2_function.function[each.key].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.function[each.key].email
      audience              = google_cloudfunctions2_function.function[each.key].service_config[0].uri
    }

    attributes = {
      x-goog-version = "v1"
    }
  }

  labels = local.labels

  depends_on = [google_cloud_run_v2_service_iam_member.self_invoker]
}
