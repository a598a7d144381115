"""Ranking metrics as plain functions of arrays.

Relevance is boolean (same label as the query); scores are "higher = more similar", so a
distance must be negated first. LRAP follows scikit-learn's definition exactly, ties included:
for each relevant item, the fraction of items scored >= it that are relevant, averaged.
"""

from __future__ import annotations

import numpy as np


def lrap_row(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Label ranking average precision of one query over the full ranking.

    Like scikit-learn, a query with no relevant item (or only relevant items) scores 1.0;
    that is why LRAP over a truncated top-k list is wrong.
    """
    scores = np.asarray(scores)
    relevant = np.asarray(relevant, dtype=bool)
    n, n_rel = scores.size, int(relevant.sum())
    if n_rel == 0 or n_rel == n:
        return 1.0
    # Sorting the relevant and the other scores apart is cheaper than one full sort.
    rel = np.sort(scores[relevant])
    other = np.sort(scores[~relevant])
    # For each relevant item: relevant items scored >= it, and other items scored >= it.
    rel_above = n_rel - np.searchsorted(rel, rel, side="left")
    other_above = other.size - np.searchsorted(other, rel, side="left")
    return float(np.mean(rel_above / (rel_above + other_above)))


def top_k_order(distances: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest distances, nearest first, without sorting everything."""
    k = min(k, distances.size)
    part = np.argpartition(distances, k - 1)[:k]
    return part[np.argsort(distances[part], kind="stable")]


def lrap(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Mean LRAP over rows; equals sklearn.metrics.label_ranking_average_precision_score."""
    scores, relevant = np.atleast_2d(scores), np.atleast_2d(relevant)
    return float(np.mean([lrap_row(s, r) for s, r in zip(scores, relevant)]))


def precision_at_k(ranked_relevant: np.ndarray, k: int) -> float:
    """Fraction of the top k (in ranked order) that is relevant; k larger than the list counts misses."""
    ranked_relevant = np.asarray(ranked_relevant, dtype=bool)
    return float(ranked_relevant[:k].sum() / k)


def average_precision_at_k(ranked_relevant: np.ndarray, k: int, n_relevant: int | None = None) -> float:
    """AP@k = sum over relevant ranks r <= k of P@r, divided by min(k, number of relevant items)."""
    ranked_relevant = np.asarray(ranked_relevant, dtype=bool)
    total = int(ranked_relevant.sum()) if n_relevant is None else int(n_relevant)
    if total == 0:
        return 0.0
    top = ranked_relevant[:k]
    hits = np.cumsum(top)
    ranks = np.arange(1, len(top) + 1)
    return float(np.sum((hits / ranks)[top]) / min(k, total))
