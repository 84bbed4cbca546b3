variable "project_id" {
  description = "Google Cloud project that hosts Aperture."
  type        = string
}

variable "region" {
  description = "Region for functions, buckets, Artifact Registry, Eventarc and the API gateway."
  type        = string
  default     = "us-central1"
}

variable "name_prefix" {
  description = "Prefix of every named resource (buckets, service accounts, topics, API). Function names are NOT prefixed: infra/openapi.yaml addresses them by bare name."
  type        = string
  default     = "aperture"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,14}$", var.name_prefix))
    error_message = "name_prefix: 3-15 characters, lowercase letters, digits and dashes, starting with a letter (it must fit in service account ids)."
  }
}

variable "source_bucket" {
  description = "Name of an EXISTING bucket to read source images from (e.g. the public \"seetree-demo-open\", read anonymously). Empty: Terraform creates \"<prefix>-<project>-source\"."
  type        = string
  default     = ""
}

variable "source_bucket_location" {
  description = "Location of an existing source bucket (lowercase region or multi-region), used for its Eventarc trigger. Empty: var.region."
  type        = string
  default     = ""
}

variable "source_bucket_trigger" {
  description = "Process objects finalized in the source bucket. Eventarc can only watch a bucket of this project: set false when source_bucket belongs to another project."
  type        = bool
  default     = true
}

variable "source_bucket_public" {
  description = "Grant allUsers objectViewer on the source bucket Terraform creates (never on uploads or derived). Off by default."
  type        = bool
  default     = false
}

variable "upload_cors_origins" {
  description = "Browser origins allowed to PUT to V4 signed URLs on the uploads bucket. Set it to the gateway origin once known."
  type        = list(string)
  default     = ["*"]
}

variable "firestore_location" {
  description = "Firestore location (e.g. nam5 or a region). Empty: var.region. Cannot change after creation."
  type        = string
  default     = ""
}

variable "audit_retention_days" {
  description = "Days before audit records expire (the functions write audit.expires_at; Firestore TTL deletes them)."
  type        = number
  default     = 90
}

variable "incoming_retention_days" {
  description = "Days before unprocessed objects under incoming/ in the uploads bucket are deleted."
  type        = number
  default     = 1
}

variable "noncurrent_version_retention_days" {
  description = "Days a replaced or deleted object version is kept (versioned buckets)."
  type        = number
  default     = 30
}

variable "max_instances_scale" {
  description = "Multiplier applied to every function's max_instances (quota guard)."
  type        = number
  default     = 1
}

variable "transform_max_instances" {
  description = "Most instances of the transform function (batch-job items, one at a time each): how many items run at once. Also scaled by max_instances_scale."
  type        = number
  default     = 10

  validation {
    condition     = var.transform_max_instances >= 1 && floor(var.transform_max_instances) == var.transform_max_instances
    error_message = "transform_max_instances: a whole number, at least 1."
  }
}

variable "deletion_protection" {
  description = "Protect the Firestore database and refuse to destroy non-empty buckets."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Extra labels for every resource that takes labels."
  type        = map(string)
  default     = {}
}

variable "target" {
  description = "Where the functions run: \"functions\" (Cloud Functions gen2, built from functions/ by Cloud Functions) or \"run\" (one Cloud Run service per function, all from the Dockerfile image var.image, which Cloud Build builds and pushes). The gateway, identities, grants, triggers and queues are the same for both."
  type        = string
  default     = "functions"

  validation {
    condition     = contains(["functions", "run"], var.target)
    error_message = "target: \"functions\" or \"run\"."
  }
}

variable "image" {
  description = "target = \"run\": the container image every service runs, e.g. REGION-docker.pkg.dev/PROJECT/PREFIX/functions:SHA (what cloudbuild.yaml pushes; scripts/deploy.sh passes it). Unused with target = \"functions\"."
  type        = string
  default     = ""
}

variable "min_instances" {
  description = "Instances kept warm per function, by function name (e.g. { stats = 1 }); a function not named keeps 0 (scale to zero, cold starts). Warm instances are billed while idle."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for n in values(var.min_instances) : n >= 0 && floor(n) == n])
    error_message = "min_instances: whole numbers, 0 or more."
  }
}

variable "usage_logs" {
  description = "Deliver Cloud Storage usage logs of the buckets to the access-logs bucket. Needs objectCreator for group:cloud-storage-analytics@google.com on that bucket, which an organization policy of Domain Restricted Sharing (constraints/iam.allowedPolicyMemberDomains) refuses: set false there (no usage logs; Cloud Audit Logs still record data access when enabled)."
  type        = bool
  default     = true
}
