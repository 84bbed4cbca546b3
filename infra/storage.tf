# Buckets. All of them: uniform bucket-level access, versioning, public access
# prevention enforced (the source bucket may opt out through
# var.source_bucket_public), usage logs into the access-logs bucket.
#
#   source    images read by GET /stats/{image}/{func}; or an existing bucket
#   uploads   team images (teams/{team}/{id}.{ext}) and direct uploads (incoming/)
#   derived   batch job outputs, cached conversions and responses too large for
#             the gateway (responses/, signed-URL redirects)
#   gcf-source  zipped functions/ for the gen2 builds
#   access-logs usage and storage logs of the buckets above

resource "google_storage_bucket" "access_logs" {
  name                        = "${local.prefix}-${var.project_id}-access-logs"
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 365
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "source" {
  count = local.create_source_bucket ? 1 : 0

  name                        = "${local.prefix}-${var.project_id}-source"
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = var.source_bucket_public ? "inherited" : "enforced"
  force_destroy               = !var.deletion_protection

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
    }
    action {
      type = "Delete"
    }
  }

  dynamic "logging" {
    for_each = var.usage_logs ? [1] : []
    content {
      log_bucket        = google_storage_bucket.access_logs.name
      log_object_prefix = "source/"
    }
  }

  depends_on = [google_project_service.apis]
}

# Opt-in anonymous read of the source bucket (like the public demo bucket
# seetree-demo-open). Never granted on uploads or derived.
resource "google_storage_bucket_iam_member" "source_public_read" {
  count = local.create_source_bucket && var.source_bucket_public ? 1 : 0

  bucket = google_storage_bucket.source[0].name
  role   = "roles/storage.objectViewer"
  member = "allUsers"
}

resource "google_storage_bucket" "uploads" {
  name                        = "${local.prefix}-${var.project_id}-uploads"
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection

  versioning {
    enabled = true
  }

  # Direct uploads land under incoming/; the finalize trigger files them under
  # teams/. Anything still there a day later was abandoned or rejected.
  lifecycle_rule {
    condition {
      age            = var.incoming_retention_days
      matches_prefix = ["incoming/"]
    }
    action {
      type = "Delete"
    }
  }

  # Rejected or filed direct uploads leave incoming/ (deleted by generation,
  # which in this versioned bucket only makes them noncurrent): their bytes go
  # a day later, not after the noncurrent retention below. (`process` purges the
  # generation of a rejected plain-client object under teams/ at once, and
  # DELETE /v1/images/{id} every generation of the image.)
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
      matches_prefix             = ["incoming/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
    }
    action {
      type = "Delete"
    }
  }

  # Browsers PUT straight to V4 signed URLs (S6 upload links).
  cors {
    origin          = var.upload_cors_origins
    method          = ["PUT", "POST", "GET", "HEAD"]
    response_header = ["Content-Type", "Content-Length", "Content-MD5", "ETag", "x-goog-resumable", "x-goog-content-sha256"]
    max_age_seconds = 3600
  }

  dynamic "logging" {
    for_each = var.usage_logs ? [1] : []
    content {
      log_bucket        = google_storage_bucket.access_logs.name
      log_object_prefix = "uploads/"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "derived" {
  name                        = "${local.prefix}-${var.project_id}-derived"
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection

  versioning {
    enabled = true
  }

  # Responses over API Gateway's 32 MiB cap (the images function writes the
  # body under responses/DAY/ and redirects to a signed URL valid for an hour):
  # a day-partitioned copy lives at least a day past its last signing and goes
  # two days after it was written, its noncurrent version a day later.
  lifecycle_rule {
    condition {
      age            = 2
      matches_prefix = ["responses/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
      matches_prefix             = ["responses/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
    }
    action {
      type = "Delete"
    }
  }

  dynamic "logging" {
    for_each = var.usage_logs ? [1] : []
    content {
      log_bucket        = google_storage_bucket.access_logs.name
      log_object_prefix = "derived/"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "function_source" {
  name                        = "${local.prefix}-${var.project_id}-gcf-source"
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  versioning {
    enabled = true
  }

  # Old source archives are only needed to rebuild old revisions.
  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
    }
    action {
      type = "Delete"
    }
  }

  dynamic "logging" {
    for_each = var.usage_logs ? [1] : []
    content {
      log_bucket        = google_storage_bucket.access_logs.name
      log_object_prefix = "gcf-source/"
    }
  }

  depends_on = [google_project_service.apis]
}

# GCS usage logs are written by this Google group (documented writer of usage
# logs). An organization policy of Domain Restricted Sharing
# (constraints/iam.allowedPolicyMemberDomains) refuses members outside the
# organization's domains, google.com included, and the apply would stop here:
# var.usage_logs = false leaves the grant and the buckets' logging out.
resource "google_storage_bucket_iam_member" "access_logs_writer" {
  count = var.usage_logs ? 1 : 0

  bucket = google_storage_bucket.access_logs.name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}
