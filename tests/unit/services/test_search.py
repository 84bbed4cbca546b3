"""SearchService: natural-language search, "more like this" and re-embedding (spec S10), over
the in-memory image store (its `nearest` is Firestore's cosine find_nearest with the team and
embedding-model pre-filters) and a tiny deterministic vision provider."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math

import pytest
from PIL import Image

from aperture.domain.errors import ApiError
from aperture.domain.records import ImageRecord, ImageStatus
from aperture.services.search import (
    DEFAULT_MIN_SCORE,
    FILTERED_CANDIDATES,
    MAX_QUERY,
    Filters,
    SearchService,
    normalize_query,
)
from aperture.vision.base import Label
from tests.unit.services.helpers import BY, MAX_PIXELS, OTHER_TEAM, TEAM, UPLOADS, png

START = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
MODEL = "tiny:v2"
OLD_MODEL = "tiny:v1"

# Query texts the provider knows, as (not unit) vectors in a 4-d space. Any other text gets a
# deterministic vector from its hash.
KNOWN = {
    "coffee": [1.0, 0.0, 0.0, 0.0],
    "cat": [0.0, 1.0, 0.0, 0.0],
    "coffee and cat": [1.0, 1.0, 0.0, 0.0],
}
IMAGE_VECTOR = [0.0, 0.0, 0.0, 3.0]  # what `analyze` returns: a re-embedded image points along axis 3


class TinyVision:
    """A `VisionProvider`: deterministic text vectors, a fixed image vector; it counts its calls."""

    dimensions = 4

    def __init__(self, name: str = "tiny", model: str = MODEL) -> None:
        self.name = name
        self.model = model
        self.texts: list[str] = []
        self.images: list[tuple[str, tuple[int, int]]] = []

    def embed_text(self, text: str) -> list[float]:
        self.texts.append(text)
        vector = KNOWN.get(text)
        if vector is None:
            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
            vector = [b - 127.5 for b in digest[: self.dimensions]]
        return _unit(vector)

    def analyze(self, image: Image.Image) -> tuple[list[Label], list[float]]:
        self.images.append((image.mode, image.size))
        return [Label("mug", 0.9)], _unit(IMAGE_VECTOR)


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def image_id(seed: int) -> str:
    return hashlib.sha256(f"image-{seed}".encode()).hexdigest()


def record(
    seed: int,
    embedding: list[float] | None,
    *,
    team: str = TEAM,
    model: str | None = MODEL,
    status: ImageStatus = ImageStatus.PROCESSED,
    fmt: str = "JPEG",
    camera: str | None = None,
    minutes: int = 0,
) -> ImageRecord:
    ident = image_id(seed)
    return ImageRecord(
        team=team,
        id=ident,
        filename=f"img-{seed}.jpg",
        format=fmt,
        mime_type="image/jpeg",
        extension="jpg",
        size=1000 + seed,
        width=40,
        height=30,
        frames=1,
        mode="RGB",
        bucket=UPLOADS,
        object=f"teams/{team}/{ident}.jpg",
        created_at=START + dt.timedelta(minutes=minutes),
        uploaded_by=BY,
        status=status,
        camera=camera,
        labels=["thing"] if status is ImageStatus.PROCESSED else [],
        embedding=embedding,
        provider="tiny" if embedding is not None else None,
        embedding_model=model if embedding is not None else None,
    )


@pytest.fixture
def vision() -> TinyVision:
    return TinyVision()


@pytest.fixture
def service(images, objects, vision) -> SearchService:
    return SearchService(images, objects, lambda: vision, max_pixels=MAX_PIXELS)


@pytest.fixture
def stored(images):
    """Stores records; returns them as given."""

    def store(*records: ImageRecord) -> list[ImageRecord]:
        for r in records:
            assert images.create(r)
        return list(records)

    return store


class NearestCalls:
    """Wraps the store's `nearest` to note how it was asked (limit, max_distance)."""

    def __init__(self, images):
        self.calls: list[dict] = []
        self._nearest = images.nearest
        images.nearest = self

    def __call__(self, team, model, vector, *, limit, max_distance=None):
        self.calls.append({"team": team, "model": model, "limit": limit, "max_distance": max_distance})
        return self._nearest(team, model, vector, limit=limit, max_distance=max_distance)


