"""No 500 for bad input (issue #18, item 5): each case here was a 500, most
found by fuzzing the API (tests/integration/test_api_fuzz.py, scripts/fuzz/api.py).

The handlers are called through their routers with a Principal, as `keyed`
does after the key check, and `guarded` turns what they raise into the
response a client gets. The in-memory identity store is made as strict as
Firestore about document ids ("a/b" is a path, "__x__" reserved, an unpaired
surrogate has no UTF-8 form): Firestore raised on those, and that was the 500.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from types import SimpleNamespace

import flask
import pytest

from aperture.api.admin import AdminApi
from aperture.api.errors import guarded
from aperture.api.image_links import ImageLinks
from aperture.api.images import TEAM_STATS_CACHE_CONTROL, ImagesApi
from aperture.api.jobs import JobsApi
from aperture.api.json_io import MAX_JSON_DEPTH, parse_json, parse_time, read_json
from aperture.api.stats import StatsAnswers
from aperture.domain.errors import ApiError
from aperture.domain.links import Links
from aperture.domain.records import Principal
from aperture.services import provisioning
from aperture.services.access import principal_of
from aperture.services.deletion import ImageDeleter
from aperture.services.images import ImageService
from aperture.services.stats import StatsService
from tests.unit import fakes
from tests.unit.services.helpers import BY, DERIVED, MAX_PIXELS, TEAM, png, upload_service

APP = flask.Flask(__name__)
LINKS = ImageLinks(Links(b"k" * 32), "https://api.example")


def call(router, principal: Principal, path: str, method: str = "GET", **kwargs) -> flask.Response:
    with APP.test_request_context(path, method=method, **kwargs):
        return guarded(flask.request, lambda: router(flask.request, principal))[0]


def error_of(response: flask.Response) -> str:
    return response.get_json()["error"]["message"]


class FirestoreLikeIdentity(fakes.FakeIdentityStore):
    """Refuses document ids as Firestore's client does (ValueError / UnicodeEncodeError)."""

    @staticmethod
    def _document(doc_id: str) -> None:
        if "/" in doc_id:
            raise ValueError("A document must have an even number of path elements")
        if re.fullmatch(r"__.*__", doc_id):
            raise ValueError(f"reserved document id {doc_id!r}")
        doc_id.encode("utf-8")  # UnicodeEncodeError for an unpaired surrogate

    def get_team(self, team_id):
        self._document(team_id)
        return super().get_team(team_id)

    def get_user(self, user_id):
        self._document(user_id)
        return super().get_user(user_id)

    def create_user(self, team, email, role):
        email.encode("utf-8")
        return super().create_user(team, email, role)


@pytest.fixture
def admin():
    identity = FirestoreLikeIdentity()
    issuer = fakes.FakeKeyIssuer()
    *_, key, _ = provisioning.bootstrap(identity, issuer, team_id="acme", email="o@acme.example", role="owner")
    return AdminApi(provisioning.Provisioning(identity, issuer), 65536).router, principal_of(key)


# -- JSON bodies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"user_id": "\\udc00x"}',  # an unpaired surrogate, escaped as JSON allows
        '{"user_id": "usr_1", "name": "\\ud800"}',
        '{"\\udfff": 1}',
    ],
)
def test_a_string_with_an_unpaired_surrogate_is_400(admin, body):
    router, owner = admin

    response = call(router, owner, "/v1/keys", "POST", data=body, content_type="application/json")

    assert response.status_code == 400
    assert "surrogate" in error_of(response)


def test_a_surrogate_pair_is_just_a_character():
    assert parse_json('{"q": "\\ud83d\\ude00"}') == {"q": "\N{GRINNING FACE}"}


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 30_000])
def test_deeply_nested_json_is_400(admin, depth):
    router, owner = admin
    body = "[" * depth + "]" * depth  # 30,000 levels: the parser's RecursionError was a 500

    response = call(router, owner, "/v1/keys", "POST", data=body, content_type="application/json")

    assert response.status_code == 400
    assert error_of(response) in (
        "body is not valid JSON",
        f"body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels",
    )


def test_nesting_up_to_the_limit_is_parsed():
    nested = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    assert parse_json(f'{{"a": {nested}}}')["a"] is not None


def _refuse(*args, **kwargs):
    raise AssertionError("the service was asked")


def test_a_deeply_nested_job_is_400():
    jobs = JobsApi(SimpleNamespace(submit=_refuse), max_json_bytes=65536, links=LINKS)
    body = '{"images": ' + "[" * 20_000 + "]" * 20_000 + "}"

    response = call(jobs.router, Principal("k", "u", TEAM, "member"), "/v1/jobs", "POST", data=body,
                    content_type="application/json")  # fmt: skip

    assert response.status_code == 400


# -- ids that cannot be Firestore document ids ------------------------------------------


@pytest.mark.parametrize("user_id", ["a/b", "__x__", "usr_1/../x", "a.b"])
def test_create_key_for_a_user_id_no_user_can_have_is_404(admin, user_id):
    router, owner = admin

    response = call(router, owner, "/v1/keys", "POST", json={"user_id": user_id})

    assert response.status_code == 404
    assert error_of(response) == "user not found"


