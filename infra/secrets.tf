# The secret that signs image links (spec S11, aperture.domain.links): the
# functions that hand out or check links (local.functions entries with
# link_secret = true) get it as APERTURE_LINK_SECRET, and only they may read it.
#
# The secret and its value are made by scripts/deploy.sh (step 3b: 48 random
# bytes, once) with the operator's credentials, never by Terraform, so the value
# is in no Terraform state or plan. Rotation: add a version
# (`openssl rand -base64 48 | gcloud secrets versions add NAME --data-file=-`)
# and redeploy; instances read "latest" when they start, and links signed with
# the old value stop opening (they live at most two hours, or what a caller of
# POST /v1/images/{id}/links asked for).
locals {
  link_secret_name      = "${var.name_prefix}-link-signing"
  link_secret_functions = { for name, f in local.functions : name => f if f.link_secret }
}

resource "google_secret_manager_secret_iam_member" "link_signing" {
  for_each = local.link_secret_functions

  project   = var.project_id
  secret_id = local.link_secret_name
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.key].email}"

  depends_on = [google_project_service.apis]
}
