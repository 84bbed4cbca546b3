# API Gateway (S1, S5): the one public entry point. Routes, backends and the
# x-api-key requirement come from infra/openapi.yaml, rendered with the project
# and region. The gateway calls the functions as its own service account, the
# only principal allowed to invoke the HTTP functions (iam.tf).

locals {
  # openapi.yaml addresses each backend as a Cloud Function,
  # https://REGION-PROJECT.cloudfunctions.net/NAME (the local gateway routes by
  # the last segment). With var.target = "run" the functions are Cloud Run
  # services of the same names, reached at their deterministic URLs
  # https://NAME-PROJECT_NUMBER.REGION.run.app (cloudrun.tf accepts that URL as
  # the ID token's audience). APPEND_PATH_TO_ADDRESS then sends
  # /v1/images/... to that host as it is, as the function URL did.
  openapi_functions = templatefile("${path.module}/openapi.yaml", {
    project = var.project_id
    region  = var.region
  })
  openapi_document = var.target == "run" ? replace(
    local.openapi_functions,
    "/https://${var.region}-${var.project_id}\\.cloudfunctions\\.net/([a-z][-a-z0-9]*)/",
    "https://$${1}-${data.google_project.this.number}.${var.region}.run.app",
  ) : local.openapi_functions
}

resource "google_api_gateway_api" "aperture" {
  provider = google-beta

  api_id       = local.prefix
  display_name = "Aperture API"
  labels       = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_api_gateway_api_config" "aperture" {
  provider = google-beta

  api                  = google_api_gateway_api.aperture.api_id
  api_config_id_prefix = "${local.prefix}-"
  display_name         = "Aperture API config"
  labels               = local.labels

  openapi_documents {
    document {
      path     = "openapi.yaml"
      contents = base64encode(local.openapi_document)
    }
  }

  gateway_config {
    backend_config {
      google_service_account = google_service_account.gateway.email
    }
  }

  # A new config is created before the old one is deleted, so the gateway can
  # switch over without downtime.
  lifecycle {
    create_before_destroy = true
  }
}

resource "google_api_gateway_gateway" "aperture" {
  provider = google-beta

  region       = var.region
  gateway_id   = "${local.prefix}-gateway"
  display_name = "Aperture gateway"
  api_config   = google_api_gateway_api_config.aperture.id
  labels       = local.labels
}

# The API's managed service must be enabled in the project before API keys
# can be restricted to it and checked by the gateway (securityDefinitions.api_key).
resource "google_project_service" "gateway_managed_service" {
  project            = var.project_id
  service            = google_api_gateway_api.aperture.managed_service
  disable_on_destroy = false

  depends_on = [google_api_gateway_api_config.aperture]
}
