"""The search function's HTTP adapter (api/search.py): query parameters in, the JSON view out.

The routes are called through SearchApi's router with a Principal, as `keyed` does after the
key check, over a stand-in for SearchService that notes what it was asked."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse

import flask
import pytest

from aperture.api.errors import guarded
from aperture.api.image_links import ImageLinks
from aperture.api.search import SearchApi
from aperture.domain.errors import ApiError
from aperture.domain.links import Links
from aperture.domain.records import ImageRecord, ImageStatus, Principal
from aperture.services.search import Filters, Hit

TEAM = "team-a"
IMAGE = "a" * 64
PUBLIC = "https://gateway.example"
CREATED = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def image(image_id: str = IMAGE) -> ImageRecord:
    return ImageRecord(
        team=TEAM,
        id=image_id,
        filename="mug.jpg",
        format="JPEG",
        mime_type="image/jpeg",
        extension="jpg",
        size=1234,
        width=40,
        height=30,
        frames=1,
        mode="RGB",
        bucket="uploads",
        object=f"teams/{TEAM}/{image_id}.jpg",
        created_at=CREATED,
        uploaded_by={},
        status=ImageStatus.PROCESSED,
        camera="Canon EOS",
        labels=["mug", "table"],
        embedding=[1.0, 0.0],
        embedding_model="tiny:v1",
    )


class SpySearch:
    """SearchService's surface, answering one hit and noting each call."""

    model = "tiny:v1"

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def default_min_score(self) -> float:
        return 0.25

    def search(self, team, query, *, limit, min_score=None, filters=Filters()):
        self.calls.append(("search", (team, query), {"limit": limit, "min_score": min_score, "filters": filters}))
        return [Hit(image(), 0.1234567891)]

    def similar(self, team, image_id, *, limit, min_score=None):
        self.calls.append(("similar", (team, image_id), {"limit": limit, "min_score": min_score}))
        return []

    def reembed(self, team, image_id):
        self.calls.append(("reembed", (team, image_id), {}))
        if image_id != IMAGE:
            raise ApiError(404, "image not found")
        return {"id": image_id, "embedding_model": self.model, "changed": True}


LINKS = Links(b"k" * 32)


@pytest.fixture
def spy() -> SpySearch:
    return SpySearch()


def call(spy, method: str, path: str, query: dict | None = None, *, public_url: str = PUBLIC, role: str = "member"):
    api = SearchApi(spy, links=ImageLinks(LINKS, public_url))
    request = flask.Request.from_values(base_url="http://search.internal", path=path, query_string=query, method=method)
    principal = Principal("key_0123456789abcdef", "usr_0123456789abcdef", TEAM, role)
    response, _ = guarded(request, lambda: api.router(request, principal))
    return response.status_code, json.loads(response.get_data()), response.headers


# -- GET /v1/search --------------------------------------------------------------------------


def test_search_passes_the_query_and_defaults(spy):
    status, body, headers = call(spy, "GET", "/v1/search", {"q": "cup of coffee"})

    assert status == 200
    assert spy.calls == [("search", (TEAM, "cup of coffee"), {"limit": 20, "min_score": None, "filters": Filters()})]
    assert headers["Cache-Control"] == "private, no-store"
    assert body["embedding_model"] == "tiny:v1"
    thumbnail = urllib.parse.urlsplit(body["results"][0].pop("thumbnail_url"))
    assert f"{thumbnail.scheme}://{thumbnail.netloc}" == PUBLIC and thumbnail.path == f"/v1/images/{IMAGE}.jpg"
    params = urllib.parse.parse_qsl(thumbnail.query)
    assert params[0] == ("ops", "resize:256x256")
    assert LINKS.verify("GET", thumbnail.path, params).team == TEAM  # signed: opens without a key
    assert body["results"] == [
        {
            "id": IMAGE,
            "score": 0.123457,
            "labels": ["mug", "table"],
            "format": "JPEG",
            "width": 40,
            "height": 30,
            "size": 1234,
            "filename": "mug.jpg",
            "camera": "Canon EOS",
            "created_at": "2024-05-01T12:00:00Z",
        }
    ]


