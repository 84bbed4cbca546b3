"""Semantic search (S10) through the gateway: Firestore find_nearest in the emulator, the local provider."""

from __future__ import annotations

import io
from importlib import resources

import pytest
import requests
from PIL import Image

from tests.support.api import settled, upload


def skimage_photo(name: str, quality: int = 90) -> bytes:
    image = Image.open(resources.files("skimage") / "data" / name).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture
def images(firestore_client):
    from aperture.storage.images import ImageStore

    return ImageStore(firestore_client)


@pytest.fixture
def team_photos(gateway, make_caller, images):
    alice = make_caller("team-a", "member")
    names = ["coffee.png", "chelsea.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png"]
    ids = upload(gateway, alice, *[(name, skimage_photo(name)) for name in names])
    for image_id in ids:
        assert settled(images, "team-a", image_id).status == "processed"
    return alice, dict(zip(names, ids))


def search(gateway, caller, **params):
    return gateway.get("/v1/search", params=params, headers=caller.headers)


@pytest.mark.parametrize(
    "query, expected",
    [
        ("cup of coffee", "coffee.png"),
        ("a cat sitting", "chelsea.png"),
        ("rocket launch", "rocket.jpg"),
        ("motorbike", "motorcycle_left.png"),
    ],
)
def test_a_prompt_ranks_the_matching_photo_first(gateway, team_photos, query, expected):
    alice, ids = team_photos

    response = search(gateway, alice, q=query, min_score=-1)

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["id"] == ids[expected], [(r["filename"], r["score"]) for r in results]
    assert results[0]["score"] > results[-1]["score"]
    path, _, query = results[0]["thumbnail_url"].partition("?")
    assert path.endswith(f"/v1/images/{ids[expected]}.jpg") and query.startswith("ops=resize%3A256x256&team=team-a&")
    thumbnail = requests.get(results[0]["thumbnail_url"], timeout=60)  # a signed link: no key
    assert thumbnail.status_code == 200 and thumbnail.headers["Content-Type"] == "image/jpeg"
    assert {"labels", "format", "size", "width", "height"} <= set(results[0])


def test_the_default_threshold_drops_unrelated_images(gateway, team_photos):
    alice, _ = team_photos

    loose = search(gateway, alice, q="cup of coffee", min_score=-1).json()["results"]
    default = search(gateway, alice, q="cup of coffee").json()["results"]

    assert len(default) < len(loose)
    assert all(hit["score"] >= 0 for hit in default)


def test_filters_combine_with_the_query(gateway, team_photos):
    alice, ids = team_photos

    as_png = search(gateway, alice, q="coffee", min_score=-1, format="png").json()["results"]
    as_jpeg = search(gateway, alice, q="coffee", min_score=-1, format="jpg").json()["results"]
    later = search(gateway, alice, q="coffee", min_score=-1, after="2999-01-01").json()["results"]

    assert as_png == [] and later == []  # every upload here is a JPEG, made today
    assert as_jpeg[0]["id"] == ids["coffee.png"] and all(hit["format"] == "JPEG" for hit in as_jpeg)


def test_more_like_this_ranks_the_teams_other_images(gateway, team_photos):
    alice, ids = team_photos

    response = gateway.get(
        f"/v1/images/{ids['motorcycle_left.png']}/similar", params={"min_score": -1}, headers=alice.headers
    )

    assert response.status_code == 200, response.text
    found = [hit["id"] for hit in response.json()["results"]]
    assert ids["motorcycle_left.png"] not in found and len(found) == 4


def test_other_teams_images_never_appear(gateway, team_photos, make_caller, images):
    alice, ids = team_photos
    bob = make_caller("team-b", "member")
    [bobs] = upload(gateway, bob, ("bob-coffee.jpg", skimage_photo("coffee.png", quality=80)))  # other bytes
    settled(images, "team-b", bobs)

    for query in ("cup of coffee", "a cat", "anything at all"):
        mine = {hit["id"] for hit in search(gateway, alice, q=query, min_score=-1).json()["results"]}
        theirs = {hit["id"] for hit in search(gateway, bob, q=query, min_score=-1).json()["results"]}
        assert mine <= set(ids.values()) and theirs == {bobs}
    assert gateway.get(f"/v1/images/{ids['coffee.png']}/similar", headers=bob.headers).status_code == 404


@pytest.mark.parametrize(
    "params, status",
    [
        ({"q": ""}, 400),
        ({"q": "   "}, 400),
        ({"q": "x" * 1000}, 400),
        ({"q": "cat", "limit": "0"}, 400),
        ({"q": "cat", "limit": "101"}, 400),
        ({"q": "cat", "min_score": "2"}, 400),
        ({"q": "cat", "after": "nope"}, 400),
        ({"q": "café ☕ 🐈"}, 200),
        ({"q": "cat", "unknown": "1"}, 400),
    ],
)
def test_bad_input_is_a_clear_4xx(gateway, make_caller, params, status):
    alice = make_caller("team-a", "member")

    response = search(gateway, alice, **params)

    assert response.status_code == status, response.text
    if status >= 400:
        assert response.json()["error"]["message"]


def test_an_image_without_an_embedding_yet_is_409_for_similar(gateway, make_caller, firestore_client, images):
    alice = make_caller("team-a", "member")
    [image_id] = upload(gateway, alice, ("c.jpg", skimage_photo("coffee.png")))
    settled(images, "team-a", image_id)
    firestore_client.collection("images").document(f"team-a_{image_id}").update({"embedding_model": "old:model"})

    similar = gateway.get(f"/v1/images/{image_id}/similar", headers=alice.headers)
    reembedded = gateway.post(f"/v1/images/{image_id}/embedding", headers=alice.headers)
    again = gateway.post(f"/v1/images/{image_id}/embedding", headers=alice.headers)

    assert similar.status_code == 409 and "embedding" in similar.json()["error"]["message"]
    assert reembedded.status_code == 200 and reembedded.json()["changed"] is True
    assert again.json()["changed"] is False
    assert gateway.get(f"/v1/images/{image_id}/similar", headers=alice.headers).status_code == 200
