"""Per-band histograms of a decoded image: counted whole, or row band by row band while it decodes; luma; channel selection."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Executor, Future

import numpy as np
from PIL import Image, ImageMode

from aperture.domain.imaging.pixels import RowBand, UnsupportedChannel, band_names, normalize
from aperture.domain.stats.histogram import ALL, LUMA, Histogram, merge


def image_histograms(image: Image.Image, *, luma: bool = True) -> dict[str, Histogram]:
    """Exact histograms of a normalized image: one per band, plus ``all`` and usually ``luma``.

    Keys are `pixels.band_names(image)` (``'r'``, ``'g'``, ...), ``'all'``
    (every sample of every band merged) and ``'luma'``:

    * images with r, g and b bands (RGB, RGBA, RGBX, RGBa): the histogram of
      ``image.convert('L')``, Pillow's ITU-R 601-2 luma L = R*299/1000 +
      G*587/1000 + B*114/1000 (alpha ignored);
    * single-band images (L, I;16*, I, F) and LA, La: the ``l`` band itself;
    * CMYK, YCbCr and other modes Pillow can convert to L: the histogram of
      ``image.convert('L')`` (for YCbCr that is the Y band; for CMYK luma of
      Pillow's naive CMYK->RGB);
    * other modes with an ``l`` band (LAB): that band;
    * modes Pillow cannot convert to L and without an ``l`` band: no ``luma`` key.

    8-bit images are counted with Pillow's C ``Image.histogram()`` (one pass,
    ~13 ms for 12 MP RGB); 16-bit with ``np.bincount``; I and F images with
    ``np.unique``, which may have one entry per pixel.
    """
    image = normalize(image)
    names = band_names(image)
    hists: dict[str, Histogram] = {}
    if ImageMode.getmode(image.mode).typestr == "|u1":
        hists.update(_dense_histograms(names, image.histogram()))
    else:
        samples = np.asarray(image)
        if samples.ndim == 2:
            samples = samples[..., np.newaxis]
        for index, name in enumerate(names):
            hists[name] = Histogram.from_array(samples[..., index])
        hists[ALL] = merge(hists[name] for name in names)

    if luma:
        add_luma(image, hists)
    return hists


def _dense_histograms(names: tuple[str, ...], counts: Iterable[int]) -> dict[str, Histogram]:
    """Per-band and ``all`` histograms from Pillow's 256-per-band counts
    (an RGBX image's padding band comes last and is dropped)."""
    dense = np.asarray(counts, dtype=np.int64).reshape(-1, 256)[: len(names)]
    hists = {name: Histogram.from_dense(band_counts) for name, band_counts in zip(names, dense)}
    hists[ALL] = Histogram.from_dense(dense.sum(axis=0))
    return hists


class RowHistograms:
    """The band histograms of an 8-bit image, counted run by run as its rows
    are decoded: pass `add` as `pixels.open_image(on_rows=...)`; each run is
    counted on `executor`, so counting overlaps the decode of later rows,
    unless the decoder already counted it (`RowBand.counts`)."""

    def __init__(self, executor: Executor):
        self._executor = executor
        # (rows, counts) per run: counts as an array, or the Future of one.
        # Runs come from up to two decoding threads; list.append is atomic.
        self._runs: list[tuple[int, np.ndarray | Future]] = []

    def add(self, rows: RowBand) -> None:
        counts = rows.counts if rows.counts is not None else self._executor.submit(_count_run, rows)
        self._runs.append((rows.height, counts))

    def result(self, image: Image.Image) -> dict[str, Histogram] | None:
        """The histograms (no luma) of the decoded `image`, or None unless the
        runs reported cover it (none at all, or a decode that started over)."""
        if not self._runs or sum(rows for rows, _ in self._runs) != image.height:
            return None
        counts = np.stack([c if isinstance(c, np.ndarray) else c.result() for _, c in self._runs]).sum(axis=0)
        return _dense_histograms(band_names(image), counts)


def _count_run(rows: RowBand) -> np.ndarray:
    # The run's counts become an array on the counting thread, so that the sum,
    # the one step after the decode, is a single vectorised add. RGBX: the
    # padding band (the last 256) is dropped, as in `RowBand.counts`.
    return np.asarray(rows().histogram()[:768], dtype=np.int64)


def add_luma(image: Image.Image, hists: dict[str, Histogram]) -> None:
    """Add the ``luma`` histogram to `image_histograms(image, luma=False)`'s result.

    Separate because for RGB it costs a conversion plus a pass (about as much
    as the band histograms): callers can answer other channels first.
    """
    image = normalize(image)
    luma = _luma(image, band_names(image), hists)
    if luma is not None:
        hists[LUMA] = luma


def _luma(image: Image.Image, names: tuple[str, ...], hists: dict[str, Histogram]) -> Histogram | None:
    if not {"r", "g", "b"} <= set(names) and "l" in names:
        return hists["l"]
    try:
        grey = image.convert("L")
    except ValueError:
        return None
    return Histogram.from_dense(grey.histogram())


def select(hists: dict[str, Histogram], channel: str | None) -> Histogram:
    """The histogram ``?channel=`` asks for: every sample when None, else one band or luma.

    Raises `pixels.UnsupportedChannel` naming the channels this image has.
    """
    if channel is None:
        return hists[ALL]
    if channel == ALL or channel not in hists:
        available = [name for name in hists if name != ALL]
        raise UnsupportedChannel(channel, available)
    return hists[channel]
