"""V4 signed URLs, behind one interface: PUT for direct uploads to the
bucket, GET for response bodies too large for the gateway (a copy in the
derived bucket, services.images.ImageService.deliver).

* `local`: signs with an RSA key made for this instance; fake-gcs-server does
  not verify signatures, but the URLs have the real V4 shape.
* `iam`: signs as the function's service account through the IAM signBlob
  API (no key file exists in the cloud).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from typing import Protocol

from google.cloud import storage


class UrlSigner(Protocol):
    def put_url(
        self,
        bucket: str,
        name: str,
        expires_at: dt.datetime,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """A URL that writes the object until `expires_at`; `headers` are signed too, so the PUT
        must carry them exactly (Cloud Storage enforces x-goog-content-length-range and
        x-goog-if-generation-match on a signed PUT)."""
        ...

    def get_url(self, bucket: str, name: str, expires_at: dt.datetime, *, disposition: str | None = None) -> str:
        """A URL that reads the object until `expires_at`, answered with `disposition` as Content-Disposition."""
        ...


class _V4Signer:
    """PUT and GET URLs over one `_signing` (the credentials part of generate_signed_url)."""

    def __init__(self, client: storage.Client):
        self._client = client

    def put_url(
        self,
        bucket: str,
        name: str,
        expires_at: dt.datetime,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        return self._sign(
            bucket, name, expiration=expires_at, method="PUT", content_type=content_type, headers=dict(headers or {})
        )

    def get_url(self, bucket: str, name: str, expires_at: dt.datetime, *, disposition: str | None = None) -> str:
        return self._sign(bucket, name, expiration=expires_at, method="GET", response_disposition=disposition)

    def _sign(self, bucket: str, name: str, **options) -> str:
        blob = self._client.bucket(bucket).blob(name)
        return blob.generate_signed_url(version="v4", **self._signing(), **options)

    def _signing(self) -> dict:
        raise NotImplementedError


class LocalUrlSigner(_V4Signer):
    def __init__(self, client: storage.Client, endpoint: str):
        super().__init__(client)
        self._endpoint = endpoint

    @functools.cached_property
    def _credentials(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from google.oauth2 import service_account

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return service_account.Credentials.from_service_account_info(
            {
                "type": "service_account",
                "client_email": "local-signer@aperture-local.iam.gserviceaccount.com",
                "private_key": pem,
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )

    def _signing(self) -> dict:
        return {"credentials": self._credentials, "api_access_endpoint": self._endpoint}


class IamUrlSigner(_V4Signer):
    def _signing(self) -> dict:
        import google.auth
        import google.auth.transport.requests

        credentials, _ = google.auth.default()
        credentials.refresh(google.auth.transport.requests.Request())
        return {"service_account_email": credentials.service_account_email, "access_token": credentials.token}


def signer_for(kind: str, client: storage.Client, endpoint: str) -> UrlSigner:
    if kind == "local":
        return LocalUrlSigner(client, endpoint)
    if kind == "iam":
        return IamUrlSigner(client)
    raise ValueError(f"APERTURE_URL_SIGNER must be local or iam, not {kind!r}")
