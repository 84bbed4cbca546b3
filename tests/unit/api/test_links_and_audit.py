"""Upload links revoked and ended with their key, link uploads audited, audit durable for writes,
the client address taken from the gateway's hop, and the link token kept out of paths (issue #19,
items 4 and 5), through the upload function's handlers with in-memory repositories."""

from __future__ import annotations

import datetime as dt
import io
import json

import flask
import pytest

from aperture.api.auth import attempt, client_ip, keyed
from aperture.api.uploads import LINK_PREFIX, UploadLimits, UploadsApi, linked
from aperture.runtime import logs
from aperture.services.access import Access, RevocationForgets
from aperture.services.provisioning import bootstrap
from aperture.services.upload_links import KEY_REVOKED, REVOKED, LinkService
from tests.unit import fakes
from tests.unit.services.helpers import OTHER_TEAM, TEAM, UPLOADS, png, upload_service

APP = flask.Flask(__name__)


class World:
    def __init__(self) -> None:
        self.objects = fakes.FakeObjectStore()
        self.images = fakes.FakeImageStore()
        self.identity = fakes.FakeIdentityStore()
        self.links = fakes.FakeUploadLinkStore()
        self.audit = fakes.FakeAuditLog()
        self.access = Access(self.identity, self.audit)
        service = LinkService(self.links, fakes.FakeUrlSigner(), UPLOADS, self.access, max_file_bytes=2_000_000)
        self.api = UploadsApi(
            upload_service(self.objects, self.images),
            service,
            UploadLimits(10_000_000, 10, 10_000, 86400),
            public_url="https://api.example",
        )
        _, _, self.key, self.secret = bootstrap(
            self.identity, fakes.FakeKeyIssuer(), team_id=TEAM, email="m@example.com", role="member"
        )

    def new_link(self, max_files: int = 3) -> tuple[str, str]:
        made = self.api.links.create(
            TEAM,
            max_files=max_files,
            lifetime=dt.timedelta(hours=1),
            signed_urls=0,
            created_by={"key_id": self.key.key_id, "user_id": self.key.user_id},
        )
        return made.link.link_id, made.token

    def post_link(self, token: str, *names: str, **environ) -> flask.Response:
        data = {"files": [(io.BytesIO(png(seed=i)), name) for i, name in enumerate(names)]}
        with APP.test_request_context(
            f"{LINK_PREFIX}{token}", method="POST", data=data, content_type="multipart/form-data", **environ
        ):
            return linked(self.access, self.api, flask.request)

    def keyed(self, path: str, method: str, **kwargs) -> flask.Response:
        headers = {"x-api-key": self.secret, **kwargs.pop("headers", {})}
        with APP.test_request_context(path, method=method, headers=headers, **kwargs):
            return keyed(self.access, self.api.keyed)(flask.request)


@pytest.fixture
def world() -> World:
    return World()


def request_with(forwarded: str | None, remote: str = "10.9.9.9") -> flask.Request:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return flask.Request.from_values("/v1/me", headers=headers, environ_base={"REMOTE_ADDR": remote})


# -- the client address ----------------------------------------------------------------


@pytest.mark.parametrize(
    "forwarded,expected",
    [
        ("203.0.113.7, 35.191.0.1", "203.0.113.7"),  # client, then the gateway's own hop
        ("6.6.6.6, 203.0.113.7, 35.191.0.1", "203.0.113.7"),  # a spoofed leftmost entry is ignored
        ("1.1.1.1,2.2.2.2 , 203.0.113.7,35.191.0.1", "203.0.113.7"),
        ("6.6.6.6", "10.9.9.9"),  # not through a gateway: the peer
        (None, "10.9.9.9"),
        ("", "10.9.9.9"),
    ],
)
def test_the_client_address_is_the_entry_the_gateway_appended(forwarded, expected):
    assert client_ip(request_with(forwarded)) == expected


def test_an_attempt_never_carries_a_link_token():
    request = flask.Request.from_values("/v1/uploads/upl_secret-token", method="POST")

    record = attempt(request, 404, None, "no route for /v1/uploads/upl_secret-token")

    assert record.path == "/v1/uploads/…"
    assert "upl_secret" not in json.dumps(record.__dict__)


