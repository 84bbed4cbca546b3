# Every Google API Aperture uses. Never disabled on destroy: other workloads of
# the project may depend on them.
locals {
  apis = toset([
    "aiplatform.googleapis.com",           # Vertex AI multimodal embeddings (process)
    "apigateway.googleapis.com",           # API Gateway
    "apikeys.googleapis.com",              # API keys created by the admin function (S5)
    "artifactregistry.googleapis.com",     # function images and the Cloud Build image
    "cloudbuild.googleapis.com",           # gen2 function builds, CI
    "cloudfunctions.googleapis.com",       # Cloud Functions gen2
    "cloudresourcemanager.googleapis.com", # project IAM bindings
    "cloudscheduler.googleapis.com",       # the repair sweep's ticks (scheduler.tf)
    "eventarc.googleapis.com",             # finalize triggers
    "firestore.googleapis.com",            # metadata, keys, audit, histograms
    "iam.googleapis.com",                  # service accounts
    "iamcredentials.googleapis.com",       # signBlob for V4 signed URLs without key files
    "logging.googleapis.com",              # structured logs
    "pubsub.googleapis.com",               # Eventarc transport (storage triggers), the jobs and repair queues, dead letters
    "run.googleapis.com",                  # gen2 functions run on Cloud Run
    "secretmanager.googleapis.com",        # the image-link signing secret (secrets.tf)
    "servicecontrol.googleapis.com",       # API Gateway key checks
    "servicemanagement.googleapis.com",    # API Gateway managed service
    "storage.googleapis.com",              # buckets
    "vision.googleapis.com",               # label detection (process)
  ])
}

resource "google_project_service" "apis" {
  for_each = local.apis

  project                    = var.project_id
  service                    = each.value
  disable_on_destroy         = false
  disable_dependent_services = false
}