def apierror(call, *args, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as raised:
        call(*args, **kwargs)
    return raised.value


# -- ranking ---------------------------------------------------------------------------------


def test_results_are_ranked_by_cosine_similarity_with_it_as_the_score(service, stored):
    # not unit vectors: the rank is by angle, not by dot product (c is long but further off)
    a, b, c, d = stored(
        record(1, [2.0, 0.1, 0.0, 0.0]),
        record(2, [1.0, 1.0, 0.0, 0.0]),
        record(3, [5.0, 9.0, 0.0, 0.0]),
        record(4, [0.0, 0.0, 1.0, 0.0]),
    )

    hits = service.search(TEAM, "coffee", limit=10, min_score=-1)

    assert [h.record.id for h in hits] == [a.id, b.id, c.id, d.id]
    for hit in hits:
        assert hit.score == pytest.approx(cosine(KNOWN["coffee"], hit.record.embedding), abs=1e-9)
    assert hits[0].score > hits[1].score > hits[2].score > hits[3].score


def test_limit_cuts_the_ranking(service, stored):
    records = stored(*[record(n, [1.0, n / 10, 0.0, 0.0]) for n in range(6)])

    hits = service.search(TEAM, "coffee", limit=2, min_score=-1)

    assert [h.record.id for h in hits] == [records[0].id, records[1].id]


@pytest.mark.parametrize("limit", [0, -1, 102])
def test_a_limit_out_of_range_is_400(service, limit):
    assert apierror(service.search, TEAM, "coffee", limit=limit).status == 400


def test_only_the_teams_images_of_the_current_model_are_candidates(service, stored, images):
    (mine,) = stored(record(1, [1.0, 0.2, 0.0, 0.0]))
    stored(
        record(2, [1.0, 0.0, 0.0, 0.0], team=OTHER_TEAM),  # the best match, in another team
        record(3, [1.0, 0.0, 0.0, 0.0], model=OLD_MODEL),  # the best match, of another model
        record(4, None, status=ImageStatus.PENDING),  # no embedding yet
    )
    calls = NearestCalls(images)

    hits = service.search(TEAM, "coffee", limit=10, min_score=-1)

    assert [h.record.id for h in hits] == [mine.id]
    assert [(c["team"], c["model"]) for c in calls.calls] == [(TEAM, MODEL)]


# -- the threshold ---------------------------------------------------------------------------

# Scores against "coffee": 1.0, 0.6, 0.3, 0.05, -0.6 (x = cos, y = sin).
SCORES = (1.0, 0.6, 0.3, 0.05, -0.6)


def at_scores(stored) -> dict[float, str]:
    records = stored(*[record(n, [s, math.sqrt(1 - s * s), 0.0, 0.0]) for n, s in enumerate(SCORES)])
    return {s: r.id for s, r in zip(SCORES, records)}


@pytest.mark.parametrize(
    "name, expected",
    [("local", (1.0, 0.6, 0.3)), ("cloud", (1.0, 0.6, 0.3)), ("something-else", (1.0, 0.6, 0.3, 0.05))],
)
def test_the_default_threshold_is_the_providers(images, objects, stored, name, expected):
    by_score = at_scores(stored)
    service = SearchService(images, objects, lambda: TinyVision(name=name), max_pixels=MAX_PIXELS)

    hits = service.search(TEAM, "coffee", limit=10)

    assert service.default_min_score() == DEFAULT_MIN_SCORE.get(name, 0.0)
    assert DEFAULT_MIN_SCORE["local"] == 0.30  # chosen from scripts/bench/search_quality.py (docs/search.md)
    assert [h.record.id for h in hits] == [by_score[s] for s in expected]
    assert all(h.score >= service.default_min_score() for h in hits)


def test_min_score_overrides_the_default_and_asks_the_store_for_that_distance(images, objects, stored):
    by_score = at_scores(stored)
    service = SearchService(images, objects, lambda: TinyVision(name="local"), max_pixels=MAX_PIXELS)
    calls = NearestCalls(images)

    strict = service.search(TEAM, "coffee", limit=10, min_score=0.9)
    loose = service.search(TEAM, "coffee", limit=10, min_score=0.0)
    everything = service.search(TEAM, "coffee", limit=10, min_score=-1.0)

    assert [h.record.id for h in strict] == [by_score[1.0]]
    assert [h.record.id for h in loose] == [by_score[s] for s in (1.0, 0.6, 0.3, 0.05)]
    assert [h.record.id for h in everything] == [by_score[s] for s in SCORES]
    assert [c["max_distance"] for c in calls.calls] == pytest.approx([0.1, 1.0, 2.0])


def test_a_score_equal_to_the_threshold_is_kept(service, stored, images):
    # orthogonal to "coffee": cosine 0 and distance 1 exactly, no rounding
    same, orthogonal, opposite = stored(
        record(1, [1.0, 0.0, 0.0, 0.0]), record(2, [0.0, 1.0, 0.0, 0.0]), record(3, [-1.0, 0.0, 0.0, 0.0])
    )

    hits = service.search(TEAM, "coffee", limit=10, min_score=0.0)
    stored_view = images.nearest(TEAM, MODEL, KNOWN["coffee"], limit=10, max_distance=1.0)

    assert [(h.record.id, h.score) for h in hits] == [(same.id, 1.0), (orthogonal.id, 0.0)]
    assert [(r.id, d) for r, d in stored_view] == [(same.id, 0.0), (orthogonal.id, 1.0)]  # distance <= max
    assert opposite.id not in {h.record.id for h in hits}


def test_per_deployment_thresholds_replace_the_defaults(images, objects, stored):
    by_score = at_scores(stored)
    service = SearchService(
        images, objects, lambda: TinyVision(name="cloud"), max_pixels=MAX_PIXELS, min_scores={"cloud": 0.5}
    )

    assert service.default_min_score() == 0.5
    assert [h.record.id for h in service.search(TEAM, "coffee", limit=10)] == [by_score[1.0], by_score[0.6]]


# -- filters ---------------------------------------------------------------------------------


def test_filters_apply_after_the_vector_query_over_more_candidates(service, stored, images):
    # the two best matches are JPEGs; the PNGs rank below them
    jpeg1, jpeg2, png1, png2 = stored(
        record(1, [1.0, 0.0, 0.0, 0.0], fmt="JPEG"),
        record(2, [1.0, 0.1, 0.0, 0.0], fmt="JPEG"),
        record(3, [1.0, 0.2, 0.0, 0.0], fmt="PNG"),
        record(4, [1.0, 0.3, 0.0, 0.0], fmt="PNG"),
    )
    calls = NearestCalls(images)

    filtered = service.search(TEAM, "coffee", limit=1, min_score=-1, filters=Filters(format="PNG"))
    plain = service.search(TEAM, "coffee", limit=1, min_score=-1)

    assert [h.record.id for h in filtered] == [png1.id]
    assert [h.record.id for h in plain] == [jpeg1.id]
    assert [c["limit"] for c in calls.calls] == [FILTERED_CANDIDATES, 1]


def test_camera_and_time_filters(service, stored):
    early, middle, late = stored(
        record(1, [1.0, 0.0, 0.0, 0.0], camera="Canon EOS", minutes=0),
        record(2, [1.0, 0.1, 0.0, 0.0], camera="Nikon Z6", minutes=10),
        record(3, [1.0, 0.2, 0.0, 0.0], camera="Canon EOS", minutes=20),
    )

    def ids(filters: Filters) -> list[str]:
        return [h.record.id for h in service.search(TEAM, "coffee", limit=10, min_score=-1, filters=filters)]

    assert ids(Filters(camera="Canon EOS")) == [early.id, late.id]
    assert ids(Filters(after=START + dt.timedelta(minutes=10))) == [middle.id, late.id]  # after is inclusive
    assert ids(Filters(before=START + dt.timedelta(minutes=10))) == [early.id]  # before is exclusive
    assert ids(Filters(camera="Canon EOS", after=START + dt.timedelta(minutes=5))) == [late.id]
    assert ids(Filters(camera="Leica")) == []


def test_filters_are_truthy_only_when_set():
    assert not Filters()
    assert Filters(format="PNG") and Filters(camera="x") and Filters(after=START) and Filters(before=START)


# -- more like this --------------------------------------------------------------------------


def test_similar_ranks_the_teams_other_images_and_leaves_the_image_out(service, stored):
    base, near, far, farther = stored(
        record(1, [1.0, 0.0, 0.0, 0.0]),
        record(2, [1.0, 0.2, 0.0, 0.0]),
        record(3, [1.0, 1.0, 0.0, 0.0]),
        record(4, [0.0, 1.0, 0.0, 0.0]),
    )
    stored(record(5, [1.0, 0.0, 0.0, 0.0], team=OTHER_TEAM))

    hits = service.similar(TEAM, base.id, limit=2, min_score=-1)
    every = service.similar(TEAM, base.id, limit=10, min_score=-1)

    assert [h.record.id for h in hits] == [near.id, far.id]  # limit counts the others only
    assert [h.record.id for h in every] == [near.id, far.id, farther.id]


def test_similar_of_the_largest_limit(service, stored):
    base, other = stored(record(1, [1.0, 0.0, 0.0, 0.0]), record(2, [1.0, 0.5, 0.0, 0.0]))

    assert [h.record.id for h in service.similar(TEAM, base.id, limit=100, min_score=-1)] == [other.id]


@pytest.mark.parametrize(
    "kept",
    [
        record(1, None, status=ImageStatus.PENDING),  # still being processed
        record(1, None, status=ImageStatus.FAILED),  # never got one
        record(1, [1.0, 0.0, 0.0, 0.0], model=OLD_MODEL),  # needs `aperture reindex`
    ],
)
def test_similar_without_an_embedding_of_the_current_model_is_409(service, stored, kept):
    stored(kept, record(2, [1.0, 0.0, 0.0, 0.0]))

    error = apierror(service.similar, TEAM, kept.id, limit=5)

    assert error.status == 409 and "embedding" in error.message


@pytest.mark.parametrize(
    "ident", [image_id(9), image_id(1).upper(), image_id(1)[:-1], "../" + image_id(1), "", "x" * 64]
)
def test_similar_of_a_missing_or_malformed_id_is_404(service, stored, ident):
    stored(record(1, [1.0, 0.0, 0.0, 0.0]))

    assert apierror(service.similar, TEAM, ident, limit=5).status == 404


def test_similar_of_another_teams_image_is_404(service, stored):
    (theirs,) = stored(record(1, [1.0, 0.0, 0.0, 0.0], team=OTHER_TEAM))

    assert apierror(service.similar, TEAM, theirs.id, limit=5).status == 404


# -- the query cache -------------------------------------------------------------------------


def test_a_repeated_query_is_embedded_once(service, stored, vision):
    stored(record(1, [1.0, 0.0, 0.0, 0.0]))

    first = service.search(TEAM, "coffee", limit=5, min_score=-1)
    second = service.search(TEAM, "  coffee\t", limit=5, min_score=-1)  # the same query once normalized

    assert vision.texts == ["coffee"]
    assert first == second


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(images, objects, vision):
    service = SearchService(images, objects, lambda: vision, max_pixels=MAX_PIXELS, cache_entries=2)

    for text in ("a", "b", "a", "c"):  # "a" is used again before "c" comes: "b" is the one evicted
        service.query_vector(text)
    assert vision.texts == ["a", "b", "c"]

    service.query_vector("a")
    service.query_vector("c")
    assert vision.texts == ["a", "b", "c"]
    service.query_vector("b")
    assert vision.texts == ["a", "b", "c", "b"]


def test_the_cache_is_per_model(images, objects):
    providers = [TinyVision(model=OLD_MODEL)]
    service = SearchService(images, objects, lambda: providers[-1], max_pixels=MAX_PIXELS)

    service.query_vector("coffee")
    providers.append(TinyVision(model=MODEL))  # a new model (a redeploy with another provider)
    service.query_vector("coffee")

    assert providers[0].texts == ["coffee"] and providers[1].texts == ["coffee"]


# -- the query text --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("cup of coffee", "cup of coffee"),
        ("  cup \t of\n\ncoffee  ", "cup of coffee"),
        ("cafe\u0301", "caf\u00e9"),  # NFD in, NFC out
        ("\u212b ngstr\u00f6m", "\u00c5 ngstr\u00f6m"),  # the Angstrom sign is NFC-normalized to A-ring
        ("a\u00a0b\u3000c", "a b c"),  # non-breaking and ideographic spaces are whitespace
        ("caf\u00e9 \u2615 \U0001f408", "caf\u00e9 \u2615 \U0001f408"),
        ("x" * MAX_QUERY, "x" * MAX_QUERY),
        ("x" * (MAX_QUERY - 1) + "   ", "x" * (MAX_QUERY - 1)),  # counted after collapsing
    ],
)
def test_normalize_query(raw, expected):
    assert normalize_query(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "\t\n\r\x0b\x0c",
        "x" * (MAX_QUERY + 1),
        "a " * 251,  # 501 characters once collapsed
        "cat\x00",
        "cat\x07dog",
        "cat\x1bdog",
        "cat\x7f",
        "cat\x9fdog",  # a C1 control (NEL, \x85, is whitespace and collapses)
        "cat \ud800",  # unpaired surrogates
        "\udfff dog",
    ],
)
def test_bad_queries_are_400(raw):
    assert apierror(normalize_query, raw).status == 400


