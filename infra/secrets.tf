# Secret Manager. aperture-signing-key signs upload-link tokens (S6); only the
# upload function can read it (iam.tf), as APERTURE_SIGNING_KEY.
#
# Terraform generates the key, so it is also in the Terraform state: the state
# bucket is private, versioned and readable by deployers only (docs/deployment.md).
# Rotate with -var signing_key_rotation=<new value>.

resource "google_secret_manager_secret" "signing_key" {
  secret_id = "${local.prefix}-signing-key"

  replication {
    auto {}
  }

  labels = local.labels

  depends_on = [google_project_service.apis]
}

resource "random_password" "signing_key" {
  length  = 64
  special = false

  keepers = {
    rotation = var.signing_key_rotation
  }
}

resource "google_secret_manager_secret_version" "signing_key" {
  secret      = google_secret_manager_secret.signing_key.id
  secret_data = random_password.signing_key.result
}
