"""The cloud vision provider: Cloud Vision labels + Vertex AI multimodal embeddings.

* Labels: Cloud Vision ``ImageAnnotatorClient.label_detection`` (package
  ``google-cloud-vision``) on a JPEG of the image downscaled to at most
  1600 px; ``label_annotations`` (description, score) become `Label`s.
* Embeddings: Vertex AI ``multimodalembedding@001`` with ``dimension=512``
  (the model offers 128, 256, 512 and 1408), one space for images and text.
  Two interchangeable clients:

  - ``embeddings="rest"`` (default): the model's ``:predict`` REST method
    through google-auth's ``AuthorizedSession``. No extra dependency
    (google-auth and requests come with the google-cloud-* libraries the
    functions already use), nothing deprecated.
  - ``embeddings="sdk"``: ``vertexai.vision_models.MultiModalEmbeddingModel``
    from ``google-cloud-aiplatform``. That package is large (it pulls
    BigQuery, Resource Manager and google-genai) and Google has deprecated
    the ``vertexai.vision_models`` module (it warns on every call), so it is
    an option, not the default.

Every client library is imported lazily, on first use, and every client can
be injected in the constructor (tests pass small fakes with the same method
names; there is no emulator for these APIs). Failures that may pass on retry
(quota, 5xx, timeouts, connection errors) raise `VisionUnavailable`; others
raise `VisionError`.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from aperture.vision.base import (
    MAX_LABELS,
    MIN_LABEL_SCORE,
    Label,
    VisionError,
    VisionUnavailable,
    rgb_image,
    select_labels,
    unit_vector,
)

__all__ = ["CloudVisionProvider", "EMBEDDING_MODEL", "SUPPORTED_DIMENSIONS", "jpeg_bytes"]

EMBEDDING_MODEL = "multimodalembedding@001"
SUPPORTED_DIMENSIONS = (128, 256, 512, 1408)
DEFAULT_DIMENSION = 512
MAX_SIDE = 1600  # Cloud Vision recommends ~640 px for labels; 1600 keeps detail and stays far below the 20 MB limit
MAX_TEXT_CHARS = 1024
TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def jpeg_bytes(image: Image.Image, *, max_side: int = MAX_SIDE, quality: int = 90) -> bytes:
    """A JPEG of `image` (as RGB) whose longer side is at most `max_side`; `image` is not modified."""
    rgb = rgb_image(image)
    if max(rgb.size) > max_side:
        rgb = rgb.copy() if rgb is image else rgb
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class CloudVisionProvider:
    """`VisionProvider` backed by Cloud Vision and Vertex AI (see module doc)."""

    name = "cloud"

    def __init__(
        self,
        *,
        annotator: Any = None,
        embeddings: str = "rest",
        session: Any = None,
        embedding_model: Any = None,
        vertex_image: Callable[[bytes], Any] | None = None,
        project: str | None = None,
        location: str = "us-central1",
        dimension: int = DEFAULT_DIMENSION,
        max_side: int = MAX_SIDE,
        max_labels: int = MAX_LABELS,
        min_score: float = MIN_LABEL_SCORE,
        timeout: float = 30.0,
        cache_dir: Any = None,  # accepted for symmetry with the local provider; unused
    ) -> None:
        """Clients not given are created on first use from Application Default Credentials.

        annotator: an ``ImageAnnotatorClient`` (or anything with ``label_detection``).
        session: for ``embeddings="rest"``, an ``AuthorizedSession`` (anything with ``post``).
        embedding_model: for ``embeddings="sdk"``, a ``MultiModalEmbeddingModel``;
            vertex_image wraps JPEG bytes as the SDK's ``Image`` (default
            ``vertexai.vision_models.Image``).
        project: the Google Cloud project Vertex AI bills (Config.project).
        """
        if embeddings not in ("rest", "sdk"):
            raise ValueError(f"embeddings must be 'rest' or 'sdk', not {embeddings!r}")
        if dimension not in SUPPORTED_DIMENSIONS:
            raise ValueError(f"{EMBEDDING_MODEL} supports dimensions {SUPPORTED_DIMENSIONS}, not {dimension}")
        self.embeddings = embeddings
        self.dimensions = dimension
        self.location = location
        self.max_side = max_side
        self.max_labels = max_labels
        self.min_score = min_score
        self.timeout = timeout
        self._annotator = annotator
        self._session = session
        self._model = embedding_model
        self._vertex_image = vertex_image
        self._project = project
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def model(self) -> str:
        """Which model made an embedding: vectors of different models are never compared (search)."""
        return f"cloud:{EMBEDDING_MODEL}:{self.dimensions}"

    # -- public API --------------------------------------------------------

    def analyze(self, image: Image.Image) -> tuple[list[Label], list[float]]:
        """Labels and the image embedding; the two API calls run concurrently."""
        data = jpeg_bytes(image, max_side=self.max_side)
        labels = self._executor().submit(self.labels_for, data)
        embedding = self.embed_image_bytes(data)
        return labels.result(), embedding

    def embed_text(self, text: str) -> list[float]:
        text = " ".join(str(text).split())[:MAX_TEXT_CHARS]
        if not text:
            raise ValueError("cannot embed an empty text")
        if self.embeddings == "sdk":
            model = self._sdk_model()
            response = self._call(lambda: model.get_embeddings(contextual_text=text, dimension=self.dimensions))
            vector = getattr(response, "text_embedding", None)
        else:
            vector = self._predict({"text": text}).get("textEmbedding")
        return self._vector(vector, "text")

    def warm(self) -> dict[str, float]:
        """Create the clients now (no API call)."""
        self._vision_client()
        if self.embeddings == "sdk":
            self._sdk_model()
        else:
            self._rest_session()
        return {}

    # -- labels ------------------------------------------------------------

    def labels_for(self, jpeg: bytes) -> list[Label]:
        client = self._vision_client()
        response = self._call(
            lambda: client.label_detection(image={"content": jpeg}, max_results=self.max_labels, timeout=self.timeout)
        )
        error = getattr(response, "error", None)
        if error is not None and getattr(error, "message", ""):
            code = int(getattr(error, "code", 0) or 0)
            # google.rpc.Code: 4 DEADLINE_EXCEEDED, 8 RESOURCE_EXHAUSTED, 13 INTERNAL, 14 UNAVAILABLE
            kind = VisionUnavailable if code in (4, 8, 13, 14) else VisionError
            raise kind(f"Cloud Vision label detection failed ({code}): {error.message}")
        annotations = getattr(response, "label_annotations", None) or []
        return select_labels(
            ((a.description, a.score) for a in annotations), max_labels=self.max_labels, min_score=self.min_score
        )

    # -- embeddings --------------------------------------------------------

    def embed_image_bytes(self, jpeg: bytes) -> list[float]:
        if self.embeddings == "sdk":
            image = self._vertex_image_type()(jpeg)
            model = self._sdk_model()
            response = self._call(lambda: model.get_embeddings(image=image, dimension=self.dimensions))
            vector = getattr(response, "image_embedding", None)
        else:
            vector = self._predict({"image": {"bytesBase64Encoded": base64.b64encode(jpeg).decode("ascii")}}).get(
                "imageEmbedding"
            )
        return self._vector(vector, "image")

    def _vector(self, values: Any, what: str) -> list[float]:
        if not values:
            raise VisionError(f"Vertex AI returned no {what} embedding")
        return unit_vector(values, dimensions=self.dimensions)

    def predict_url(self) -> str:
        return (
            f"https://{self.location}-aiplatform.googleapis.com/v1/projects/{self.project}/locations/"
            f"{self.location}/publishers/google/models/{EMBEDDING_MODEL}:predict"
        )

    def _predict(self, instance: dict[str, Any]) -> dict[str, Any]:
        body = {"instances": [instance], "parameters": {"dimension": self.dimensions}}
        session = self._rest_session()
        response = self._call(lambda: session.post(self.predict_url(), json=body, timeout=self.timeout))
        status = int(getattr(response, "status_code", 200))
        if status >= 400:
            kind = VisionUnavailable if status in TRANSIENT_HTTP else VisionError
            raise kind(f"Vertex AI {EMBEDDING_MODEL} answered {status}: {_error_message(response)}")
        try:
            predictions = response.json()["predictions"]
            return dict(predictions[0])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise VisionError(f"unexpected Vertex AI answer: {exc!r}") from None

    # -- clients (lazy) ----------------------------------------------------

    @property
    def project(self) -> str:
        if not self._project:
            raise VisionError("the cloud provider needs a project (the container passes Config.project)")
        return self._project

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cloud-vision")
            return self._pool

    def _vision_client(self) -> Any:
        with self._lock:
            if self._annotator is None:
                from google.cloud import vision

                self._annotator = vision.ImageAnnotatorClient()
            return self._annotator

    def _rest_session(self) -> Any:
        with self._lock:
            if self._session is None:
                import google.auth
                from google.auth.transport.requests import AuthorizedSession

                credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
                self._session = AuthorizedSession(credentials)
            return self._session

    def _sdk_model(self) -> Any:
        with self._lock:
            if self._model is None:
                import vertexai
                from vertexai.vision_models import MultiModalEmbeddingModel

                vertexai.init(project=self.project, location=self.location)
                self._model = MultiModalEmbeddingModel.from_pretrained(EMBEDDING_MODEL)
            return self._model

    def _vertex_image_type(self) -> Callable[[bytes], Any]:
        if self._vertex_image is None:
            from vertexai.vision_models import Image as VertexImage

            self._vertex_image = lambda data: VertexImage(image_bytes=data)
        return self._vertex_image

    @staticmethod
    def _call(call: Callable[[], Any]) -> Any:
        """Run an API call, turning transport and Google API errors into Vision errors."""
        try:
            return call()
        except VisionError:
            raise
        except Exception as exc:  # classified below; anything unknown propagates unchanged
            kind = _classify(exc)
            if kind is None:
                raise
            raise kind(f"{type(exc).__name__}: {exc}") from exc


def _classify(exc: Exception) -> type[VisionError] | None:
    """VisionUnavailable for retryable failures, VisionError for other API errors, None for the rest."""
    try:
        from google.api_core import exceptions as api
    except ImportError:  # pragma: no cover - google-api-core ships with every google-cloud-* package
        api = None
    if api is not None and isinstance(exc, api.GoogleAPICallError):
        retryable = (
            api.TooManyRequests,
            api.InternalServerError,
            api.BadGateway,
            api.ServiceUnavailable,
            api.GatewayTimeout,
            api.DeadlineExceeded,
        )
        return VisionUnavailable if isinstance(exc, retryable) else VisionError
    if api is not None and isinstance(exc, api.RetryError):
        return VisionUnavailable
    try:
        import requests
    except ImportError:  # pragma: no cover
        requests = None
    if requests is not None and isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return VisionUnavailable
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return VisionUnavailable
    try:
        from google.auth import exceptions as auth
    except ImportError:  # pragma: no cover
        auth = None
    if auth is not None and isinstance(exc, auth.TransportError):
        return VisionUnavailable
    if auth is not None and isinstance(exc, auth.GoogleAuthError):
        return VisionError
    return None


def _error_message(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])[:500]
    except Exception:  # the body is not the usual {"error": {...}} JSON
        return str(getattr(response, "text", ""))[:500]
