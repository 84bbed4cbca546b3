"""The cloud vision provider's request/response mapping, with fake clients.

Cloud Vision and Vertex AI have no emulator, so these fakes have the real
clients' method names and answer shapes (``label_detection`` ->
``label_annotations``/``error``; ``AuthorizedSession.post`` -> the
``:predict`` JSON; ``MultiModalEmbeddingModel.get_embeddings`` ->
``image_embedding``/``text_embedding``). No network, no Google library needed
beyond google-api-core and requests, which the functions already install.
"""

from __future__ import annotations

import base64
import io
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests
from google.api_core import exceptions as api_exceptions
from PIL import Image

from aperture.vision.base import VisionError, VisionProvider, VisionUnavailable, provider_for
from aperture.vision.cloud import EMBEDDING_MODEL, CloudVisionProvider, jpeg_bytes

FUNCTIONS = Path(__file__).resolve().parents[3] / "functions"


# --------------------------------------------------------------------------- fakes


class FakeAnnotator:
    """ImageAnnotatorClient.label_detection(image, *, max_results, timeout) -> AnnotateImageResponse."""

    def __init__(self, labels=(), error=None, raises=None):
        self.labels = labels
        self.error = error or SimpleNamespace(code=0, message="")
        self.raises = raises
        self.calls = []

    def label_detection(self, image, *, max_results=None, retry=None, timeout=None, metadata=(), **kwargs):
        self.calls.append({"image": image, "max_results": max_results, "timeout": timeout})
        if self.raises:
            raise self.raises
        annotations = [SimpleNamespace(description=d, score=s, topicality=s, mid="/m/x") for d, s in self.labels]
        return SimpleNamespace(label_annotations=annotations, error=self.error)


class FakeResponse:
    def __init__(self, status_code=200, payload=None, text=""):
        self.status_code = status_code
        self.payload = payload
        self.text = text

    def json(self):
        if self.payload is None:
            raise ValueError("no JSON")
        return self.payload


class FakeSession:
    """google.auth.transport.requests.AuthorizedSession.post(url, json=..., timeout=...)."""

    def __init__(self, *responses, raises=None):
        self.responses = list(responses)
        self.raises = raises
        self.calls = []

    def post(self, url, json=None, timeout=None, **kwargs):
        self.calls.append({"url": url, "json": json, "timeout": timeout})
        if self.raises:
            raise self.raises
        return self.responses.pop(0)


class FakeEmbeddingModel:
    """vertexai.vision_models.MultiModalEmbeddingModel.get_embeddings(image=, contextual_text=, dimension=)."""

    def __init__(self, image_embedding=None, text_embedding=None):
        self.image_embedding = image_embedding
        self.text_embedding = text_embedding
        self.calls = []

    def get_embeddings(self, image=None, video=None, contextual_text=None, dimension=None, video_segment_config=None):
        self.calls.append({"image": image, "contextual_text": contextual_text, "dimension": dimension})
        return SimpleNamespace(
            image_embedding=self.image_embedding if image is not None else None,
            text_embedding=self.text_embedding if contextual_text is not None else None,
            video_embeddings=[],
        )


class FakeVertexImage:
    def __init__(self, image_bytes):
        self.image_bytes = image_bytes


def predictions(**prediction):
    return FakeResponse(200, {"predictions": [prediction], "deployedModelId": ""})


def vector(n=512, value=3.0):
    return [value] * n


def photo(size=(800, 600), mode="RGB"):
    image = Image.new("RGB", size)
    for x in range(0, size[0], 50):  # some structure, so JPEG sizes are realistic
        image.paste((x % 256, 80, 255 - x % 256), (x, 0, x + 25, size[1]))
    return image.convert(mode)


def make(labels=(("Cat", 0.97),), embedding=None, **options):
    annotator = FakeAnnotator(labels)
    session = FakeSession(predictions(imageEmbedding=embedding or vector()))
    provider = CloudVisionProvider(annotator=annotator, session=session, project="demo-proj", **options)
    return provider, annotator, session


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --------------------------------------------------------------------------- shape


def test_provider_shape_and_factory():
    provider = provider_for("cloud", annotator=FakeAnnotator(), session=FakeSession(), project="p", cache_dir=None)
    assert isinstance(provider, CloudVisionProvider) and isinstance(provider, VisionProvider)
    assert provider.name == "cloud"
    assert provider.dimensions == 512
    assert CloudVisionProvider(dimension=1408).dimensions == 1408
    with pytest.raises(ValueError):
        CloudVisionProvider(dimension=384)
    with pytest.raises(ValueError):
        CloudVisionProvider(embeddings="grpc")


