# API Gateway (S1, S5): the one public entry point. Routes, backends and the
# x-api-key requirement come from infra/openapi.yaml, rendered with the project
# and region. The gateway calls the functions as its own service account, the
# only principal allowed to invoke the HTTP functions (iam.tf).

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
      path = "openapi.yaml"
      contents = base64encode(templatefile("${path.module}/openapi.yaml", {
        project = var.project_id
        region  = var.region
      }))
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
