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


# How long one Firestore call keeps retrying a backend it cannot reach (UNAVAILABLE,
# DEADLINE_EXCEEDED) before it gives up: the library's defaults are 60 to 300 s,
# longer than any caller waits for an answer; a request then answers 503 with
# Retry-After (`aperture.api.errors`) and an event fails and is redelivered. A
# healthy call is not cut short: each attempt keeps the library's own timeout.
FIRESTORE_RETRY_SECONDS = 10.0


def firestore_client(project: str, retry_seconds: float = FIRESTORE_RETRY_SECONDS) -> firestore.Client:
    return bounded_retries(firestore.Client(project=project), retry_seconds)


def bounded_retries(client: firestore.Client, seconds: float) -> firestore.Client:
    """`client`, whose calls stop retrying after `seconds` in all (FIRESTORE_RETRY_SECONDS).

    The library takes a retry per call only; its per-method defaults live on
    the GAPIC transport's wrapped methods, which this bounds once. A library
    that renames them fails tests/unit/storage/test_clients.py, not silently."""
    wrapped = client._firestore_api._transport._wrapped_methods
    if not wrapped:
        raise RuntimeError("the Firestore transport has no wrapped methods to bound")
    for method in wrapped.values():
        retry = method._retry
        if retry is not None:
            method._retry = retry.with_timeout(seconds)
    return client
