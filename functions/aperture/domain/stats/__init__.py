"""Exact per-band histograms of an image and the statistics answered from them.

The service decodes an image once, reduces its pixels to exact value counts
(`Histogram`), stores those (`serialize`) and answers every later
``/stats/{image}/{func}`` from the counts alone. Every statistic equals what
numpy computes on ``numpy.asarray(normalized_image)`` (or one band of it):

* ``min``/``max``: the extreme sample, as a Python int for integer images.
* ``mean``: integer images give exactly ``np.mean``: the exact integer sum
  divided by the count, correctly rounded, as numpy's float64 accumulation
  gives whenever the sum is below 2**53 (always, for 8- and 16-bit images).
  Float (``F``) images: ``np.mean`` of a float32 array accumulates *in
  float32* and returns float32, which is off the true mean by ~1e-7 relative
  (more on large images). We return the true mean instead, computed in
  float64 from exact per-value products; it equals
  ``np.mean(arr, dtype=np.float64)`` to ~1e-15 relative.
* ``median`` and ``pXX``: numpy's default ("linear") method step by step,
  including its arithmetic in the sample dtype (float32 for ``F`` images)
  and ``_lerp``'s switch of formula at t >= 0.5, so results are bit-identical
  to ``np.median`` / ``np.percentile(arr, q)`` with ``q`` a Python float.
* Any NaN sample makes every statistic NaN, as in numpy.

Pure domain code: numpy and Pillow only.
"""

from aperture.domain.stats.bands import RowHistograms, add_luma, image_histograms, select
from aperture.domain.stats.blocks import BLOCK
from aperture.domain.stats.codec import HistogramTooLarge, deserialize, serialize, serialized_size
from aperture.domain.stats.functions import StatFunction, UnknownFunction, format_value, parse_function
from aperture.domain.stats.histogram import ALL, LUMA, Histogram, merge, pack

__all__ = [
    "Histogram",
    "merge",
    "pack",
    "BLOCK",
    "UnknownFunction",
    "StatFunction",
    "parse_function",
    "format_value",
    "image_histograms",
    "add_luma",
    "RowHistograms",
    "select",
    "serialize",
    "deserialize",
    "serialized_size",
    "HistogramTooLarge",
    "ALL",
    "LUMA",
]
