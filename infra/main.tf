# Aperture: shared names and THE function table.
#
# The functions that exist are those of the registry in
# functions/aperture/functions.py (FUNCTIONS); functions/main.py has one entry
# point per registry entry, the local stack starts one process per entry, and
# local.functions below has exactly one entry per registry entry, with the same
# name, entry point and trigger kind (tests/infra/test_terraform.py checks all
# four agree). A function that is not in the registry is not deployed.
#
# Adding a function: its registry entry, its entry point in main.py and one
# entry here. The function, its dedicated service account, its IAM grants, its
# trigger and, for HTTP functions, the API Gateway invoker grant are all
# derived from the entry.

locals {
  labels = merge({ app = "aperture", managed-by = "terraform" }, var.labels)
  prefix = var.name_prefix

  # The vision provider the functions use in the cloud (S7) and the length of
  # its embeddings (aperture.vision_cloud: Vertex AI multimodal embeddings at
  # 512): the vector index on images.embedding must be built for exactly that.
  vision_provider      = "cloud"
  embedding_dimensions = 512

  create_source_bucket = var.source_bucket == ""
  source_bucket_name   = local.create_source_bucket ? google_storage_bucket.source[0].name : var.source_bucket

  # Bucket roles in local.functions name buckets by these keys.
  buckets = {
    source  = local.source_bucket_name
    uploads = google_storage_bucket.uploads.name
    derived = google_storage_bucket.derived.name
  }
  # Eventarc storage triggers live in the bucket's location.
  bucket_locations = {
    source  = lower(local.create_source_bucket ? var.region : coalesce(var.source_bucket_location, var.region))
    uploads = lower(var.region)
    derived = lower(var.region)
  }
  # Buckets whose IAM this configuration owns (never a foreign source bucket).
  managed_buckets = local.create_source_bucket ? ["source", "uploads", "derived"] : ["uploads", "derived"]

  # Environment every function gets. Every APERTURE_* name here is a field of
  # aperture.config.Config, which refuses undeclared APERTURE_* variables at
  # start-up (tests/infra/test_terraform.py checks the names).
  common_env = {
    GOOGLE_CLOUD_PROJECT    = var.project_id
    APERTURE_SOURCE_BUCKET  = local.source_bucket_name
    APERTURE_UPLOADS_BUCKET = google_storage_bucket.uploads.name
    APERTURE_DERIVED_BUCKET = google_storage_bucket.derived.name
    APERTURE_PROVIDER       = local.vision_provider
    APERTURE_KEY_ISSUER     = "google"
    APERTURE_REGION         = var.region
    APERTURE_AUDIT_TTL_DAYS = tostring(var.audit_retention_days)
    # Google API keys the admin function creates are restricted to this service.
    APERTURE_API_SERVICE = google_api_gateway_api.aperture.managed_service
    # Signed URLs are signed by the function's own account (IAM signBlob), and
    # upload links point clients at the gateway, never at a function.
    APERTURE_URL_SIGNER = "iam"
    APERTURE_PUBLIC_URL = "https://${google_api_gateway_gateway.aperture.default_hostname}"
    LOG_EXECUTION_ID    = "true"
  }

  # ---------------------------------------------------------------------------
  # The function table. Keys are the deployed function names, which
  # infra/openapi.yaml addresses as https://REGION-PROJECT.cloudfunctions.net/KEY.
  #
  #   entry_point      function in functions/main.py (the registry's name)
  #   kind             http  : registry trigger "http"; behind API Gateway,
  #                            invoked only by the gateway's SA
  #                    event : registry trigger "cloudevent"; the registry's
  #                            event_type (object finalize) in trigger_buckets
  #   memory/cpu/timeout/max_instances/concurrency   Cloud Run sizing
  #   env              extra environment (merged over local.common_env; APERTURE_*
  #                    names must be Config fields too)
  #   buckets          bucket key => role, granted on that bucket only
  #   project_roles    roles that only exist project-wide
  #   sign_urls        may sign V4 URLs as itself (signBlob on its own SA)
  #   trigger_buckets  kind=event: buckets whose finalize events it receives
  # ---------------------------------------------------------------------------
  functions = {
    stats = {
      entry_point     = "stats"
      kind            = "http"
      memory          = "2Gi"
      cpu             = "1"
      timeout         = 120
      max_instances   = 20
      concurrency     = 4
      env             = {}
      buckets         = { source = "roles/storage.objectViewer", uploads = "roles/storage.objectViewer" }
      project_roles   = ["roles/datastore.user"]
      sign_urls       = false
      trigger_buckets = []
    }
    admin = {
      entry_point     = "admin"
      kind            = "http"
      memory          = "512Mi"
      cpu             = "1"
      timeout         = 60
      max_instances   = 5
      concurrency     = 20
      env             = {}
      buckets         = {}
      project_roles   = ["roles/datastore.user", "roles/serviceusage.apiKeysAdmin"]
      sign_urls       = false
      trigger_buckets = []
    }
    upload = {
      entry_point     = "upload"
      kind            = "http"
      memory          = "2Gi"
      cpu             = "1"
      timeout         = 300
      max_instances   = 20
      concurrency     = 4
      env             = {}
      buckets         = { uploads = "roles/storage.objectUser" }
      project_roles   = ["roles/datastore.user"]
      sign_urls       = true
      trigger_buckets = []
    }
    images = {
      entry_point     = "images"
      kind            = "http"
      memory          = "2Gi"
      cpu             = "1"
      timeout         = 120
      max_instances   = 20
      concurrency     = 4
      env             = {}
      buckets         = { uploads = "roles/storage.objectUser", derived = "roles/storage.objectUser" }
      project_roles   = ["roles/datastore.user"]
      sign_urls       = false
      trigger_buckets = []
    }
    process = {
      entry_point     = "process"
      kind            = "event"
      memory          = "4Gi"
      cpu             = "2"
      timeout         = 540
      max_instances   = 20
      concurrency     = 1
      env             = {}
      buckets         = { source = "roles/storage.objectViewer", uploads = "roles/storage.objectUser" }
      project_roles   = ["roles/datastore.user", "roles/eventarc.eventReceiver", "roles/aiplatform.user"]
      sign_urls       = false
      trigger_buckets = ["uploads", "source"]
    }
  }

  http_functions  = { for name, f in local.functions : name => f if f.kind == "http" }
  event_functions = { for name, f in local.functions : name => f if f.kind == "event" }

  # Buckets each event function listens to; a foreign source bucket is skipped
  # when var.source_bucket_trigger is false.
  event_buckets = {
    for name, f in local.event_functions : name => [
      for b in f.trigger_buckets : b if b != "source" || var.source_bucket_trigger
    ]
  }
  # A gen2 function carries ONE event_trigger (the first bucket); every further
  # bucket gets a google_eventarc_trigger aimed at the same Cloud Run service.
  primary_event_bucket = {
    for name, buckets in local.event_buckets : name => buckets[0] if length(buckets) > 0
  }
  extra_bucket_triggers = merge({}, [
    for name, buckets in local.event_buckets : {
      for b in slice(buckets, min(1, length(buckets)), length(buckets)) : "${name}-${b}" => { function = name, bucket = b }
    }
  ]...)

  # Flattened IAM grants derived from the table.
  function_bucket_roles = merge({}, [
    for name, f in local.functions : {
      for b, role in f.buckets : "${name}/${b}" => { function = name, bucket = b, role = role }
      if contains(local.managed_buckets, b)
    }
  ]...)
  function_project_roles = merge({}, [
    for name, f in local.functions : {
      for role in f.project_roles : "${name}/${role}" => { function = name, role = role }
    }
  ]...)
}

data "google_project" "this" {
  project_id = var.project_id
}
