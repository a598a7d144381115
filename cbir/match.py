"""Knowing when nothing matches: a query against what real queries of the collection's kind look like.

When a collection is built, held-out images of its own kind are searched in it, and two things
about them are kept with the collection (as quantiles):

- the distance to their nearest neighbour: a query farther from everything than real queries are
  looks like nothing in the collection;
- the width of their strokes (in the 28x28 image, as the encoder sees it): a query whose "stroke"
  is wider than nearly all of theirs is a solid shape (a photo of an object, a blot, a speck blown
  up to 20x20), not a drawing like them. An encoder trained to place digits maps any input onto its
  digit clusters, so distance alone lets such shapes through; on MNIST they are half of them.
  (On a collection of solid things, Fashion-MNIST's clothes, its own images are wide too, and the
  test flags nothing they do not.)

    good   the nearest distance is within what 95% of real queries get
    weak   beyond that, but within what 99.5% get
    none   farther than 99.5% of real queries, or strokes wider than 99.5% of theirs: no close match

`score` is the fraction of real queries at least as far (1 = as close as the closest, 0 = farther
than all of them); when the stroke test says none, the smaller of the two fractions.
"""

from __future__ import annotations

import numpy as np

GOOD, WEAK = 0.95, 0.995
STEPS = np.linspace(0.0, 1.0, 201)  # the quantiles kept: every half percent
INK = 0.5  # a 28x28 pixel at least this bright is ink, for the stroke width


def _quantiles(values) -> list[float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return [round(float(x), 6) for x in np.quantile(v, STEPS)] if len(v) else []


def stroke(image: np.ndarray) -> float:
    """The mean stroke width of a 28x28 image's ink (uint8 or float in [0, 1]), in pixels (0 without ink)."""
    from cbir.preprocess.steps import stroke_width

    image = np.asarray(image)
    mask = image >= (INK * 255 if image.dtype == np.uint8 else INK)
    return float(stroke_width(mask)) if mask.any() else 0.0


def calibrate(nn_distances: np.ndarray, source: str, images: np.ndarray | None = None) -> dict:
    """The record kept with a collection: real queries' nearest-neighbour distances (and strokes, given their images)."""
    quantiles = _quantiles(nn_distances)
    if not quantiles:
        return {}
    record = {"n": int(np.isfinite(np.asarray(nn_distances, dtype=np.float64)).sum()), "source": source, "quantiles": quantiles}
    if images is not None and len(images) and np.asarray(images).shape[1:] == (28, 28):
        record["stroke_quantiles"] = _quantiles([stroke(image) for image in images])
    return record


def _beyond(value: float, quantiles: list[float]) -> float:
    """The fraction of the calibration at least as large as value, read off its quantiles."""
    q = np.asarray(quantiles, dtype=np.float64)
    value = round(float(value), 6)  # as the quantiles were kept: a value equal to one compares equal
    # The empirical CDF; flat stretches (ties) take their upper end.
    below = float(np.interp(value, q, STEPS, left=0.0, right=1.0)) if q[-1] > q[0] else float(value > q[0])
    return round(1.0 - below, 4)


def score(distance: float, calibration: dict | None, image: np.ndarray | None = None) -> float | None:
    """Fraction of calibration queries whose nearest neighbour was at least this far (None: no calibration)."""
    if not calibration or not calibration.get("quantiles"):
        return None
    s = _beyond(distance, calibration["quantiles"])
    if image is not None and calibration.get("stroke_quantiles"):
        wide = _beyond(stroke(image), calibration["stroke_quantiles"])
        if wide < 1 - WEAK:  # the stroke test only ever says none: a wide stroke is no reason for doubt short of that
            s = min(s, wide)
    return s


def level(distance: float, calibration: dict | None, image: np.ndarray | None = None) -> str | None:
    """'good', 'weak' or 'none' for a query's nearest distance and its image (None without a calibration)."""
    s = score(distance, calibration, image)
    if s is None:
        return None
    if s >= 1 - GOOD:
        return "good"
    if s >= 1 - WEAK:
        return "weak"
    return "none"
