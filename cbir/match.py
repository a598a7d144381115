"""Knowing when nothing matches: a query's nearest distance against what real queries get.

When a collection is built, held-out images of its own kind are searched in it and the
distribution of their nearest-neighbour distances is kept with the collection (its quantiles).
A query whose nearest neighbour is farther than nearly all of them looks like nothing in the
collection: a photo of a cat gets ten neighbours, as it must, but they are flagged `none`.

    good   the nearest distance is within what 95% of real queries get
    weak   beyond that, but within what 99.5% get
    none   farther than 99.5% of real queries: no close match

`score` is the fraction of real queries whose nearest neighbour was at least as far (1 = as
close as the closest, 0 = farther than all of them).
"""

from __future__ import annotations

import numpy as np

GOOD, WEAK = 0.95, 0.995
STEPS = np.linspace(0.0, 1.0, 201)  # the quantiles kept: every half percent


def calibrate(nn_distances: np.ndarray, source: str) -> dict:
    """The record kept with a collection, from real queries' nearest-neighbour distances."""
    d = np.asarray(nn_distances, dtype=np.float64)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return {}
    return {"n": int(len(d)), "source": source, "quantiles": [round(float(v), 6) for v in np.quantile(d, STEPS)]}


def score(distance: float, calibration: dict | None) -> float | None:
    """Fraction of calibration queries whose nearest neighbour was at least this far (None: no calibration)."""
    if not calibration or not calibration.get("quantiles"):
        return None
    q = np.asarray(calibration["quantiles"], dtype=np.float64)
    # The empirical CDF, read off the kept quantiles; flat stretches (ties) take their upper end.
    below = float(np.interp(distance, q, STEPS, left=0.0, right=1.0)) if q[-1] > q[0] else float(distance > q[0])
    return round(1.0 - below, 4)


def level(distance: float, calibration: dict | None) -> str | None:
    """'good', 'weak' or 'none' for a query's nearest distance (None without a calibration)."""
    s = score(distance, calibration)
    if s is None:
        return None
    if s >= 1 - GOOD:
        return "good"
    if s >= 1 - WEAK:
        return "weak"
    return "none"
