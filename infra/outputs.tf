output "gateway_url" {
  description = "Public base URL of the API (https://...gateway.dev). GET $gateway_url/health answers OK."
  value       = "https://${google_api_gateway_gateway.aperture.default_hostname}"
}

output "api_managed_service" {
  description = "The API's managed service; Google API keys must be restricted to it."
  value       = google_api_gateway_api.aperture.managed_service
}

output "source_bucket" {
  description = "Bucket the stats endpoint reads (and, when it belongs to this project, the process trigger watches)."
  value       = local.source_bucket_name
}

output "uploads_bucket" {
  description = "Team images and direct uploads."
  value       = google_storage_bucket.uploads.name
}

output "derived_bucket" {
  description = "Batch job outputs and cached conversions."
  value       = google_storage_bucket.derived.name
}

output "pubsub_topics" {
  description = "Work queues (jobs: one message per batch-job item; repair: the repair sweep's ticks) and their dead-letter topics."
  value = {
    for key, topic in google_pubsub_topic.queue : key => {
      topic       = topic.name
      dead_letter = google_pubsub_topic.dead_letter[key].name
    }
  }
}

output "held_topics" {
  description = "Topics kept for operators (process_dead_letter: team images processing gave up on) and the pull subscription holding each one's messages 7 days."
  value = {
    for key, topic in google_pubsub_topic.held : key => {
      topic        = topic.name
      subscription = google_pubsub_subscription.hold[key].name
    }
  }
}

output "repair_schedule" {
  description = "The Cloud Scheduler job that publishes a tick to the repair topic (`gcloud scheduler jobs run` it to sweep at once)."
  value       = google_cloud_scheduler_job.repair.name
}

output "function_urls" {
  description = "Cloud Run URL of every function, gen2 function or Cloud Run service (var.target); HTTP ones reject callers other than the gateway."
  value       = local.function_urls
}

output "target" {
  description = "Where the functions run: functions (Cloud Functions gen2) or run (Cloud Run services from the image)."
  value       = var.target
}

output "function_service_accounts" {
  description = "Runtime service account of every function."
  value       = { for name, sa in google_service_account.function : name => sa.email }
}

output "artifact_registry_repository" {
  description = "Docker repository for the all-functions image (cloudbuild.yaml) and the gen2 builds."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.aperture.repository_id}"
}