def test_thumbnails_point_at_the_host_without_a_public_url(spy):
    _, body, _ = call(spy, "GET", "/v1/search", {"q": "mug"}, public_url="")

    assert body["results"][0]["thumbnail_url"].startswith(f"http://search.internal/v1/images/{IMAGE}.jpg?")


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"format": "jpg"}, Filters(format="JPEG")),
        ({"format": "JPEG"}, Filters(format="JPEG")),
        ({"format": "png"}, Filters(format="PNG")),
        ({"camera": "Canon EOS"}, Filters(camera="Canon EOS")),
        ({"camera": ""}, Filters()),
        (
            {"after": "2026-01-01", "before": "2026-02-01T10:00:00Z"},
            Filters(
                after=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                before=dt.datetime(2026, 2, 1, 10, tzinfo=dt.timezone.utc),
            ),
        ),
    ],
)
def test_filters_are_parsed(spy, query, expected):
    status, _, _ = call(spy, "GET", "/v1/search", {"q": "mug", **query})

    assert status == 200
    assert spy.calls[0][2]["filters"] == expected


@pytest.mark.parametrize(
    "limit, min_score",
    [("1", "-1"), ("100", "1"), ("0007", "0.35"), ("20", ".5"), ("5", "-0.123456789"), ("5", "0")],
)
def test_good_limits_and_scores(spy, limit, min_score):
    status, _, _ = call(spy, "GET", "/v1/search", {"q": "mug", "limit": limit, "min_score": min_score})

    assert status == 200
    assert spy.calls[0][2]["limit"] == int(limit) and spy.calls[0][2]["min_score"] == float(min_score)


@pytest.mark.parametrize(
    "query, word",
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "99999"}, "limit"),
        ({"min_score": "2"}, "min_score"),
        ({"min_score": "-1.01"}, "min_score"),
        ({"min_score": "nan"}, "min_score"),
        ({"min_score": "inf"}, "min_score"),
        ({"min_score": "1e-3"}, "min_score"),
        ({"min_score": ""}, "min_score"),
        ({"after": "yesterday"}, "after"),
        ({"before": "2026-13-01"}, "before"),
        ({"page": "2"}, "page"),
    ],
)
def test_bad_parameters_are_400_before_the_service_is_asked(spy, query, word):
    status, body, _ = call(spy, "GET", "/v1/search", {"q": "mug", **query})

    assert status == 400 and word in body["error"]["message"]
    assert spy.calls == []


# -- the other routes ------------------------------------------------------------------------


def test_similar_passes_the_image_and_its_parameters(spy):
    status, body, _ = call(spy, "GET", f"/v1/images/{IMAGE}/similar", {"limit": "5", "min_score": "0.1"})

    assert status == 200 and body == {"results": [], "embedding_model": "tiny:v1"}
    assert spy.calls == [("similar", (TEAM, IMAGE), {"limit": 5, "min_score": 0.1})]


def test_similar_takes_no_search_filters(spy):
    status, body, _ = call(spy, "GET", f"/v1/images/{IMAGE}/similar", {"format": "png"})

    assert status == 400 and "format" in body["error"]["message"] and spy.calls == []


def test_model_names_the_model_and_the_default_threshold(spy):
    status, body, _ = call(spy, "GET", "/v1/search/model")

    assert status == 200 and body == {"embedding_model": "tiny:v1", "default_min_score": 0.25}


def test_reembed_answers_the_services_result_and_its_errors(spy):
    assert call(spy, "POST", f"/v1/images/{IMAGE}/embedding")[:2] == (
        200,
        {"id": IMAGE, "embedding_model": "tiny:v1", "changed": True},
    )
    status, body, _ = call(spy, "POST", f"/v1/images/{'b' * 64}/embedding")
    assert status == 404 and body["error"]["message"] == "image not found"


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("POST", "/v1/search", 405),
        ("GET", f"/v1/images/{IMAGE}/embedding", 405),
        ("DELETE", f"/v1/images/{IMAGE}/similar", 405),
        ("GET", "/v1/searches", 404),
    ],
)
def test_other_methods_and_paths(spy, method, path, status):
    assert call(spy, method, path)[0] == status
    assert spy.calls == []