def test_importing_does_not_import_google_vision_or_vertex():
    code = (
        "import sys\n"
        "import aperture.vision.cloud as c\n"
        "c.CloudVisionProvider(project='p')\n"
        "heavy = ('google.cloud.vision', 'vertexai', 'google.cloud.aiplatform', 'torch')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(FUNCTIONS)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --------------------------------------------------------------------------- labels


def test_labels_request_and_mapping():
    provider, annotator, _ = make(
        labels=[("Cat", 0.97), ("Whiskers", 0.91), ("Felidae", 0.88), ("Small to medium-sized cats", 0.86)]
    )
    labels, _ = provider.analyze(photo())
    assert [(label.name, label.score) for label in labels] == [
        ("Cat", 0.97),
        ("Whiskers", 0.91),
        ("Felidae", 0.88),
        ("Small to medium-sized cats", 0.86),
    ]
    [call] = annotator.calls
    assert call["max_results"] == 10 and call["timeout"] == 30.0
    assert set(call["image"]) == {"content"}
    sent = decode(call["image"]["content"])
    assert sent.format == "JPEG" and sent.size == (800, 600) and sent.mode == "RGB"


def test_labels_are_sorted_merged_capped_and_thresholded():
    raw = [(f"thing {i}", 0.5 + i / 100) for i in range(15)] + [("faint", 0.01), ("Cat", 0.2), ("Cat", 0.3)]
    provider, _, _ = make(labels=raw)
    labels, _ = provider.analyze(photo())
    assert len(labels) == 10
    assert [label.score for label in labels] == sorted((label.score for label in labels), reverse=True)
    assert labels[0].name == "thing 14"
    assert "faint" not in [label.name for label in labels]


def test_only_faint_labels_keep_the_best_one_and_no_labels_is_empty():
    provider, _, _ = make(labels=[("Haze", 0.02), ("Fog", 0.03)])
    labels, _ = provider.analyze(photo())
    assert [label.name for label in labels] == ["Fog"]
    provider, _, _ = make(labels=[])
    labels, embedding = provider.analyze(photo())
    assert labels == [] and len(embedding) == 512


def test_large_images_are_downscaled_to_1600_px_and_left_unchanged():
    big = photo((4000, 3000))
    provider, annotator, session = make()
    provider.analyze(big)
    sent = decode(annotator.calls[0]["image"]["content"])
    assert sent.size == (1600, 1200)
    assert big.size == (4000, 3000)
    # The embedding request carries the same JPEG as the label request.
    encoded = session.calls[0]["json"]["instances"][0]["image"]["bytesBase64Encoded"]
    assert base64.b64decode(encoded) == annotator.calls[0]["image"]["content"]


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK", "1", "F", "I;16"])
def test_any_mode_is_sent_as_rgb_jpeg(mode):
    grey = np.asarray(photo((300, 200)).convert("L"))
    if mode == "I;16":
        image = Image.fromarray(grey.astype(np.uint16) * 257)
    elif mode == "F":
        image = Image.fromarray(grey.astype(np.float32) / 255)
    else:
        image = photo((300, 200)).convert(mode)
    assert image.mode == mode
    sent = decode(jpeg_bytes(image))
    assert sent.format == "JPEG" and sent.mode == "RGB" and sent.size == (300, 200)


def test_vision_error_in_the_response_is_raised():
    unavailable = FakeAnnotator(error=SimpleNamespace(code=14, message="backend unavailable"))
    provider = CloudVisionProvider(
        project="p", annotator=unavailable, session=FakeSession(predictions(imageEmbedding=vector()))
    )
    with pytest.raises(VisionUnavailable, match="backend unavailable"):
        provider.analyze(photo())
    bad = FakeAnnotator(error=SimpleNamespace(code=3, message="Bad image data."))
    provider = CloudVisionProvider(
        project="p", annotator=bad, session=FakeSession(predictions(imageEmbedding=vector()))
    )
    with pytest.raises(VisionError, match="Bad image data") as caught:
        provider.analyze(photo())
    assert not isinstance(caught.value, VisionUnavailable)


@pytest.mark.parametrize(
    "exc, transient",
    [
        (api_exceptions.ServiceUnavailable("down"), True),
        (api_exceptions.ResourceExhausted("quota"), True),
        (api_exceptions.DeadlineExceeded("slow"), True),
        (api_exceptions.InvalidArgument("bad"), False),
        (api_exceptions.PermissionDenied("Cloud Vision API has not been used in project"), False),
    ],
)
def test_google_api_errors_are_classified(exc, transient):
    provider = CloudVisionProvider(
        project="p", annotator=FakeAnnotator(raises=exc), session=FakeSession(predictions(imageEmbedding=vector()))
    )
    with pytest.raises(VisionError) as caught:
        provider.analyze(photo())
    assert isinstance(caught.value, VisionUnavailable) is transient
    assert caught.value.__cause__ is exc


# --------------------------------------------------------------------------- embeddings: REST :predict


def test_image_embedding_request_and_normalisation():
    provider, _, session = make(embedding=[1.0, 2.0, 2.0] + [0.0] * 509)
    _, embedding = provider.analyze(photo())
    [call] = session.calls
    assert call["url"] == (
        "https://us-central1-aiplatform.googleapis.com/v1/projects/demo-proj/locations/us-central1"
        f"/publishers/google/models/{EMBEDDING_MODEL}:predict"
    )
    assert call["json"]["parameters"] == {"dimension": 512}
    assert list(call["json"]["instances"][0]) == ["image"]
    assert len(embedding) == 512
    assert embedding[:3] == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert math.isclose(math.fsum(v * v for v in embedding), 1.0)


def test_text_embedding_request():
    session = FakeSession(predictions(textEmbedding=vector(256, -2.0)))
    provider = CloudVisionProvider(session=session, project="p", location="europe-west4", dimension=256)
    embedding = provider.embed_text("  a   red\ncar ")
    assert session.calls[0]["json"] == {"instances": [{"text": "a red car"}], "parameters": {"dimension": 256}}
    assert session.calls[0]["url"].startswith("https://europe-west4-aiplatform.googleapis.com/v1/projects/p/")
    assert embedding == pytest.approx([-1 / 16] * 256)
    with pytest.raises(ValueError):
        provider.embed_text(" \n ")


def test_the_container_gives_the_cloud_provider_the_configured_project_and_region():
    from aperture.config import Config
    from aperture.container import Container

    provider = Container(Config(project="from-config", provider="cloud", region="europe-west4")).vision

    assert provider.project == "from-config"
    assert provider.location == "europe-west4"


def test_a_cloud_provider_without_a_project_says_so():
    with pytest.raises(VisionError, match="project"):
        _ = CloudVisionProvider().project


@pytest.mark.parametrize("status, transient", [(429, True), (503, True), (500, True), (400, False), (403, False)])
def test_http_errors_are_classified(status, transient):
    body = {"error": {"code": status, "message": f"the reason {status}", "status": "X"}}
    provider = CloudVisionProvider(session=FakeSession(FakeResponse(status, body)), project="p")
    with pytest.raises(VisionError, match=f"the reason {status}") as caught:
        provider.embed_text("cat")
    assert isinstance(caught.value, VisionUnavailable) is transient


def test_connection_errors_are_transient():
    provider = CloudVisionProvider(session=FakeSession(raises=requests.ConnectionError("reset")), project="p")
    with pytest.raises(VisionUnavailable):
        provider.embed_text("cat")


@pytest.mark.parametrize(
    "response",
    [
        predictions(),  # no embedding at all
        predictions(imageEmbedding=vector(1408)),  # not the requested dimension
        predictions(imageEmbedding=vector(512, 0.0)),  # zero vector
        FakeResponse(200, {"unexpected": True}),
        FakeResponse(200, None, text="<html>"),
    ],
)
def test_malformed_embedding_answers_are_errors(response):
    provider = CloudVisionProvider(annotator=FakeAnnotator(), session=FakeSession(response), project="p")
    with pytest.raises(VisionError):
        provider.analyze(photo())


# --------------------------------------------------------------------------- embeddings: Vertex AI SDK


def test_sdk_embeddings_mapping():
    model = FakeEmbeddingModel(image_embedding=vector(512, 5.0), text_embedding=vector(512, -1.0))
    annotator = FakeAnnotator([("Dog", 0.9)])
    provider = CloudVisionProvider(
        annotator=annotator, embeddings="sdk", embedding_model=model, vertex_image=FakeVertexImage, project="p"
    )
    labels, image_vector = provider.analyze(photo((2000, 500)))
    text_vector = provider.embed_text("a dog")
    assert [label.name for label in labels] == ["Dog"]
    assert image_vector == pytest.approx([1 / math.sqrt(512)] * 512)
    assert text_vector == pytest.approx([-1 / math.sqrt(512)] * 512)
    image_call, text_call = model.calls
    assert image_call["dimension"] == text_call["dimension"] == 512
    assert isinstance(image_call["image"], FakeVertexImage) and image_call["contextual_text"] is None
    assert image_call["image"].image_bytes == annotator.calls[0]["image"]["content"]
    assert decode(image_call["image"].image_bytes).size == (1600, 400)
    assert text_call == {"image": None, "contextual_text": "a dog", "dimension": 512}


def test_sdk_missing_embedding_is_an_error():
    provider = CloudVisionProvider(
        project="p",
        annotator=FakeAnnotator(),
        embeddings="sdk",
        embedding_model=FakeEmbeddingModel(),
        vertex_image=FakeVertexImage,
    )
    with pytest.raises(VisionError):
        provider.analyze(photo())
    with pytest.raises(VisionError):
        provider.embed_text("x")
