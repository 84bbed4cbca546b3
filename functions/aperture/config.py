"""Every setting of Aperture, declared once with its default and description.

Settings come from environment variables only (Cloud Functions sets them from
Terraform; the local stack sets them from scripts/devstack). Nothing else in
the package reads os.environ: the composition root (`aperture.container`)
reads a `Config` once and hands each part the settings it needs. An
`APERTURE_*` variable that no field declares is refused at start-up, so a
misspelt or stale setting cannot be silently ignored.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "APERTURE_"
# Variables of the same prefix that clients read, never the functions: the CLI's
# target and key (aperture.cli) and `make run`'s gateway port (scripts/devstack).
CLIENT_VARIABLES = ("APERTURE_URL", "APERTURE_API_KEY", "APERTURE_GATEWAY_PORT")


def _setting(env: str, default: Any, description: str) -> Any:
    return field(default=default, metadata={"env": env, "description": description})


@dataclass(frozen=True)
class Config:
    project: str = _setting(
        "GOOGLE_CLOUD_PROJECT", "aperture-local", "Google Cloud project id (also the emulators' project)."
    )
    source_bucket: str = _setting(
        "APERTURE_SOURCE_BUCKET",
        "aperture-source",
        "Bucket that /stats/{image}/{func} reads; may be a public bucket such as seetree-demo-open.",
    )
    source_anonymous: bool = _setting(
        "APERTURE_SOURCE_ANONYMOUS",
        False,
        "Read the source bucket without credentials (for public buckets owned by someone else).",
    )
    uploads_bucket: str = _setting("APERTURE_UPLOADS_BUCKET", "aperture-uploads", "Bucket holding team uploads.")
    derived_bucket: str = _setting(
        "APERTURE_DERIVED_BUCKET", "aperture-derived", "Bucket for outputs the system writes (never re-processed)."
    )
    max_pixels: int = _setting(
        "APERTURE_MAX_PIXELS",
        100_000_000,
        "Largest width*height decoded; bigger images answer 422 (decompression-bomb guard).",
    )
    max_wide_stats_pixels: int = _setting(
        "APERTURE_MAX_WIDE_STATS_PIXELS",
        25_000_000,
        "Largest width*height of a 32-bit integer or float image whose exact statistics are computed (422 "
        "above): every distinct value costs ~35 bytes while counting, so 25 MP is ~0.9 GiB, four at once on the "
        "4 GiB stats instance. Processing such an image stores no histograms.",
    )
    stats_lookup_min_pixels: int = _setting(
        "APERTURE_STATS_LOOKUP_MIN_PIXELS",
        2_000_000,
        "Smallest width*height whose first statistics request waits for the histograms stored in Firestore; "
        "a smaller image is decoded and counted instead (about as fast as a Firestore read, and not slowed by it).",
    )
    stats_memory_entries: int = _setting(
        "APERTURE_STATS_MEMORY_ENTRIES",
        512,
        "Most images whose histograms the in-process LRU cache keeps per instance (each counts as at least "
        "APERTURE_STATS_MEMORY_BYTES / this many bytes).",
    )
    stats_memory_bytes: int = _setting(
        "APERTURE_STATS_MEMORY_BYTES",
        256 * 1024 * 1024,
        "Bytes of histograms the in-process LRU cache keeps per instance (and per cache: source and team "
        "statistics have one each); an image's histograms larger than this are not kept in memory.",
    )
    max_output_pixels: int = _setting(
        "APERTURE_MAX_OUTPUT_PIXELS",
        100_000_000,
        "Largest width*height of any image a conversion or job operation makes, intermediate or final (400 above).",
    )
    max_render_bytes: int = _setting(
        "APERTURE_MAX_RENDER_BYTES",
        1024 * 1024 * 1024,
        "Largest memory one conversion or job item is estimated to need, from the header and the plan, before "
        "decoding (400 above); 1 GiB fits the images function's 4 GiB instance at concurrency 3.",
    )
    stats_cache_control: str = _setting(
        "APERTURE_STATS_CACHE_CONTROL",
        "public, no-cache",
        "Cache-Control of stats answers: caches keep them but revalidate by ETag, so an overwrite is never stale.",
    )
    histogram_ttl_days: int = _setting(
        "APERTURE_HISTOGRAM_TTL_DAYS", 30, "Days a stored histogram lives before the Firestore TTL policy drops it."
    )
    histogram_max_bytes: int = _setting(
        "APERTURE_HISTOGRAM_MAX_BYTES",
        900_000,
        "Largest serialized histogram stored in Firestore (documents are capped at 1 MiB).",
    )
    max_process_attempts: int = _setting(
        "APERTURE_MAX_PROCESS_ATTEMPTS",
        5,
        "Attempts `process` makes at a team image that fails for a passing reason before it marks the record failed.",
    )
    repair_stale_minutes: int = _setting(
        "APERTURE_REPAIR_STALE_MINUTES",
        30,
        "Age after which the repair sweep treats a pending record, or an object under teams/ with no record, "
        "as out of step (an upload or its processing would have finished by then).",
    )
    repair_budget_seconds: int = _setting(
        "APERTURE_REPAIR_BUDGET_SECONDS",
        300,
        "Seconds after which a repair sweep takes up no new record, object, team or tombstone (the rest is the "
        "next run's), so that it ends inside the repair function's 540 s timeout.",
    )
    repair_page_size: int = _setting(
        "APERTURE_REPAIR_PAGE_SIZE",
        200,
        "Stale records, objects and expired tombstones the repair sweep looks at per run, each.",
    )
    repair_teams_per_run: int = _setting(
        "APERTURE_REPAIR_TEAMS_PER_RUN", 5, "Teams whose counters the repair sweep checks per run (in turn)."
    )
    repair_team_images: int = _setting(
        "APERTURE_REPAIR_TEAM_IMAGES",
        10_000,
        "Largest team (processed images) whose counters the repair sweep checks; larger ones are skipped.",
    )
    tombstone_seconds: int = _setting(
        "APERTURE_TOMBSTONE_SECONDS",
        86_400,
        "How long a deleted image's tombstone is kept (uploads and processing in flight check it).",
    )
    max_camera_keys: int = _setting(
        "APERTURE_MAX_CAMERA_KEYS",
        100,
        "Distinct cameras a team's counters keep; images of further cameras are counted under 'other'.",
    )
    key_issuer: str = _setting(
        "APERTURE_KEY_ISSUER",
        "local",
        "Who creates API key strings: local (generated here) or google (API Keys API, checked by API Gateway).",
    )
    api_service: str = _setting(
        "APERTURE_API_SERVICE",
        "",
        "API Gateway's managed service name; Google API keys are restricted to it.",
    )
    audit_ttl_days: int = _setting(
        "APERTURE_AUDIT_TTL_DAYS", 90, "Days an audit record lives before the Firestore TTL policy drops it."
    )
    key_touch_seconds: int = _setting(
        "APERTURE_KEY_TOUCH_SECONDS",
        60,
        "A key's last-used time is rewritten at most this often (one write per key, not per request).",
    )
    key_cache_seconds: int = _setting(
        "APERTURE_KEY_CACHE_SECONDS",
        5,
        "Seconds an instance remembers a key record it read, so most requests skip the Firestore read; a key "
        "revoked through another instance stops here within this bound (through this one: at once). 0: no cache.",
    )
    key_cache_entries: int = _setting(
        "APERTURE_KEY_CACHE_ENTRIES",
        10_000,
        "Key records an instance remembers at most (the least recently used go first).",
    )
    max_json_bytes: int = _setting("APERTURE_MAX_JSON_BYTES", 65_536, "Largest JSON request body accepted (413 above).")
    max_file_bytes: int = _setting(
        "APERTURE_MAX_FILE_BYTES", 25 * 1024 * 1024, "Largest single uploaded file (413 above)."
    )
    max_request_bytes: int = _setting(
        "APERTURE_MAX_REQUEST_BYTES",
        32 * 1024 * 1024,
        "Largest upload request body (413 above); Cloud Functions caps requests at 32 MiB.",
    )
    max_files_per_request: int = _setting("APERTURE_MAX_FILES_PER_REQUEST", 100, "Files in one upload request.")
    max_response_bytes: int = _setting(
        "APERTURE_MAX_RESPONSE_BYTES",
        30 * 1024 * 1024,
        "Largest download body answered directly; API Gateway refuses responses over 32 MiB, so a larger one "
        "is copied to the derived bucket and answered with a redirect to a signed URL (0: always answer).",
    )
    upload_retain_bytes: int = _setting(
        "APERTURE_UPLOAD_RETAIN_BYTES",
        256 * 1024 * 1024,
        "Freed memory the upload function keeps for its next requests instead of returning it to the kernel "
        "(glibc only; 0 keeps the C library's defaults). See aperture/allocator.py.",
    )
    max_upload_pixels: int = _setting(
        "APERTURE_MAX_UPLOAD_PIXELS", 100_000_000, "Largest width*height an upload may have (422 above)."
    )
    max_frames: int = _setting("APERTURE_MAX_FRAMES", 1000, "Most frames an animated upload may have (422 above).")
    max_animation_pixels: int = _setting(
        "APERTURE_MAX_ANIMATION_PIXELS",
        500_000_000,
        "Largest width*height*frames of an animated upload (decompression bomb by animation).",
    )
    max_metadata_bytes: int = _setting(
        "APERTURE_MAX_METADATA_BYTES", 256 * 1024, "Largest total EXIF/XMP/comment/text metadata in an upload."
    )
    max_jpeg_scans: int = _setting(
        "APERTURE_MAX_JPEG_SCANS",
        32,
        "Most scans a JPEG upload may have (422 above): each scan of a progressive JPEG is a pass over every "
        "coefficient, and encoders write about 10.",
    )
    max_png_chunks: int = _setting(
        "APERTURE_MAX_PNG_CHUNKS",
        20_000,
        "Most chunks a PNG upload may have (422 above): each costs its parse (~7 us) however small, and a 25 MiB "
        "file in 8 KiB IDAT chunks has about 3,200.",
    )
    public_url: str = _setting(
        "APERTURE_PUBLIC_URL", "", "Base URL clients reach the API at (the gateway); upload links point there."
    )
    url_signer: str = _setting(
        "APERTURE_URL_SIGNER",
        "local",
        "How V4 signed URLs are signed: local (a key made per instance, for fake-gcs-server) or iam (signBlob).",
    )
    storage_public_url: str = _setting(
        "APERTURE_STORAGE_PUBLIC_URL",
        "https://storage.googleapis.com",
        "Host that signed URLs point at (the fake-gcs-server URL locally).",
    )
    link_secret: str = _setting(
        "APERTURE_LINK_SECRET",
        "",
        "Secret (32+ characters) that signs the image links the API hands out (HMAC-SHA256): from Secret Manager "
        "in the cloud, generated by the local stack. Empty: a random one per instance, so links open only there.",
    )
    link_seconds: int = _setting(
        "APERTURE_LINK_SECONDS",
        3600,
        "Image links in listings, search results and jobs expire between this and twice this many seconds after "
        "they are handed out (rounded to a window, so the same page lists the same, cacheable URLs).",
    )
    max_link_seconds: int = _setting(
        "APERTURE_MAX_LINK_SECONDS", 7 * 24 * 3600, "Longest upload-link lifetime (V4 signed URLs allow 7 days)."
    )
    provider: str = _setting(
        "APERTURE_PROVIDER",
        "local",
        "Labels and embeddings: local (offline models from pip packages) or cloud (Cloud Vision + Vertex AI).",
    )
    vision_cache_dir: str = _setting(
        "APERTURE_VISION_CACHE_DIR",
        "",
        "Where the local provider caches label text vectors (default ~/.cache/aperture).",
    )
    vision_threads: int = _setting(
        "APERTURE_VISION_THREADS",
        1,
        "Torch intra-op threads of the local provider; 1 keeps a busy 2-core instance from oversubscribing.",
    )
    jobs_topic: str = _setting(
        "APERTURE_JOBS_TOPIC", "aperture-jobs", "Pub/Sub topic of batch-job items (one message per image)."
    )
    process_dead_letter_topic: str = _setting(
        "APERTURE_PROCESS_DEAD_LETTER_TOPIC",
        "aperture-process-dead-letter",
        "Pub/Sub topic a team image goes to when processing gives up on it (APERTURE_MAX_PROCESS_ATTEMPTS "
        "used up): one message with the object, its generation, the attempts and the last error; the record "
        "names it in `dead_letter`.",
    )
    max_job_images: int = _setting("APERTURE_MAX_JOB_IMAGES", 1000, "Images in one batch job (400 above).")
    max_job_operations: int = _setting("APERTURE_MAX_JOB_OPERATIONS", 20, "Operations in one batch job (400 above).")
    max_job_json_bytes: int = _setting(
        "APERTURE_MAX_JOB_JSON_BYTES", 1024 * 1024, "Largest batch-job request body (413 above)."
    )
    job_faults: str = _setting(
        "APERTURE_JOB_FAULTS",
        "",
        "Failures injected into job items, for tests of redelivery and dead letters: a comma list of "
        "once:NAME (an item's first run fails) or always:NAME (every run fails), NAME part of its output.",
    )
    search_cache_entries: int = _setting(
        "APERTURE_SEARCH_CACHE_ENTRIES", 1024, "Query embeddings kept per instance (LRU) by the search function."
    )
    region: str = _setting(
        "APERTURE_REGION", "us-central1", "Region of the deployment; Vertex AI calls of the cloud provider go there."
    )
    prewarm_source: bool = _setting(
        "APERTURE_PREWARM_SOURCE",
        True,
        "Compute histograms for new source-bucket objects when they land, so the first stats request is cached.",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        environ = os.environ if environ is None else environ
        known = {f.metadata["env"] for f in dataclasses.fields(cls)} | set(CLIENT_VARIABLES)
        unknown = sorted(name for name in environ if name.startswith(PREFIX) and name not in known)
        if unknown:
            raise ValueError(
                f"unknown setting(s) {', '.join(unknown)}: aperture.config.Config declares every "
                f"{PREFIX}* variable the functions read"
            )
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(raw, type(f.default), f.metadata["env"])
        return cls(**values)

    @classmethod
    def describe(cls) -> list[tuple[str, Any, str]]:
        """(variable, default, description) for docs and `--help` output."""
        return [(f.metadata["env"], f.default, f.metadata["description"]) for f in dataclasses.fields(cls)]


def _parse(raw: str, kind: type, env: str) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"{env} must be true or false, not {raw!r}")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{env} must be an integer, not {raw!r}") from None
    return raw
