"""The instance's services, built once from config and clients (composition root).

Entry points and HTTP modules ask here instead of building their own, so a
service is wired the same way in every function that uses it.
"""

from __future__ import annotations

import functools

from aperture import clients
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
    return UploadService(objects(), images(), get_config().uploads_bucket, upload_limits())


@functools.cache
def upload_links() -> UploadLinkStore:
    return UploadLinkStore(clients.firestore_client())


@functools.cache
def url_signer() -> UrlSigner:
    config = get_config()
    return signer_for(config.url_signer, clients.storage_client(), config.storage_public_url)
