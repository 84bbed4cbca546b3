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
# trigger (Eventarc for bucket events, a Pub/Sub push subscription with a
# dead-letter topic for topic messages) and, for HTTP functions, the API
# Gateway invoker grant are all derived from the entry.

locals {
  labels = merge({ app = "aperture", managed-by = "terraform" }, var.labels)
  prefix = var.name_prefix

  # The vision provider the functions use in the cloud (S7) and the length of
  # its embeddings (aperture.vision.cloud.DEFAULT_DIMENSION: Vertex AI
  # multimodal embeddings at 512): the vector index on images.embedding
  # (firestore.tf) must be built for exactly that. The local provider's 384-d
  # index lives in firestore.indexes.json, for the emulator only.
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

  # Pub/Sub work queues (pubsub.tf), by the keys local.functions uses (topics,
  # trigger_topic). Each gets a dead-letter topic "<name>-dead-letter". The jobs
  # topic carries one message per batch-job item (S9); the repair topic one tick
  # per repair sweep, published by Cloud Scheduler (scheduler.tf). With the
  # default prefix the names are aperture.config.Config's defaults and the local
  # stack's.
  topics = {
    jobs   = "${local.prefix}-jobs"
    repair = "${local.prefix}-repair"
  }
  # Topics whose messages wait for an operator, not for a function (pubsub.tf):
  # each has a pull subscription "<name>-hold" that keeps them 7 days. The
  # processing dead-letter topic gets one message per team image `process` gave
  # up on (Eventarc owns the storage trigger's subscription, so no dead-letter
  # policy can do it). Table entries name them in `topics` like the queues.
  held_topics = {
    process_dead_letter = "${local.prefix}-process-dead-letter"
  }
  # Every topic a function may be granted a role on, by key: its name.
  topic_names = merge(
    { for key, topic in google_pubsub_topic.queue : key => topic.name },
    { for key, topic in google_pubsub_topic.held : key => topic.name },
  )
  # Deliveries of a queue message before Pub/Sub moves it to the dead-letter
  # topic (as scripts/devstack does locally); the dead letter is pushed to the
  # same function, which marks the item failed.
  max_delivery_attempts = 5

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
    # The batch-job queue (only `jobs` publishes to it, the only grant on it);
    # set for every function so that each one's Config names the real topic.
    APERTURE_JOBS_TOPIC = google_pubsub_topic.queue["jobs"].name
    # Where `process` (and `repair`, which re-runs it) publishes the team images it
    # gave up on; publisher on it is granted to those two only.
    APERTURE_PROCESS_DEAD_LETTER_TOPIC = google_pubsub_topic.held["process_dead_letter"].name
    LOG_EXECUTION_ID                   = "true"
  }

  # ---------------------------------------------------------------------------
  # The function table. Keys are the deployed function names, which
  # infra/openapi.yaml addresses as https://REGION-PROJECT.cloudfunctions.net/KEY.
  #
  #   entry_point      function in functions/main.py (the registry's name)
  #   kind             http  : registry trigger "http"; behind API Gateway,
  #                            invoked only by the gateway's SA
  #                    event : registry trigger "cloudevent"; EITHER the
  #                            registry's event_type object finalize from
  #                            trigger_buckets (Eventarc) OR messagePublished
  #                            from trigger_topic (Pub/Sub push)
  #   memory/cpu/timeout/max_instances/concurrency   Cloud Run sizing (below)
  #   env              extra environment (merged over local.common_env; APERTURE_*
  #                    names must be Config fields too)
  #   buckets          bucket key => role, granted on that bucket only
  #   topics           topic key (local.topics or local.held_topics) => role,
  #                    granted on that topic only
  #   project_roles    roles that only exist project-wide
  #   sign_urls        may sign V4 URLs as itself (signBlob on its own SA)
  #   trigger_buckets  kind=event: buckets whose finalize events it receives
  #   trigger_topic    kind=event: topic key whose messages are pushed to it,
  #                    dead-lettered after local.max_delivery_attempts ("" none)
  #   link_secret      signs or checks image links: APERTURE_LINK_SECRET from
  #                    Secret Manager (secrets.tf), readable by it alone
  #
  # Sizing: from the MEASURED peak memory of each function's heaviest path on
  # a 100 MP image (APERTURE_MAX_PIXELS), scripts/bench/memory.py, whose table
  # is in docs/deployment.md ("Sizing"). An instance holds its runtime
  # (baseline) plus, per request in flight, what that request adds; memory is
  # at least 1.25 x (baseline + concurrency x request), rounded up to a tier
  # (tests/infra/test_sizing.py reads the table and checks every entry):
  #   stats     2 vCPU (the JPEG decode runs on two cores, docs/stats.md),
  #             4 x 499 MiB cold decodes -> 4Gi
  #   upload    4 x 384 MiB (a 100 MP PNG validated) -> 2Gi
  #   images    a 100 MP JPEG converted to a full-size PNG: 906 MiB; 3 -> 4Gi
  #   search    re-embedding decodes the image: 913 MiB; 3 -> 4Gi
  #   process   913 MiB, one event at a time -> 2Gi (2 vCPU: decode, histograms
  #             and the two vision calls overlap)
  #   transform 874 MiB (resize=50 + split + blur), one item at a time -> 2Gi
  #   repair    re-processes stale records one at a time, like process: 2Gi
  #   admin, jobs  no pixels: small JSON and Firestore
  #   web       static files only
  # Minimum instances are 0 unless var.min_instances names the function.
  # ---------------------------------------------------------------------------
  functions = {
    stats = {
      entry_point     = "stats"
      kind            = "http"
      memory          = "4Gi"
      cpu             = "2"
      timeout         = 120
      max_instances   = 20
      concurrency     = 4
      env             = {}
      buckets         = { source = "roles/storage.objectViewer", uploads = "roles/storage.objectViewer" }
      topics          = {}
      project_roles   = ["roles/datastore.user"]
      sign_urls       = false
      trigger_buckets = []
      trigger_topic   = ""
      link_secret     = false
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
      topics          = {}
      project_roles   = ["roles/datastore.user", local.key_issuer_role]
      sign_urls       = false
      trigger_buckets = []
      trigger_topic   = ""
      link_secret     = false
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
      topics          = {}
      project_roles   = ["roles/datastore.user"]
      sign_urls       = true
      trigger_buckets = []
      trigger_topic   = ""
      link_secret     = false
    }
    # Downloads and conversions; a body over API Gateway's 32 MiB response cap
    # (APERTURE_MAX_RESPONSE_BYTES) is written to derived (create-only,
    # content-addressed, under responses/) and answered with a redirect to a
    # V4 signed URL, signed as itself (sign_urls).
    images = {
      entry_point     = "images"
      kind            = "http"
      memory          = "4Gi"
      cpu             = "1"
      timeout         = 120
      max_instances   = 20
      concurrency     = 3
      env             = {}
      buckets         = { uploads = "roles/storage.objectUser", derived = "roles/storage.objectUser" }
      topics          = {}
      project_roles   = ["roles/datastore.user"]
      sign_urls       = true
      trigger_buckets = []
      trigger_topic   = ""
      link_secret     = true
    }
    # Semantic search (S10): GET /v1/search, /v1/search/model,
    # /v1/images/{id}/similar and POST /v1/images/{id}/embedding (re-embedding,
    # `aperture reindex`). Queries are embedded by the cloud provider (Vertex AI
    # multimodal embeddings: aiplatform.user, as `process` has) and matched with
    # find_nearest over images (Firestore; the vector index in firestore.tf).
    # Re-embedding reads the image from uploads (objectViewer: it never writes
    # an object) and calls Cloud Vision and Vertex AI, like `process`. The models
    # run at Google, not in the instance: memory is for decoding one image up to
    # APERTURE_MAX_PIXELS per request in flight (913 MiB measured for 100 MP,
    # the image, its normalized copy and the 1600 px JPEG sent to Vertex). A
    # search is at most one Vertex AI call (repeated queries come from the
    # per-instance LRU) and one vector query: 10 instances of 3 are plenty for
    # interactive search, and beyond that Vertex AI's per-minute quota, not
    # instances, is the limit. `aperture reindex` sends one request at a time.
    search = {
      entry_point     = "search"
      kind            = "http"
      memory          = "4Gi"
      cpu             = "1"
      timeout         = 120
      max_instances   = 10
      concurrency     = 3
      env             = {}
      buckets         = { uploads = "roles/storage.objectViewer" }
      topics          = {}
      project_roles   = ["roles/datastore.user", "roles/aiplatform.user"]
      sign_urls       = false
      trigger_buckets = []
      trigger_topic   = ""
      link_secret     = true
    }
    # Batch jobs (S9): reads images/jobs in Firestore and job outputs in the
    # derived bucket (downloads); publishes one message per item to the jobs
    # topic, the only Pub/Sub grant it has. It never reads uploads: inputs are
    # resolved from Firestore and read by `transform`.
    jobs = {
      entry_point     = "jobs"
      kind            = "http"
      memory          = "1Gi"
      cpu             = "1"
      timeout         = 120
      max_instances   = 10
      concurrency     = 8
      env             = {}
      buckets         = { derived = "roles/storage.objectViewer" }
      topics          = { jobs = "roles/pubsub.publisher" }
      project_roles   = ["roles/datastore.user"]
      sign_urls       = false
      trigger_buckets = []
      trigger_topic   = ""
      link_secret     = true
    }
    # The web page and Swagger UI (S11): static files packed in the function
    # source, no data access of its own (the page calls the API with the key
    # the user enters), so no bucket, topic or Firestore grant.
    web = {
      entry_point     = "web"
      kind            = "http"
      memory          = "256Mi"
      cpu             = "1"
      timeout         = 60
      max_instances   = 5
      concurrency     = 40
      env             = {}
      buckets         = {}
      topics          = {}
      project_roles   = []
      sign_urls       = false
      trigger_buckets = []
      trigger_topic   = ""
      link_secret     = false
    }
    process = {
      entry_point     = "process"
      kind            = "event"
      memory          = "2Gi"
      cpu             = "2"
      timeout         = 540
      max_instances   = 20
      concurrency     = 1
      env             = {}
      buckets         = { source = "roles/storage.objectViewer", uploads = "roles/storage.objectUser" }
      topics          = { process_dead_letter = "roles/pubsub.publisher" }
      project_roles   = ["roles/datastore.user", "roles/eventarc.eventReceiver", "roles/aiplatform.user"]
      sign_urls       = false
      trigger_buckets = ["uploads", "source"]
      trigger_topic   = ""
      link_secret     = false
    }
    # One batch-job item per message of the jobs topic (Pub/Sub push,
    # pubsub.tf). Reads the input from uploads; writes outputs to derived
    # create-only (ObjectStore.create, ifGenerationMatch=0). objectUser, not
    # objectCreator: a redelivered item meets its own earlier output, and Cloud
    # Storage may answer a create over an existing name with 403 rather than the
    # 412 we handle when the caller cannot read the object. Reads/writes jobs
    # and jobs/*/items in Firestore. Not
    # Eventarc: no eventReceiver. Its timeout is the subscription's ack deadline.
    transform = {
      entry_point     = "transform"
      kind            = "event"
      memory          = "2Gi"
      cpu             = "1"
      timeout         = 300
      max_instances   = var.transform_max_instances
      concurrency     = 1
      env             = {}
      buckets         = { uploads = "roles/storage.objectViewer", derived = "roles/storage.objectUser" }
      topics          = {}
      project_roles   = ["roles/datastore.user"]
      sign_urls       = false
      trigger_buckets = []
      trigger_topic   = "jobs"
      link_secret     = false
    }
    # The repair sweep (functions/aperture/services/repair.py), one per tick of
    # the repair topic, which Cloud Scheduler publishes to every 15 minutes
    # (scheduler.tf; Pub/Sub push, pubsub.tf). It processes stale pending
    # records again, so it has what `process` has for a team image: Firestore,
    # Vertex AI (embeddings), objectUser on uploads (it also deletes orphan
    # objects by generation and copies one back) and publisher on the processing
    # dead-letter topic; and what deleting an image whose object is gone takes:
    # objectUser on derived (its renditions and job outputs). No source bucket
    # (it looks at teams/ in uploads only), no eventReceiver (not Eventarc).
    # Sized like `process` ("repair-cloud" in docs/deployment.md): it decodes one
    # image at a time, on one vCPU (background work). One instance: a tick every
    # 15 minutes needs no second, and two sweeps at once would only repeat each
    # other's idempotent work. The timeout is the longest an event function may
    # run and the subscription's ack deadline; a longer sweep is cut and its
    # tick redelivered, and the next sweep finds what is still out of step.
    repair = {
      entry_point     = "repair"
      kind            = "event"
      memory          = "2Gi"
      cpu             = "1"
      timeout         = 540
      max_instances   = 1
      concurrency     = 1
      env             = {}
      buckets         = { uploads = "roles/storage.objectUser", derived = "roles/storage.objectUser" }
      topics          = { process_dead_letter = "roles/pubsub.publisher" }
      project_roles   = ["roles/datastore.user", "roles/aiplatform.user"]
      sign_urls       = false
      trigger_buckets = []
      trigger_topic   = "repair"
      link_secret     = false
    }
  }

  http_functions  = { for name, f in local.functions : name => f if f.kind == "http" }
  event_functions = { for name, f in local.functions : name => f if f.kind == "event" }
  # Event functions by transport: Eventarc (bucket events) or a Pub/Sub push
  # subscription (topic messages). Each event function has exactly one.
  eventarc_functions = { for name, f in local.event_functions : name => f if length(f.trigger_buckets) > 0 }
  push_functions     = { for name, f in local.event_functions : name => f if f.trigger_topic != "" }

  # Buckets each event function listens to; a foreign source bucket is skipped
  # when var.source_bucket_trigger is false.
  event_buckets = {
    for name, f in local.event_functions : name => [
      for b in f.trigger_buckets : b if b != "source" || var.source_bucket_trigger
    ]
  }
  # A gen2 function carries ONE event_trigger (the first bucket); every further
  # bucket gets a google_eventarc_trigger aimed at the same Cloud Run service.
  # On Cloud Run (var.target = "run") a service has no trigger of its own: every
  # bucket gets an Eventarc trigger (run_bucket_triggers, cloudrun.tf).
  primary_event_bucket = {
    for name, buckets in local.event_buckets : name => buckets[0] if length(buckets) > 0
  }
  extra_bucket_triggers = merge({}, [
    for name, buckets in local.event_buckets : {
      for b in slice(buckets, min(1, length(buckets)), length(buckets)) : "${name}-${b}" => { function = name, bucket = b }
    } if var.target == "functions"
  ]...)
  run_bucket_triggers = merge({}, [
    for name, buckets in local.event_buckets : {
      for b in buckets : "${name}-${b}" => { function = name, bucket = b }
    } if var.target == "run"
  ]...)

  # Where the functions run (var.target): one Cloud Functions gen2 function per
  # entry (functions.tf) or one Cloud Run service per entry from the Dockerfile
  # image (cloudrun.tf). Exactly one of the two holds every function, the other
  # none. (for-expressions, not `cond ? local.functions : {}`: the entries are
  # objects of different shapes, which a conditional cannot unify with {}.)
  cloud_functions = { for name, f in local.functions : name => f if var.target == "functions" }
  run_functions   = { for name, f in local.functions : name => f if var.target == "run" }
  # Instances kept warm, per function (var.min_instances; 0 when not named).
  min_instances = { for name, f in local.functions : name => lookup(var.min_instances, name, 0) }
  # The Cloud Run service (bare name) and URL of each function, whichever
  # target runs it: a gen2 function is a Cloud Run service of the same name
  # (service_config[0].service is its full resource name). IAM invoker
  # bindings, push subscriptions and outputs use these.
  function_services = merge(
    { for name, f in google_cloudfunctions2_function.function : name => regex("[^/]+$", f.service_config[0].service) },
    { for name, s in google_cloud_run_v2_service.function : name => s.name },
  )
  function_urls = merge(
    { for name, f in google_cloudfunctions2_function.function : name => f.service_config[0].uri },
    { for name, s in google_cloud_run_v2_service.function : name => s.uri },
  )

  # The admin function creates and deletes Google API keys (S5) through a
  # custom role with only the four permissions that takes (iam.tf).
  key_issuer_role_id = "${replace(local.prefix, "-", "_")}_key_issuer"
  key_issuer_role    = "projects/${var.project_id}/roles/${local.key_issuer_role_id}"

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
}

data "google_project" "this" {
  project_id = var.project_id
}
