"""Where API key strings come from: one interface, two issuers.

* `local`: the service generates the key itself (the local stack).
* `google`: the key is a Google API key created through the API Keys API and
  restricted to the gateway's managed service, so API Gateway's own key check
  at the edge and our team mapping use the same string.

Either way only the hash is stored (see `identity_store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aperture.domain import keys


@dataclass(frozen=True)
class IssuedKey:
    key: str
    external_name: str | None  # the Google API key resource name, for revocation


class KeyIssuer(Protocol):
    name: str

    def issue(self, display_name: str) -> IssuedKey: ...

    def revoke(self, external_name: str | None) -> None: ...


class LocalKeyIssuer:
    name = "local"

    def issue(self, display_name: str) -> IssuedKey:
        return IssuedKey(keys.generate(), None)

    def revoke(self, external_name: str | None) -> None:
        return None  # nothing outside Firestore to revoke


class GoogleKeyIssuer:
    """Google API keys restricted to `service` (the API Gateway managed service)."""

    name = "google"

    def __init__(self, client: Any, project: str, service: str, timeout: float = 120.0):
        self._client = client  # google.cloud.api_keys_v2.ApiKeysClient
        self._project = project
        self._service = service
        self._timeout = timeout

    def create_request(self, display_name: str) -> dict:
        return {
            "parent": f"projects/{self._project}/locations/global",
            "key": {
                "display_name": display_name[:63],
                "restrictions": {"api_targets": [{"service": self._service}]},
            },
        }

    def issue(self, display_name: str) -> IssuedKey:
        operation = self._client.create_key(request=self.create_request(display_name))
        created = operation.result(timeout=self._timeout)
        key_string = created.key_string or self._client.get_key_string(name=created.name).key_string
        return IssuedKey(key_string, created.name)

    def revoke(self, external_name: str | None) -> None:
        if external_name:
            self._client.delete_key(name=external_name).result(timeout=self._timeout)


def issuer_for(kind: str, project: str, service: str) -> KeyIssuer:
    if kind == "local":
        return LocalKeyIssuer()
    if kind == "google":
        from google.cloud import api_keys_v2  # only the cloud issuer needs the client

        return GoogleKeyIssuer(api_keys_v2.ApiKeysClient(), project, service)
    raise ValueError(f"APERTURE_KEY_ISSUER must be local or google, not {kind!r}")
