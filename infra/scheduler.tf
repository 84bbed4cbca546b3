# The repair sweep's clock (functions/aperture/services/repair.py, issue #19):
# Cloud Scheduler publishes a tick to the repair topic every 15 minutes, and
# its push subscription (pubsub.tf) hands it to the `repair` function, which
# runs one sweep per tick. Under `make run` a timer child does the same
# (scripts/devstack/scheduler.py).
#
# A Pub/Sub target needs no App Engine app and no service account of ours:
# Cloud Scheduler publishes as its own service agent, whose predefined role
# (roles/cloudscheduler.serviceAgent, granted when the API is enabled)
# includes pubsub.topics.publish. What the message holds does not matter; it
# says what it is for logs and `gcloud pubsub` readers.
#
# Every 15 minutes, UTC: stale_after (APERTURE_REPAIR_STALE_MINUTES, 30) is
# twice that, so a record or object is looked at within 45 minutes of going
# out of step. A tick the function does not answer is the subscription's to
# redeliver and, after local.max_delivery_attempts, to dead-letter (the
# function acknowledges a dead tick: the next one sweeps anyway).
resource "google_cloud_scheduler_job" "repair" {
  name        = "${local.prefix}-repair"
  region      = var.region
  description = "A repair-sweep tick to ${google_pubsub_topic.queue["repair"].name} (the repair function sweeps once per tick)."
  schedule    = "*/15 * * * *"
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.queue["repair"].id
    data       = base64encode(jsonencode({ tick = "repair" }))
    attributes = { origin = "cloud-scheduler" }
  }

  depends_on = [google_project_service.apis]
}