def test_a_bad_query_is_refused_before_anything_is_embedded(service, vision):
    for raw in ("", "x" * 1000, "cat\x00"):
        assert apierror(service.search, TEAM, raw, limit=5).status == 400
    assert vision.texts == []


def test_the_normalized_text_is_what_gets_embedded(service, vision):
    service.search(TEAM, " cafe\u0301   au  lait ", limit=5)

    assert vision.texts == ["caf\u00e9 au lait"]


# -- re-embedding ----------------------------------------------------------------------------


@pytest.fixture
def with_bytes(objects):
    """Stores the object of a record (a small PNG, whatever the record says)."""

    def put(r: ImageRecord, seed: int = 0) -> ImageRecord:
        objects.put(r.bucket, r.object, png(seed=seed, size=(24, 16)), "image/png")
        return r

    return put


def test_reembed_of_an_image_of_the_current_model_changes_nothing(service, stored, with_bytes, vision, images):
    (current,) = stored(with_bytes(record(1, [1.0, 0.0, 0.0, 0.0])))

    answer = service.reembed(TEAM, current.id)

    assert answer == {"id": current.id, "embedding_model": MODEL, "changed": False}
    assert vision.images == []
    assert images.get(TEAM, current.id) == current


def test_reembed_writes_the_new_embedding_and_model(service, stored, with_bytes, vision, images):
    (old,) = stored(with_bytes(record(1, [1.0, 0.0, 0.0, 0.0], model=OLD_MODEL)))

    answer = service.reembed(TEAM, old.id)

    assert answer == {"id": old.id, "embedding_model": MODEL, "changed": True}
    assert vision.images == [("RGB", (24, 16))]  # the stored bytes, decoded
    now = images.get(TEAM, old.id)
    assert now.embedding == pytest.approx(_unit(IMAGE_VECTOR)) and now.embedding_model == MODEL
    assert dataclasses.replace(now, embedding=old.embedding, embedding_model=OLD_MODEL) == old  # nothing else moved
    # and it is found again, by the current model
    assert [h.record.id for h in service.search(TEAM, "anything", limit=5, min_score=-1)] == [old.id]
    assert service.reembed(TEAM, old.id)["changed"] is False


@pytest.mark.parametrize("status", [ImageStatus.PENDING, ImageStatus.FAILED])
def test_reembed_of_an_image_that_is_not_processed_is_409(service, stored, with_bytes, vision, status):
    (waiting,) = stored(with_bytes(record(1, None, status=status)))

    error = apierror(service.reembed, TEAM, waiting.id)

    assert error.status == 409 and status.value in error.message
    assert vision.images == []


def test_reembed_of_a_missing_malformed_or_other_teams_image_is_404(service, stored, with_bytes):
    (theirs,) = stored(with_bytes(record(1, [1.0, 0.0, 0.0, 0.0], team=OTHER_TEAM, model=OLD_MODEL)))
    (no_bytes,) = stored(record(2, [1.0, 0.0, 0.0, 0.0], model=OLD_MODEL))  # the object is gone

    for ident in (theirs.id, image_id(9), "not-an-id", no_bytes.id):
        assert apierror(service.reembed, TEAM, ident).status == 404, ident


def test_the_model_is_the_providers(service, vision):
    assert service.model == MODEL
    vision.model = "tiny:v3"
    assert service.model == "tiny:v3"
