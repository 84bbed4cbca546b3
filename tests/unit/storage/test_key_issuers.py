"""Key issuers: the local one makes keys; the Google one maps to the API Keys API
(no emulator exists for it, so a recording fake stands in for the client)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from aperture.domain import keys
from aperture.storage.key_issuers import GoogleKeyIssuer, LocalKeyIssuer, issuer_for


class FakeApiKeysClient:
    def __init__(self, key_string: str | None = "AIzaSyFakeKeyString0123456789abcdefghi"):
        self.calls = []
        self._key_string = key_string

    def create_key(self, request):
        self.calls.append(("create_key", request))
        created = SimpleNamespace(name="projects/p/locations/global/keys/k1", key_string=self._key_string)
        return SimpleNamespace(result=lambda timeout=None: created)

    def get_key_string(self, name):
        self.calls.append(("get_key_string", name))
        return SimpleNamespace(key_string="AIzaSyFromGetKeyString0123456789abcdef")

    def delete_key(self, name):
        self.calls.append(("delete_key", name))
        return SimpleNamespace(result=lambda timeout=None: None)


def test_local_issuer_makes_well_formed_distinct_keys():
    issuer = LocalKeyIssuer()

    first, second = issuer.issue("a"), issuer.issue("b")

    assert first.key != second.key and first.external_name is None
    assert keys.well_formed(first.key) and first.key.startswith("apk_")


def test_google_issuer_restricts_the_key_to_the_gateway_service():
    client = FakeApiKeysClient()
    issuer = GoogleKeyIssuer(client, "my-project", "aperture-api.apigateway.my-project.cloud.goog")

    issued = issuer.issue("team-a/boss@example.com")

    [(method, request)] = client.calls
    assert method == "create_key"
    assert request["parent"] == "projects/my-project/locations/global"
    assert request["key"]["display_name"] == "team-a/boss@example.com"
    assert request["key"]["restrictions"] == {
        "api_targets": [{"service": "aperture-api.apigateway.my-project.cloud.goog"}]
    }
    assert issued.key == "AIzaSyFakeKeyString0123456789abcdefghi"
    assert issued.external_name == "projects/p/locations/global/keys/k1"
    assert keys.well_formed(issued.key)


def test_google_issuer_fetches_the_key_string_when_create_does_not_return_it():
    client = FakeApiKeysClient(key_string="")
    issued = GoogleKeyIssuer(client, "p", "svc").issue("x")

    assert issued.key == "AIzaSyFromGetKeyString0123456789abcdef"
    assert client.calls[1] == ("get_key_string", "projects/p/locations/global/keys/k1")


def test_google_issuer_revokes_by_deleting_the_google_key():
    client = FakeApiKeysClient()

    GoogleKeyIssuer(client, "p", "svc").revoke("projects/p/locations/global/keys/k1")
    GoogleKeyIssuer(client, "p", "svc").revoke(None)

    assert client.calls == [("delete_key", "projects/p/locations/global/keys/k1")]


def test_display_names_are_cut_to_the_api_limit():
    client = FakeApiKeysClient()

    GoogleKeyIssuer(client, "p", "svc").issue("x" * 100)

    assert len(client.calls[0][1]["key"]["display_name"]) == 63


def test_issuer_for_rejects_unknown_kinds():
    assert isinstance(issuer_for("local", "p", "svc"), LocalKeyIssuer)
    with pytest.raises(ValueError):
        issuer_for("ldap", "p", "svc")
