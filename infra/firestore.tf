# Firestore (native mode) and its indexes.
#
# Collections: teams, users, keys, images, upload_links, jobs, audit,
# histograms, counters (schema in docs/). Single-field indexes are automatic;
# the composite, vector and TTL settings the queries need are declared here.
# The emulator needs none of them (it serves any query), so local runs cannot
# catch a missing index: tests/infra checks this file against
# infra/firestore.indexes.json when that file exists.

resource "google_firestore_database" "default" {
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = coalesce(var.firestore_location, var.region)
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "OPTIMISTIC"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.deletion_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.apis]
}

# --- images: list with filters, newest first (S8) -----------------------------

resource "google_firestore_index" "images_team_created" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "images"
  query_scope = "COLLECTION"

  fields {
    field_path = "team"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

# The repair sweep's stale pending records (ImageStore.stale_pending), oldest first.
resource "google_firestore_index" "images_status_created" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "images"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "ASCENDING"
  }
}

resource "google_firestore_index" "images_team_format_created" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "images"
  query_scope = "COLLECTION"

  fields {
    field_path = "team"
    order      = "ASCENDING"
  }
  fields {
    field_path = "format"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "images_team_camera_created" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "images"
  query_scope = "COLLECTION"

  fields {
    field_path = "team"
    order      = "ASCENDING"
  }
  fields {
    field_path = "camera"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "images_team_labels_created" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "images"
  query_scope = "COLLECTION"

  fields {
    field_path = "team"
    order      = "ASCENDING"
  }
  fields {
    field_path   = "labels"
    array_config = "CONTAINS"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

# ImageStore.list adds each of its filters (format ==, camera ==, labels
# array_contains) only when asked, so any two or all three can come together,
# each with or without a created_at range. An index per combination: merging
# the single-filter indexes above is not documented for a range filter or
# array_contains (tests/infra/test_query_indexes.py).

resource "google_firestore_index" "images_team_format_camera_created" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "images"
  query_scope = "COLLECTION"

  fields {
    field_path = "team"
    order      = "ASCENDING"
  }
  fields {
    field_path = "format"
    order      = "ASCENDING"
  }
  fields {
    field_path = "camera"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "images_team_format_labels_created" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "images"
  query_scope = "COLLECTION"

  fields {
    field_path = "team"
    order      = "ASCENDING"
  }
  fields {
    field_path = "format"
    order      = "ASCENDING"
  }
  fields {
    field_path   = "labels"
    array_config = "CONTAINS"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "images_team_camera_labels_created" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "images"
  query_scope = "COLLECTION"

  fields {
    field_path = "team"
    order      = "ASCENDING"
  }
  fields {
    field_path = "camera"
    order      = "ASCENDING"
  }
  fields {
    field_path   = "labels"
    array_config = "CONTAINS"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "images_team_format_camera_labels_created" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "images"
  query_scope = "COLLECTION"

  fields {
    field_path = "team"
    order      = "ASCENDING"
  }
  fields {
    field_path = "format"
    order      = "ASCENDING"
  }
  fields {
    field_path = "camera"
    order      = "ASCENDING"
  }
  fields {
    field_path   = "labels"
    array_config = "CONTAINS"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

# --- images: semantic search (S10) --------------------------------------------
# ImageStore.nearest: find_nearest over `embedding` (as long as the deployed
# provider's vectors, local.embedding_dimensions; cosine distance chosen at
# query time), pre-filtered on team == and embedding_model == (vectors of
# another model are never compared), so the index leads with those two
# equality fields, in that order, and ends with the vector field.
#
# `__name__` is declared, before `embedding`: Firestore adds it to every
# composite index, after the last ordered field and before a vector field, and
# returns the fields in that order. The provider only ignores an implicit
# `__name__` when it is the LAST field (firestoreIFieldsDiffSuppress), so
# without this block every plan would show a diff and, indexes being
# immutable, replace the index on every apply (hours of rebuilding, search
# failing meanwhile). Ordered ASCENDING like the field before it, as the API
# does.
#
# The same index with the local provider's 384 dimensions (and the same
# fields) is in firestore.indexes.json for the emulator; it is never deployed
# (nothing here or in the deploy scripts reads that file).

resource "google_firestore_index" "images_team_model_embedding" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "images"
  query_scope = "COLLECTION"

  fields {
    field_path = "team"
    order      = "ASCENDING"
  }
  fields {
    field_path = "embedding_model"
    order      = "ASCENDING"
  }
  fields {
    field_path = "__name__"
    order      = "ASCENDING"
  }
  fields {
    field_path = "embedding"
    vector_config {
      dimension = local.embedding_dimensions
      flat {}
    }
  }
}

# --- jobs and audit: per-team listings, newest first ----------------------------

resource "google_firestore_index" "jobs_team_created" {
  project     = var.project_id
  database    = google_firestore_database.default.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "team"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

# --- TTL policies -------------------------------------------------------------
# Documents are deleted (typically within 24 h) once expires_at is in the past.
# The TTL field itself is not indexed: a timestamp that grows monotonically is a
# write hotspot and no query filters on it.

resource "google_firestore_field" "audit_expires_at" {
  project    = var.project_id
  database   = google_firestore_database.default.name
  collection = "audit"
  field      = "expires_at"

  ttl_config {}
  index_config {}
}

resource "google_firestore_field" "histograms_expires_at" {
  project    = var.project_id
  database   = google_firestore_database.default.name
  collection = "histograms"
  field      = "expires_at"

  ttl_config {}
  index_config {}
}

# --- job items by input image (deleting an image deletes its job outputs) -----
# JobStore.items_for_image is a collection-group query (jobs/*/items) on
# image_id ==. Single-field indexes are automatic for collection scope only;
# this override adds the COLLECTION_GROUP one (and, since an override replaces
# the automatic settings of the field, keeps the collection-scope one).

resource "google_firestore_field" "items_image_id" {
  project    = var.project_id
  database   = google_firestore_database.default.name
  collection = "items"
  field      = "image_id"

  index_config {
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION"
    }
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION_GROUP"
    }
  }
}
