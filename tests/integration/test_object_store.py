"""ObjectStore against fake-gcs-server: create-only writes, metadata reads, and
streams of exactly one generation's bytes, arriving in large pieces while the
reader consumes them."""

from __future__ import annotations

import base64
import os

import google_crc32c
import pytest
from google.api_core import exceptions as gexc

from aperture.storage import clients
from aperture.storage.objects import WHOLE_READ_BYTES, ObjectStore


class _Recorder:
    """A write-only stream that keeps the size of every piece it is handed."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def write(self, chunk) -> int:
        self.sizes.append(len(chunk))
        return len(chunk)


@pytest.mark.parametrize("size", [700_000, WHOLE_READ_BYTES + 300_000])  # read whole, streamed
def test_stream_never_serves_a_later_generation(storage_client, source_bucket, unique, size):
    # Without object versioning the old generation is gone: the read fails
    # rather than handing out the new bytes under the old generation number.
    name = f"{unique}/photo.bin"
    source_bucket.blob(name).upload_from_string(os.urandom(size))
    store = ObjectStore(storage_client)
    info = store.info(source_bucket.name, name)
    source_bucket.blob(name).upload_from_string(os.urandom(300_000))

    reader = store.stream(info)

    with pytest.raises(gexc.NotFound):
        reader.read(10)


@pytest.mark.parametrize("size", [1_000_000, WHOLE_READ_BYTES + 1_000_000])  # read whole, streamed
def test_stream_seeks_backwards_and_reads_to_the_end(storage_client, source_bucket, unique, size):
    name = f"{unique}/seek.bin"
    data = os.urandom(size)
    source_bucket.blob(name).upload_from_string(data)
    store = ObjectStore(storage_client)
    reader = store.stream(store.info(source_bucket.name, name))

    head = reader.read(4096)
    reader.seek(100)
    middle = reader.read(50)
    reader.seek(-10, os.SEEK_END)
    tail = reader.read()

    assert (head, middle, tail) == (data[:4096], data[100:150], data[-10:])


@pytest.mark.parametrize("leaf", ["plain.png", "with space.png", "naïve ✓.png", "q?x=1#frag.png", "100%.png"])
def test_stream_reads_objects_whatever_their_names(storage_client, source_bucket, unique, leaf):
    name = f"{unique}/{leaf}"
    data = os.urandom(50_000)
    source_bucket.blob(name).upload_from_string(data)
    store = ObjectStore(storage_client)

    assert store.stream(store.info(source_bucket.name, name)).getvalue() == data


def test_a_stream_closed_part_way_stops_and_later_streams_still_work(storage_client, source_bucket, unique):
    name = f"{unique}/big.bin"
    data = os.urandom(WHOLE_READ_BYTES + 4 * clients.DOWNLOAD_CHUNK_BYTES)  # streamed, not read whole
    source_bucket.blob(name).upload_from_string(data)
    store = ObjectStore(storage_client)
    info = store.info(source_bucket.name, name)
    for _ in range(10):  # more than the download threads: each has had a connection cut
        reader = store.stream(info)
        reader.read(100)
        reader.close()

    assert store.stream(info).getvalue() == data
    assert store.info(source_bucket.name, name) == info


def test_downloads_arrive_in_pieces_of_the_configured_size(stack, source_bucket, unique):
    # The library's default is 8 KB pieces; clients sets a larger one (a
    # library upgrade that stops reading the setting shows up here).
    name = f"{unique}/chunks.bin"
    data = os.urandom(3 * clients.DOWNLOAD_CHUNK_BYTES + 1000)
    source_bucket.blob(name).upload_from_string(data)
    recorder = _Recorder()

    clients.storage_client(stack.project).bucket(source_bucket.name).blob(name).download_to_file(
        recorder, checksum=None
    )

    assert sum(recorder.sizes) == len(data)
    assert max(recorder.sizes) == clients.DOWNLOAD_CHUNK_BYTES
    assert len(recorder.sizes) <= 5


@pytest.mark.parametrize(
    "leaf", ["plain.png", "with space.png", "naïve ✓.png", "q?x=1#frag.png", "100%.png", "a/b/../c.png"]
)
def test_info_finds_objects_whatever_their_names(storage_client, source_bucket, unique, leaf):
    name = f"{unique}/{leaf}"
    blob = source_bucket.blob(name)
    blob.upload_from_string(b"12345", content_type="image/png")
    blob.reload()

    info = ObjectStore(storage_client).info(source_bucket.name, name)

    assert (info.name, info.generation, info.size, info.content_type, info.md5_hash) == (
        name,
        blob.generation,
        5,
        "image/png",
        blob.md5_hash,
    )


def test_info_of_a_missing_object_or_bucket_is_none(storage_client, source_bucket, unique):
    store = ObjectStore(storage_client)

    assert store.info(source_bucket.name, f"{unique}/missing.png") is None
    assert store.info(f"no-such-bucket-{unique}", "x.png") is None


@pytest.mark.parametrize("size", [50_000, WHOLE_READ_BYTES + 300_000])  # read whole, streamed
@pytest.mark.parametrize("leaf", ["plain.png", "naïve ✓.png", "q?x=1#frag.png", "a/b/../c.png"])
def test_stream_current_gives_the_generation_and_bytes_in_one_read(storage_client, source_bucket, unique, leaf, size):
    name = f"{unique}/{leaf}"
    data = os.urandom(size)
    blob = source_bucket.blob(name)
    blob.upload_from_string(data, content_type="image/png")
    blob.reload()
    store = ObjectStore(storage_client)

    info, reader = store.stream_current(source_bucket.name, name)

    assert (info.name, info.generation, info.size, info.content_type, info.md5_hash) == (
        name,
        blob.generation,
        size,
        "image/png",
        blob.md5_hash,
    )
    assert reader.getvalue() == data
    assert store.info(source_bucket.name, name) == info  # the connection is fit for the next request


def test_stream_current_gives_the_latest_generation(storage_client, source_bucket, unique):
    name = f"{unique}/overwritten.png"
    source_bucket.blob(name).upload_from_string(b"old")
    source_bucket.blob(name).upload_from_string(b"new bytes")
    store = ObjectStore(storage_client)

    info, reader = store.stream_current(source_bucket.name, name)

    assert reader.getvalue() == b"new bytes"
    assert info.generation == store.info(source_bucket.name, name).generation


def test_stream_current_of_a_missing_object_or_bucket_is_none(storage_client, source_bucket, unique):
    store = ObjectStore(storage_client)

    assert store.stream_current(source_bucket.name, f"{unique}/missing.png") is None
    assert store.stream_current(f"no-such-bucket-{unique}", "x.png") is None
    assert store.info(source_bucket.name, f"{unique}/missing.png") is None


def test_a_current_stream_closed_part_way_stops_and_later_reads_still_work(storage_client, source_bucket, unique):
    name = f"{unique}/big.bin"
    data = os.urandom(WHOLE_READ_BYTES + 4 * clients.DOWNLOAD_CHUNK_BYTES)  # streamed, not read whole
    source_bucket.blob(name).upload_from_string(data)
    store = ObjectStore(storage_client)
    for _ in range(10):  # more than the download threads
        _, reader = store.stream_current(source_bucket.name, name)
        reader.read(100)
        reader.close()

    info, reader = store.stream_current(source_bucket.name, name)
    assert reader.getvalue() == data
    assert store.info(source_bucket.name, name) == info


def test_reads_when_storage_is_unreachable_are_service_unavailable_errors():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from devstack.processes import free_port

    # Arrange: a client pointed at a port nothing listens on
    client = storage.Client(
        project="p",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": f"http://127.0.0.1:{free_port()}"},
    )

    # Act / Assert
    with pytest.raises(gexc.ServiceUnavailable):
        ObjectStore(client).info("bucket", "name.png")
    with pytest.raises(gexc.ServiceUnavailable):
        ObjectStore(client).stream_current("bucket", "name.png")


@pytest.mark.parametrize("leaf", ["plain.jpg", "with space.jpg", "naïve ✓.jpg", "q?x=1#frag.jpg", "100%.jpg"])
def test_create_writes_the_bytes_type_and_metadata(storage_client, source_bucket, unique, leaf):
    name = f"{unique}/{leaf}"
    data = os.urandom(1_200_000)

    created = ObjectStore(storage_client).create(
        source_bucket.name, name, data, "image/jpeg", {"aperture-upload": "api"}
    )

    blob = source_bucket.get_blob(name)
    assert created == blob.generation  # the generation this call wrote
    assert (blob.download_as_bytes(), blob.content_type, blob.metadata) == (
        data,
        "image/jpeg",
        {"aperture-upload": "api"},
    )
    assert blob.crc32c == base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def test_create_never_overwrites_an_existing_object(storage_client, source_bucket, unique):
    name = f"{unique}/taken.png"
    store = ObjectStore(storage_client)
    store.create(source_bucket.name, name, b"first", "image/png")
    generation = source_bucket.get_blob(name).generation

    again = store.create(source_bucket.name, name, b"second", "image/png", {"aperture-upload": "api"})

    blob = source_bucket.get_blob(name)
    assert again is None  # the name was taken: nothing written
    assert (blob.download_as_bytes(), blob.generation, blob.metadata) == (b"first", generation, None)


def test_create_in_a_missing_bucket_is_not_found(storage_client, unique):
    with pytest.raises(gexc.NotFound):
        ObjectStore(storage_client).create(f"no-such-bucket-{unique}", "x.png", b"123", "image/png")


def test_create_when_storage_is_unreachable_is_a_service_unavailable_error():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from devstack.processes import free_port

    client = storage.Client(
        project="p",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": f"http://127.0.0.1:{free_port()}"},
    )

    with pytest.raises(gexc.ServiceUnavailable):
        ObjectStore(client).create("bucket", "name.png", b"123", "image/png")
