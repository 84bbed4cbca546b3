"""Google Cloud clients; the container creates each once per function instance.

The client libraries pick the emulators up from FIRESTORE_EMULATOR_HOST,
PUBSUB_EMULATOR_HOST and STORAGE_EMULATOR_HOST, so there is no "if local"
branch here beyond what the libraries already do.
"""

from __future__ import annotations

from google.cloud import firestore, storage
from google.cloud.storage._media.requests import _request_helpers as _media_requests

# Streaming downloads (`Blob.download_to_file`) hand the stream 8 KB at a time
# and the library offers no setting for it: a 2.5 MB photo took 300 trips
# through requests' generators, 5 ms of CPU and GIL against the decoder that
# consumes it, against 1 ms in 256 KB pieces. A library that stops reading the
# name fails tests/integration/test_object_store.py, not silently.
DOWNLOAD_CHUNK_BYTES = 256 * 1024
_media_requests._SINGLE_GET_CHUNK_SIZE = DOWNLOAD_CHUNK_BYTES


def storage_client(project: str) -> storage.Client:
    return without_environment_lookups(storage.Client(project=project))


def anonymous_storage_client() -> storage.Client:
    """For a source bucket that is someone else's public bucket."""
    return without_environment_lookups(storage.Client.create_anonymous_client())


def without_environment_lookups(client: storage.Client) -> storage.Client:
    """`client`, made to stop `requests` from reading ~/.netrc and stat-ing CA bundle paths on every
    request (a tenth of an upload's CPU here): functions use no proxies or netrc,
    and TLS verification still uses the default CA bundle."""
    client._http.trust_env = False
    return client


def firestore_client(project: str) -> firestore.Client:
    return firestore.Client(project=project)
