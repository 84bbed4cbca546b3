# Aperture: shared names and THE function table.
#
# Adding a function is one entry in local.functions (plus its thin entry point
# in functions/main.py): the function, its dedicated service account, its IAM
# grants, its trigger and, for HTTP functions, the API Gateway invoker grant are
# all derived from the entry.

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

  topics = {
    jobs = google_pubsub_topic.jobs
  }
  secrets = {
    signing_key = google_secret_manager_secret.signing_key
  }

  # Environment every function gets (names are a contract with functions/aperture).
  common_env = {
    GOOGLE_CLOUD_PROJECT    = var.project_id
    APERTURE_SOURCE_BUCKET  = local.source_bucket_name
    APERTURE_UPLOADS_BUCKET = google_storage_bucket.uploads.name
    APERTURE_DERIVED_BUCKET = google_storage_bucket.derived.name
    APERTURE_JOBS_TOPIC     = google_pubsub_topic.jobs.name
    APERTURE_PROVIDER       = local.vision_provider
    APERTURE_KEY_ISSUER     = "google"
    APERTURE_REGION         = var.region
    APERTURE_ENABLE_GPS     = var.enable_gps ? "1" : "0"
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
  #   entry_point      function in functions/main.py
  #   kind             http   : behind API Gateway, invoked only by the gateway's SA
  #                    event  : CloudEvent on object finalize in trigger_buckets
  #                    pubsub : CloudEvent from a push subscription on trigger_topic
  #   memory/cpu/timeout/max_instances/concurrency   Cloud Run sizing
  #   env              extra environment (merged over local.common_env)
  #   secrets          ENV_NAME => key of local.secrets (latest version)
  #   buckets          bucket key => role, granted on that bucket only
  #   topics           topic key => role, granted on that topic only
  #   project_roles    roles that only exist project-wide
  #   sign_urls        may sign V4 URLs as itself (signBlob on its own SA)
  #   trigger_buckets  kind=event: buckets whose finalize events it receives
  #   trigger_topic    kind=pubsub: topic key it consumes
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
      secrets         = {}
      buckets         = { source = "roles/storage.objectViewer", uploads = "roles/storage.objectViewer" }
      topics          = {}
      project_roles   = ["roles/datastore.user"]
      sign_urls       = false
      trigger_buckets = []
      trigger_topic   = ""
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
      secrets         = {}
      buckets         = { source = "roles/storage.objectViewer", uploads = "roles/storage.objectUser" }
      topics          = {}
      project_roles   = ["roles/datastore.user", "roles/eventarc.eventReceiver", "roles/aiplatform.user"]
      sign_urls       = false
      trigger_buckets = ["uploads", "source"]
      trigger_topic   = ""
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
      secrets         = { APERTURE_SIGNING_KEY = "signing_key" }
      buckets         = { uploads = "roles/storage.objectUser" }
      topics          = {}
      project_roles   = ["roles/datastore.user"]
      sign_urls       = true
      trigger_buckets = []
      trigger_topic   = ""
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
      secrets         = {}
      buckets         = { uploads = "roles/storage.objectUser", derived = "roles/storage.objectUser" }
      topics          = {}
      project_roles   = ["roles/datastore.user"]
      sign_urls       = false
      trigger_buckets = []
      trigger_topic   = ""
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
      secrets         = {}
      buckets         = {}
      topics          = {}
      project_roles   = ["roles/datastore.user", "roles/serviceusage.apiKeysAdmin"]
      sign_urls       = false
      trigger_buckets = []
      trigger_topic   = ""
    }
    jobs = {
      entry_point     = "jobs"
      kind            = "http"
      memory          = "512Mi"
      cpu             = "1"
      timeout         = 60
      max_instances   = 10
      concurrency     = 20
      env             = {}
      secrets         = {}
      buckets         = { derived = "roles/storage.objectViewer" }
      topics          = { jobs = "roles/pubsub.publisher" }
      project_roles   = ["roles/datastore.user"]
      sign_urls       = true
      trigger_buckets = []
      trigger_topic   = ""
    }
    search = {
      entry_point   = "search"
      kind          = "http"
      memory        = "1Gi"
      cpu           = "1"
      timeout       = 60
      max_instances = 10
      concurrency   = 8
      env           = {}
      secrets       = {}
      buckets       = {}
      topics        = {}
      # Vertex AI embeds the query text into the same space as the images.
      project_roles   = ["roles/datastore.user", "roles/aiplatform.user"]
      sign_urls       = false
      trigger_buckets = []
      trigger_topic   = ""
    }
    web = {
      entry_point     = "web"
      kind            = "http"
      memory          = "256Mi"
      cpu             = "1"
      timeout         = 30
      max_instances   = 5
      concurrency     = 40
      env             = {}
      secrets         = {}
      buckets         = {}
      topics          = {}
      project_roles   = []
      sign_urls       = false
      trigger_buckets = []
      trigger_topic   = ""
    }
    transform = {
      entry_point     = "transform"
      kind            = "pubsub"
      memory          = "2Gi"
      cpu             = "1"
      timeout         = 540
      max_instances   = 20
      concurrency     = 1
      env             = {}
      secrets         = {}
      buckets         = { source = "roles/storage.objectViewer", uploads = "roles/storage.objectViewer", derived = "roles/storage.objectUser" }
      topics          = {}
      project_roles   = ["roles/datastore.user"]
      sign_urls       = false
      trigger_buckets = []
      trigger_topic   = "jobs"
    }
  }

  http_functions   = { for name, f in local.functions : name => f if f.kind == "http" }
  event_functions  = { for name, f in local.functions : name => f if f.kind == "event" }
  pubsub_functions = { for name, f in local.functions : name => f if f.kind == "pubsub" }

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
  function_topic_roles = merge({}, [
    for name, f in local.functions : {
      for t, role in f.topics : "${name}/${t}" => { function = name, topic = t, role = role }
    }
  ]...)
  function_project_roles = merge({}, [
    for name, f in local.functions : {
      for role in f.project_roles : "${name}/${role}" => { function = name, role = role }
    }
  ]...)
  function_secrets = merge({}, [
    for name, f in local.functions : {
      for env, s in f.secrets : "${name}/${s}" => { function = name, secret = s }
    }
  ]...)
}

data "google_project" "this" {
  project_id = var.project_id
}
