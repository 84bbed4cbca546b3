# Pub/Sub work queues and their delivery to functions (S9: batch jobs; the
# repair sweep's ticks), and topics held for operators (processing dead letters).
#
# local.topics (main.tf) names the queues; for each one there is a topic, a
# dead-letter topic "<name>-dead-letter", and, for every function whose table
# entry has trigger_topic = that key (local.push_functions), two PUSH
# subscriptions to the function's Cloud Run URL:
#
#   <topic>-<function>              the work: retried with backoff, moved to the
#                                   dead-letter topic after
#                                   local.max_delivery_attempts deliveries
#   <topic>-dead-letter-<function>  the dead letters, pushed to the same function;
#                                   Pub/Sub adds the attribute
#                                   CloudPubSubDeadLetterSourceDeliveryCount, from
#                                   which `transform` marks the item failed (and
#                                   `repair` logs and acknowledges a lost tick)
#
# The local stack (scripts/devstack/stack.py, _subscribe_workers) creates the
# same topics and subscriptions on the emulator, with the same names when
# name_prefix is "aperture".
#
# Why push subscriptions and not an Eventarc Pub/Sub trigger (as `process` has
# for bucket events): Eventarc creates and owns the subscription of a Pub/Sub
# trigger, and Terraform cannot give that subscription a dead-letter policy, so
# a message that fails every time would be retried until it expires and its
# item would never be marked failed. A subscription declared here
# carries the dead-letter policy, the retry backoff and an ack deadline equal
# to the function's timeout.
#
# What the function receives: Pub/Sub posts its push envelope
# ({"message": {...}, "subscription": ...}) to the URL; functions-framework
# (transform is declared with @functions_framework.cloud_event) turns it into a
# CloudEvent google.cloud.pubsub.topic.v1.messagePublished with data
# {"message": {...}}, as Eventarc would deliver it. The topic's path appended to
# the URL becomes the event's source, exactly as locally.
#
# Who may push: a dedicated service account, <prefix>-pubsub-push, whose OIDC
# token (audience: the function's URL) is the only invoker of the push
# functions (iam.tf). The function's ingress stays internal-only: Pub/Sub of
# the same project pushing to the run.app URL counts as internal traffic.
# local.function_urls is the run.app URL of the gen2 function or of the Cloud
# Run service, whichever var.target deploys (main.tf).

resource "google_pubsub_topic" "queue" {
  for_each = local.topics

  name   = each.value
  labels = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  for_each = local.topics

  name   = "${each.value}-dead-letter"
  labels = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription" "push" {
  for_each = local.push_functions

  name  = "${google_pubsub_topic.queue[each.value.trigger_topic].name}-${each.key}"
  topic = google_pubsub_topic.queue[each.value.trigger_topic].id

  # Pub/Sub waits this long for the function's answer before it counts the
  # delivery as failed: as long as the function may run.
  ack_deadline_seconds       = each.value.timeout
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${local.function_urls[each.key]}/${google_pubsub_topic.queue[each.value.trigger_topic].id}"
    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
      audience              = local.function_urls[each.key]
    }
  }

  # A failed delivery (the function answered non-2xx, e.g. an exception) is
  # retried with exponential backoff ...
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "300s"
  }

  # ... and after local.max_delivery_attempts deliveries the message moves to the
  # dead-letter topic (Pub/Sub's service agent needs publisher on that topic and
  # subscriber on this subscription: iam.tf).
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.value.trigger_topic].id
    max_delivery_attempts = local.max_delivery_attempts
  }

  # Never expire (the default deletes a subscription idle for 31 days, and a
  # month without batch jobs would silently stop the next ones).
  expiration_policy {
    ttl = ""
  }

  labels = local.labels

  depends_on = [
    google_cloud_run_v2_service_iam_member.push_invoker,
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_service_account_iam_member.pubsub_push_token_creator,
  ]
}

resource "google_pubsub_subscription" "dead_letter_push" {
  for_each = local.push_functions

  name  = "${google_pubsub_topic.dead_letter[each.value.trigger_topic].name}-${each.key}"
  topic = google_pubsub_topic.dead_letter[each.value.trigger_topic].id

  ack_deadline_seconds       = each.value.timeout
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${local.function_urls[each.key]}/${google_pubsub_topic.dead_letter[each.value.trigger_topic].id}"
    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
      audience              = local.function_urls[each.key]
    }
  }

  # Marking an item failed is a small Firestore write; if it fails it is
  # retried (no dead-letter policy here: a dead letter of a dead letter would
  # have nowhere to go) until the message's retention ends.
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "300s"
  }

  expiration_policy {
    ttl = ""
  }

  labels = local.labels

  depends_on = [
    google_cloud_run_v2_service_iam_member.push_invoker,
    google_service_account_iam_member.pubsub_push_token_creator,
  ]
}

# Topics held for operators (local.held_topics): no function is pushed their
# messages. The processing dead-letter topic gets one message per team image
# `process` (or `repair`, which processes stale records again) gave up on: the
# object, its generation, the team, the image id, the attempts and the last
# error, as JSON and (but the error) as attributes. Eventarc owns the
# subscription of the storage trigger, so Pub/Sub's dead-letter policy cannot
# do this; the function publishes it itself (services/processing.py).
resource "google_pubsub_topic" "held" {
  for_each = local.held_topics

  name   = each.value
  labels = local.labels

  depends_on = [google_project_service.apis]
}

# A pull subscription that keeps each message 7 days (acknowledged ones too, so
# an operator can seek back and replay them), to inspect with
# `gcloud pubsub subscriptions pull <name>-hold` (docs/reliability.md).
resource "google_pubsub_subscription" "hold" {
  for_each = local.held_topics

  name  = "${google_pubsub_topic.held[each.key].name}-hold"
  topic = google_pubsub_topic.held[each.key].id

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true

  # Never expire: months without a dead letter are the normal case.
  expiration_policy {
    ttl = ""
  }

  labels = local.labels
}