# -- link uploads: audited, revocable, ended with their key ---------------------------------


def test_a_link_upload_is_audited_as_the_link_with_each_files_outcome(world):
    link_id, token = world.new_link()

    response = world.post_link(token, "a.png", "b.png", environ_base={"REMOTE_ADDR": "10.1.1.1"})

    assert response.status_code == 201, response.get_data(as_text=True)
    [record] = world.audit.attempts
    assert (record.link_id, record.team, record.key_id, record.status) == (link_id, TEAM, None, 201)
    assert record.path == "/v1/uploads/…" and token not in record.path
    assert [(f["filename"], f["status"]) for f in record.files] == [("a.png", "created"), ("b.png", "created")]
    assert all(f["id"] for f in record.files)
    assert world.audit.durable == [True]


def test_a_revoked_link_answers_410_writes_nothing_and_is_audited(world):
    link_id, token = world.new_link()
    revoke = world.keyed(f"/v1/upload-links/{link_id}", "DELETE")

    response = world.post_link(token, "late.png")

    assert revoke.status_code == 204
    assert response.status_code == 410 and response.get_json()["error"]["message"] == REVOKED
    assert world.objects.names(UPLOADS) == set() and world.images.all() == []
    record = world.audit.attempts[-1]
    assert (record.link_id, record.team, record.status, record.reason) == (link_id, TEAM, 410, REVOKED)


def test_another_teams_link_cannot_be_revoked(world):
    link_id, token = world.new_link()
    _, _, theirs, secret = bootstrap(
        world.identity, fakes.FakeKeyIssuer(), team_id=OTHER_TEAM, email="x@b.example", role="admin"
    )

    response = world.keyed(f"/v1/upload-links/{link_id}", "DELETE", headers={"x-api-key": secret})

    assert response.status_code == 404
    assert world.post_link(token, "ok.png").status_code == 201


def test_a_link_whose_key_was_revoked_is_refused(world):
    _, token = world.new_link()

    RevocationForgets(world.identity, world.access).revoke_key(world.key)
    response = world.post_link(token, "late.png")

    assert response.status_code == 410
    assert response.get_json()["error"]["message"] == KEY_REVOKED
    assert world.objects.names(UPLOADS) == set()


def test_an_unknown_link_is_404_and_audited_without_a_link(world):
    response = world.post_link("upl_nobody-made-this", "x.png")

    assert response.status_code == 404
    [record] = world.audit.attempts
    assert (record.link_id, record.team, record.path) == (None, None, "/v1/uploads/…")


# -- audit durability -------------------------------------------------------------------------


def test_a_write_is_answered_503_when_its_audit_record_cannot_be_stored(world):
    _, token = world.new_link()
    world.audit.record = fakes.raising(RuntimeError("firestore down"))

    upload = world.post_link(token, "a.png")
    create = world.keyed("/v1/upload-links", "POST", json={})

    for response in (upload, create):
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0


def test_a_read_is_answered_although_its_audit_record_cannot_be_stored(world):
    world.audit.record = fakes.raising(RuntimeError("firestore down"))
    router = lambda request, principal: flask.Response("ok")  # noqa: E731

    with APP.test_request_context("/v1/me", headers={"x-api-key": world.secret}):
        response = keyed(world.access, router)(flask.request)

    assert response.status_code == 200


# -- logs -------------------------------------------------------------------------------------


def test_no_log_line_carries_a_link_token(capsys):
    logs.info("POST /v1/uploads/upl_abc-DEF_123 failed", path="/v1/uploads/upl_abc-DEF_123?x=1", n=1)

    line = capsys.readouterr().out
    assert "upl_abc" not in line
    assert json.loads(line)["path"] == "/v1/uploads/…?x=1"
    assert json.loads(line)["message"] == "POST /v1/uploads/… failed"


def test_revoking_a_link_twice_is_204_both_times(world):
    link_id, _ = world.new_link()

    assert world.keyed(f"/v1/upload-links/{link_id}", "DELETE").status_code == 204
    assert world.keyed(f"/v1/upload-links/{link_id}", "DELETE").status_code == 204
