"""The composition root: every client, repository and service of an instance, built once.

`Container(config)` wires the parts from one `Config`; each part is built on
first use (a `stats` instance never imports the vision models, an `admin`
instance never builds a storage client) and then kept for the life of the
instance, as Cloud Functions instances are reused. Entry points get the
instance's container from `instance()` (through `aperture.functions`) and
hand it to the adapters they build; nothing below reads the environment or
looks a service up on its own.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aperture.config import Config
from aperture.runtime import logs

if TYPE_CHECKING:  # the real imports stay inside the builders: cold starts pay only for what they use
    from google.cloud import firestore, pubsub_v1, storage

    from aperture.domain.imaging.validation import Limits
    from aperture.domain.jobs import JobLimits
    from aperture.domain.links import Links
    from aperture.domain.transforms import Limits as RenderLimits
    from aperture.services.access import Access
    from aperture.services.deletion import ImageDeleter
    from aperture.services.images import ImageService
    from aperture.services.jobs import JobService, JobWorker
    from aperture.services.processing import Processor
    from aperture.services.provisioning import Provisioning
    from aperture.services.repair import RepairSweep
    from aperture.services.search import SearchService
    from aperture.services.stats import StatsService
    from aperture.services.upload_links import LinkService
    from aperture.services.uploads import UploadService
    from aperture.storage.audit import AuditLog
    from aperture.storage.counters import TeamCounters
    from aperture.storage.finalized import FinalizedObjects
    from aperture.storage.histograms import HistogramStore
    from aperture.storage.identity import IdentityStore
    from aperture.storage.images import ImageStore
    from aperture.storage.jobs import JobStore
    from aperture.storage.key_issuers import KeyIssuer
    from aperture.storage.objects import ObjectStore
    from aperture.storage.queue import DeadLetterTopic, JobQueue
    from aperture.storage.upload_links import UploadLinkStore
    from aperture.storage.url_signing import UrlSigner
    from aperture.vision.base import VisionProvider

T = TypeVar("T")


def _once(build: Callable[[Container], T]) -> T:
    """A read-only attribute built on first access, once even when threads race for it."""
    name = build.__name__

    def get(self: Container) -> T:
        try:
            return self._parts[name]
        except KeyError:
            pass
        with self._lock:
            if name not in self._parts:
                self._parts[name] = build(self)
            return self._parts[name]

    get.__doc__ = build.__doc__
    return property(get)  # type: ignore[return-value]


class Container:
    def __init__(self, config: Config):
        self.config = config
        self._parts: dict[str, Any] = {}
        self._lock = threading.RLock()

    # -- clients ---------------------------------------------------------------

    @_once
    def firestore(self) -> firestore.Client:
        from aperture.storage.clients import firestore_client

        return firestore_client(self.config.project)

    @_once
    def storage(self) -> storage.Client:
        from aperture.storage.clients import storage_client

        return storage_client(self.config.project)

    @_once
    def source_storage(self) -> storage.Client:
        """The source bucket's client: anonymous when it is someone else's public bucket."""
        if not self.config.source_anonymous:
            return self.storage
        from aperture.storage.clients import anonymous_storage_client

        return anonymous_storage_client()

    # -- repositories ----------------------------------------------------------

    @_once
    def objects(self) -> ObjectStore:
        from aperture.storage.objects import ObjectStore

        return ObjectStore(self.storage)

    @_once
    def source_objects(self) -> ObjectStore:
        from aperture.storage.objects import ObjectStore

        return ObjectStore(self.source_storage)

    @_once
    def images(self) -> ImageStore:
        from aperture.storage.images import ImageStore

        return ImageStore(self.firestore)

    @_once
    def histograms(self) -> HistogramStore:
        from aperture.storage.histograms import HistogramStore

        return HistogramStore(self.firestore, ttl_days=self.config.histogram_ttl_days)

    @_once
    def identity(self) -> IdentityStore:
        from aperture.storage.identity import IdentityStore

        return IdentityStore(self.firestore)

    @_once
    def counters(self) -> TeamCounters:
        from aperture.storage.counters import TeamCounters

        return TeamCounters(self.firestore, max_cameras=self.config.max_camera_keys)

    @_once
    def upload_links(self) -> UploadLinkStore:
        from aperture.storage.upload_links import UploadLinkStore

        return UploadLinkStore(self.firestore)

    @_once
    def audit_log(self) -> AuditLog:
        from aperture.storage.audit import AuditLog

        return AuditLog(self.firestore, self.config.audit_ttl_days)

    @_once
    def finalized(self) -> FinalizedObjects:
        from aperture.storage.finalized import FinalizedObjects

        return FinalizedObjects(self.firestore)

    @_once
    def publisher(self) -> pubsub_v1.PublisherClient:
        from google.cloud import pubsub_v1

        return pubsub_v1.PublisherClient()

    @_once
    def job_store(self) -> JobStore:
        from aperture.storage.jobs import JobStore

        return JobStore(self.firestore)

    @_once
    def job_queue(self) -> JobQueue:
        from aperture.storage.queue import JobQueue

        return JobQueue(self.publisher, self.config.project, self.config.jobs_topic)

    @_once
    def process_dead_letters(self) -> DeadLetterTopic:
        from aperture.storage.queue import DeadLetterTopic

        return DeadLetterTopic(self.publisher, self.config.project, self.config.process_dead_letter_topic)

    @_once
    def url_signer(self) -> UrlSigner:
        from aperture.storage.url_signing import signer_for

        return signer_for(self.config.url_signer, self.storage, self.config.storage_public_url)

    @_once
    def links(self) -> Links:
        import secrets

        from aperture.domain.links import Links

        secret = self.config.link_secret.encode() or secrets.token_bytes(32)
        return Links(secret, window=self.config.link_seconds)

    @_once
    def key_issuer(self) -> KeyIssuer:
        from aperture.storage.key_issuers import issuer_for

        return issuer_for(self.config.key_issuer, self.config.project, self.config.api_service)

    @_once
    def vision(self) -> VisionProvider:
        """The label/embedding provider; its models load on first analyze(), not here."""
        from aperture.vision.base import provider_for

        config = self.config
        if config.provider in ("", "local"):
            return provider_for("local", cache_dir=config.vision_cache_dir or None, num_threads=config.vision_threads)
        return provider_for(config.provider, project=config.project, location=config.region)

    # -- services --------------------------------------------------------------

    @_once
    def access(self) -> Access:
        from aperture.services.access import Access

        config = self.config
        return Access(
            self.identity,
            self.audit_log,
            touch_seconds=config.key_touch_seconds,
            cache_seconds=config.key_cache_seconds,
            cache_entries=config.key_cache_entries,
        )

    @_once
    def upload_limits(self) -> Limits:
        from aperture.domain.imaging.validation import Limits

        config = self.config
        return Limits(
            max_file_bytes=config.max_file_bytes,
            max_pixels=config.max_upload_pixels,
            max_frames=config.max_frames,
            max_animation_pixels=config.max_animation_pixels,
            max_metadata_bytes=config.max_metadata_bytes,
            max_jpeg_scans=config.max_jpeg_scans,
            max_png_chunks=config.max_png_chunks,
        )

    @_once
    def uploads(self) -> UploadService:
        from aperture.runtime.allocator import retain_freed_memory
        from aperture.services.uploads import UploadService

        retain_freed_memory(self.config.upload_retain_bytes)  # megabyte buffers per file: reuse, don't re-fault
        return UploadService(self.objects, self.images, self.config.uploads_bucket, self.upload_limits)

    @_once
    def provisioning(self) -> Provisioning:
        from aperture.services.access import RevocationForgets
        from aperture.services.provisioning import Provisioning

        # A key revoked here leaves this instance's key cache at once (other instances: within the TTL).
        identity = RevocationForgets(self.identity, self.access)
        return Provisioning(identity, self.key_issuer)  # type: ignore[arg-type]  # IdentityStore, revoke_key wrapped

    @_once
    def link_service(self) -> LinkService:
        from aperture.services.upload_links import LinkService

        # A link lives no longer than the key that made it: checked through `access`, as keys are.
        return LinkService(
            self.upload_links,
            self.url_signer,
            self.config.uploads_bucket,
            self.access,
            max_file_bytes=self.config.max_file_bytes,
        )

    @_once
    def source_stats(self) -> StatsService:
        """Statistics over the source bucket (S4)."""
        return self.stats_service(self.source_objects, self.histograms)

    @_once
    def team_stats(self) -> StatsService:
        """Statistics over team images in the uploads bucket (S8), sharing the histograms `process` stored."""
        return self.stats_service(self.objects, self.histograms)

    def stats_service(self, objects: ObjectStore, histograms: HistogramStore) -> StatsService:
        """A StatsService over `objects` and `histograms`, configured (benchmarks pass fakes)."""
        from aperture.services.stats import StatsService

        config = self.config
        return StatsService(
            objects,
            histograms,
            max_pixels=config.max_pixels,
            memory_entries=config.stats_memory_entries,
            memory_bytes=config.stats_memory_bytes,
            max_stored_bytes=config.histogram_max_bytes,
            max_wide_pixels=config.max_wide_stats_pixels,
            lookup_min_pixels=config.stats_lookup_min_pixels,
        )

    @_once
    def processor(self) -> Processor:
        from aperture.services.processing import Processor

        config = self.config
        return Processor(
            objects=self.objects,
            images=self.images,
            histograms=self.histograms,
            counters=self.counters,
            identity=self.identity,
            uploads=self.uploads,
            links=self.upload_links,
            provider=lambda: self.vision,
            uploads_bucket=config.uploads_bucket,
            source_bucket=config.source_bucket,
            max_pixels=config.max_pixels,
            prewarm_source=config.prewarm_source,
            histogram_max_bytes=config.histogram_max_bytes,
            max_wide_pixels=config.max_wide_stats_pixels,
            max_attempts=config.max_process_attempts,
            dead_letters=lambda: self.process_dead_letters,
        )

    @_once
    def image_service(self) -> ImageService:
        from aperture.services.images import ImageService

        config = self.config
        return ImageService(
            self.images,
            self.objects,
            self.counters,
            self.deleter,
            max_pixels=config.max_pixels,
            max_response_bytes=config.max_response_bytes,
            derived_bucket=config.derived_bucket,
            signer=self.url_signer,
            render_limits=self.render_limits,
        )

    @_once
    def render_limits(self) -> RenderLimits:
        """The budget of every render (conversions and job items): output pixels and memory."""
        from aperture.domain.transforms import Limits

        config = self.config
        return Limits(max_output_pixels=config.max_output_pixels, max_render_bytes=config.max_render_bytes)

    @_once
    def job_limits(self) -> JobLimits:
        from aperture.domain.jobs import JobLimits

        config = self.config
        return JobLimits(config.max_job_images, config.max_job_operations, config.max_pixels)

    @_once
    def job_service(self) -> JobService:
        import datetime as dt

        from aperture.services.jobs import JobService

        config = self.config
        limits = self.job_limits
        return JobService(
            self.job_store,
            self.job_queue,
            self.images,
            self.objects,
            derived_bucket=config.derived_bucket,
            limits=limits,
            clock=lambda: dt.datetime.now(dt.timezone.utc),
            signer=self.url_signer,
            max_response_bytes=config.max_response_bytes,
            render_limits=self.render_limits,
        )

    @_once
    def job_worker(self) -> JobWorker:
        from aperture.services.jobs import Faults, JobWorker

        config = self.config
        return JobWorker(
            self.job_store,
            self.objects,
            derived_bucket=config.derived_bucket,
            max_pixels=config.max_pixels,
            limits=self.job_limits,
            render_limits=self.render_limits,
            faults=Faults.parse(config.job_faults),
        )

    @_once
    def search(self) -> SearchService:
        from aperture.services.search import SearchService

        return SearchService(
            self.images,
            self.objects,
            lambda: self.vision,
            max_pixels=self.config.max_pixels,
            cache_entries=self.config.search_cache_entries,
        )

    @_once
    def deleter(self) -> ImageDeleter:
        from aperture.services.deletion import ImageDeleter

        return ImageDeleter(
            self.objects,
            self.images,
            self.counters,
            self.histograms,
            derived_bucket=self.config.derived_bucket,
            jobs=self.job_store,
            tombstone_seconds=self.config.tombstone_seconds,
        )

    @_once
    def repair(self) -> RepairSweep:
        import datetime as dt

        from aperture.services.repair import RepairSettings, RepairSweep

        config = self.config
        return RepairSweep(
            self.images,
            self.objects,
            self.counters,
            self.identity,
            self.processor,
            self.deleter,
            config.uploads_bucket,
            RepairSettings(
                stale_after=dt.timedelta(minutes=config.repair_stale_minutes),
                page_size=config.repair_page_size,
                teams_per_run=config.repair_teams_per_run,
                team_images=config.repair_team_images,
                budget=dt.timedelta(seconds=config.repair_budget_seconds),
            ),
        )


@functools.cache
def instance() -> Container:
    """This process's container, from the environment, read once (functions are configured at deploy time)."""
    config = Config.from_env()
    logs.configure(project=config.project)
    return Container(config)