@pytest.mark.parametrize("path", ["/v1/teams/__x__", "/v1/teams/__x__/users", "/v1/teams/A_B"])
def test_a_team_id_no_team_can_have_is_404(admin, path):
    router, owner = admin

    response = call(router, owner, path)

    assert response.status_code == 404
    assert error_of(response) == "team not found"


def test_create_user_in_a_team_no_team_can_have_is_404(admin):
    router, owner = admin

    response = call(router, owner, "/v1/teams/__x__/users", "POST", json={"email": "a@b.example"})

    assert response.status_code == 404


@pytest.mark.parametrize("body", [{"email": None}, {"email": 5}, {"email": ""}, {"role": "admin"}])
def test_create_user_without_a_usable_email_is_400(admin, body):
    router, owner = admin

    response = call(router, owner, "/v1/teams/acme/users", "POST", json=body)

    assert response.status_code == 400


@pytest.mark.parametrize("key_id", ["__x__", "a.b"])
def test_revoking_a_key_id_no_key_can_have_is_404(admin, key_id):
    router, owner = admin

    response = call(router, owner, f"/v1/keys/{key_id}", "DELETE")

    assert response.status_code == 404


@pytest.mark.parametrize("cursor", ["a/b", "__x__", "job_1", "job_" + "g" * 20])
def test_a_jobs_cursor_that_is_not_a_job_id_is_400_before_any_lookup(cursor):
    jobs = JobsApi(SimpleNamespace(list=_refuse), max_json_bytes=65536, links=LINKS)

    response = call(jobs.router, Principal("k", "u", TEAM, "member"), "/v1/jobs", query_string={"cursor": cursor})

    assert response.status_code == 400
    assert "cursor" in error_of(response)


# -- times ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"])
def test_a_time_outside_the_range_once_in_utc_is_400(raw):
    with pytest.raises(ApiError) as caught:
        parse_time(raw, "after")
    assert caught.value.status == 400
    assert "after is out of range" in caught.value.message


def test_times_at_the_edges_of_the_range_are_kept():
    assert parse_time("0001-01-01T00:00:00Z", "after") == dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc)
    assert parse_time("0001-01-01T05:00:00+05:00", "after").astimezone(dt.timezone.utc).year == 1
    assert parse_time("9999-12-31", "before").year == 9999


# -- the images function: bodies, caching -------------------------------------------------


@pytest.fixture
def images():
    objects, store = fakes.FakeObjectStore(), fakes.FakeImageStore()
    counters, histograms = fakes.FakeTeamCounters(), fakes.FakeHistogramStore()
    record = store.get(TEAM, upload_service(objects, store).add(TEAM, "p.png", png(seed=3, size=(40, 30)), BY).id)
    service = ImageService(
        store,
        objects,
        counters,
        ImageDeleter(objects, store, counters, histograms),
        max_pixels=MAX_PIXELS,
        max_response_bytes=10_000_000,
        derived_bucket=DERIVED,
        signer=fakes.FakeUrlSigner(),
    )
    stats = StatsAnswers(StatsService(objects, histograms, max_pixels=MAX_PIXELS), TEAM_STATS_CACHE_CONTROL)
    return ImagesApi(service, stats, LINKS).router, record, Principal(BY["key_id"], BY["user_id"], TEAM, "member")


def test_listing_with_a_time_out_of_range_is_400(images):
    router, _, member = images

    response = call(router, member, "/v1/images", query_string={"after": "0001-01-01T00:00:00+05:00"})

    assert response.status_code == 400


@pytest.mark.parametrize("path", ["/v1/stats", "/v1/images", "/v1/images/{id}", "/v1/images/{id}/stats/mean"])
def test_team_answers_are_private(images, path):
    """A team's records, statistics and dashboard may be kept by the caller's
    browser at most, never by a shared cache."""
    router, record, member = images

    response = call(router, member, path.format(id=record.id))

    assert response.status_code == 200
    assert "private" in response.headers["Cache-Control"]
    assert "public" not in response.headers["Cache-Control"]


def test_a_delete_has_no_content_type(images):
    router, record, member = images

    response = call(router, member, f"/v1/images/{record.id}", "DELETE")

    assert response.status_code == 204
    assert "Content-Type" not in response.headers


def test_a_not_modified_original_has_no_content_type(images):
    router, record, member = images

    response = call(router, member, f"/v1/images/{record.id}/original", headers={"If-None-Match": f'"{record.id}"'})

    assert response.status_code == 304
    assert "Content-Type" not in response.headers


def test_read_json_keeps_its_other_refusals():
    with APP.test_request_context("/", method="POST", data=json.dumps([1]), content_type="application/json"):
        with pytest.raises(ApiError, match="JSON object"):
            read_json(flask.request, max_bytes=100, allowed=set())
    with APP.test_request_context("/", method="POST", data="{}", content_type="text/plain"):
        with pytest.raises(ApiError) as caught:
            read_json(flask.request, max_bytes=100, allowed=set())
    assert caught.value.status == 415
