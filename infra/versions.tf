# Providers and state for Aperture's cloud deployment.
#
# State lives in a GCS bucket created once per project by `make deploy`
# (see docs/deployment.md); the bucket is given at init time:
#   terraform -chdir=infra init -backend-config="bucket=PROJECT-tfstate" -backend-config="prefix=aperture"
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.14"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.14"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.6"
    }
  }

  backend "gcs" {}
}

provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = local.labels
}

provider "google-beta" {
  project        = var.project_id
  region         = var.region
  default_labels = local.labels
}
