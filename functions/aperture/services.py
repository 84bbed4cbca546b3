"""The instance's services, built once from config and clients (composition root).

Entry points and HTTP modules ask here instead of building their own, so a
service is wired the same way in every function that uses it.
"""

from __future__ import annotations

import functools

from aperture import clients
from aperture.allocator import retain_freed_memory
from aperture.config import get_config
from aperture.image_store import ImageStore
from aperture.image_validation import Limits
from aperture.object_store import ObjectStore
from aperture.upload_links import UploadLinkStore
from aperture.upload_service import UploadService
from aperture.url_signing import UrlSigner, signer_for


@functools.cache
def objects() -> ObjectStore:
    return ObjectStore(clients.storage_client())


@functools.cache
def images() -> ImageStore:
    return ImageStore(clients.firestore_client())


@functools.cache
def upload_limits() -> Limits:
    config = get_config()
    return Limits(
        max_file_bytes=config.max_file_bytes,
        max_pixels=config.max_upload_pixels,
        max_frames=config.max_frames,
        max_animation_pixels=config.max_animation_pixels,
        max_metadata_bytes=config.max_metadata_bytes,
    )


@functools.cache
def uploads() -> UploadService:
    config = get_config()
    retain_freed_memory(config.upload_retain_bytes)  # megabyte buffers per file: reuse, don't re-fault
    return UploadService(objects(), images(), config.uploads_bucket, upload_limits())


@functools.cache
def upload_links() -> UploadLinkStore:
    return UploadLinkStore(clients.firestore_client())


@functools.cache
def url_signer() -> UrlSigner:
    config = get_config()
    return signer_for(config.url_signer, clients.storage_client(), config.storage_public_url)


@functools.cache
def vision():
    """The label/embedding provider; its models load on first analyze(), not here."""
    from aperture.vision import provider_for

    config = get_config()
    if config.provider in ("", "local"):
        return provider_for("local", cache_dir=config.vision_cache_dir or None, num_threads=config.vision_threads)
    return provider_for(config.provider)


@functools.cache
def processor():
    from aperture.histogram_store import HistogramStore
    from aperture.identity_store import IdentityStore
    from aperture.processing import Processor

    config = get_config()
    db = clients.firestore_client()
    return Processor(
        objects=objects(),
        images=images(),
        histograms=HistogramStore(db, ttl_days=config.histogram_ttl_days),
        counters=counters(),
        identity=IdentityStore(db),
        uploads=uploads(),
        links=upload_links(),
        provider=vision,
        uploads_bucket=config.uploads_bucket,
        source_bucket=config.source_bucket,
        max_pixels=config.max_pixels,
        prewarm_source=config.prewarm_source,
        histogram_max_bytes=config.histogram_max_bytes,
    )


@functools.cache
def source_objects() -> ObjectStore:
    return ObjectStore(clients.source_storage_client())


def _stats_service(objects_store: ObjectStore):
    from aperture.histogram_store import HistogramStore
    from aperture.stats_service import StatsService

    config = get_config()
    return StatsService(
        objects_store,
        HistogramStore(clients.firestore_client(), ttl_days=config.histogram_ttl_days),
        max_pixels=config.max_pixels,
        memory_entries=config.stats_memory_entries,
        max_stored_bytes=config.histogram_max_bytes,
    )


@functools.cache
def source_stats():
    """Statistics over the source bucket (S4)."""
    return _stats_service(source_objects())


@functools.cache
def team_stats():
    """Statistics over team images in the uploads bucket (S8), sharing the histograms `process` stored."""
    return _stats_service(objects())


@functools.cache
def counters():
    from aperture.counters import TeamCounters

    return TeamCounters(clients.firestore_client())


@functools.cache
def deleter():
    from aperture.histogram_store import HistogramStore
    from aperture.image_deletion import ImageDeleter

    return ImageDeleter(objects(), images(), counters(), HistogramStore(clients.firestore_client()))
