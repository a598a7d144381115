"""`cbir eval run`: test images as queries, a full-ranking Qdrant query each, metrics per query."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from cbir import datasets
from cbir.encoder import Encoder
from cbir.errors import CbirError
from cbir.settings import Settings
from cbir.store import Backend, reading
from eval import metrics
from eval.ranking import Ranking


@dataclass
class EvalReport:
    """Per-query metrics and what was evaluated."""

    dataset: str
    collection: str
    model_id: str
    database_size: int
    query_indices: np.ndarray
    query_labels: np.ndarray
    lrap: np.ndarray
    p_at_10: np.ndarray
    ap_at_100: np.ndarray
    seconds: float
    seed: int | None = None
    n_skipped: int = 0  # queries whose class has no point in the collection: left out, not scored 1.0
    codes: np.ndarray | None = None  # the queries' vectors, for the embedding map
    top_ids: np.ndarray | None = None  # (n, 10) point ids of each query's first results
    top_labels: np.ndarray | None = None  # (n, 10) their labels
    hits_at: np.ndarray | None = None  # (n, K) bool: is the result at rank k relevant (K = 1000)
    size_curve: dict[int, float] = field(default_factory=dict)  # database size -> LRAP

    def precision_curve(self) -> np.ndarray:
        """Mean P@k for k = 1..K over the queries."""
        k = np.arange(1, self.hits_at.shape[1] + 1)
        return (np.cumsum(self.hits_at, axis=1) / k).mean(0)

    def summary(self) -> dict:
        """The headline numbers, JSON-ready."""
        per_class = {
            str(c): round(float(self.lrap[self.query_labels == c].mean()), 4)
            for c in np.unique(self.query_labels)
        }
        return {
            "dataset": self.dataset,
            "collection": self.collection,
            "model_id": self.model_id,
            "n_queries": int(len(self.lrap)),
            "n_skipped": int(self.n_skipped),
            "database_size": int(self.database_size),
            "seed": self.seed,
            "lrap": round(float(self.lrap.mean()), 4),
            "p@10": round(float(self.p_at_10.mean()), 4),
            "map@100": round(float(self.ap_at_100.mean()), 4),
            "per_class_lrap": per_class,
            "lrap_by_database_size": {str(k): round(v, 4) for k, v in self.size_curve.items()},
            "seconds": round(self.seconds, 1),
        }


def select_queries(n_test: int, n_queries: int | None, seed: int) -> np.ndarray:
    """All test indices in order, or a seeded sample of n without replacement."""
    if n_queries is None:
        return np.arange(n_test)
    if n_queries < 1:
        raise CbirError(f"--queries must be at least 1 (got {n_queries})")
    if n_queries > n_test:
        raise CbirError(f"--queries {n_queries} is more than the {n_test} test images; use --queries all for every one")
    if n_queries == n_test:
        return np.arange(n_test)
    return np.random.default_rng(seed).choice(n_test, n_queries, replace=False)


CURVE_K = 1000
SIZE_STEPS = (10, 30, 100, 300, 1000, 3000, 10_000, 30_000, 60_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000)
DISTANCE_BUDGET = 50_000_000  # distances held at once (400 MB of float64): fewer queries per chunk on big collections
SIZE_CURVE_QUERIES = 1000


def score_ranking(distances: np.ndarray, db_labels: np.ndarray, query_label: int, n_relevant: int):
    """(LRAP, P@10, AP@100, ranks 1..1000 relevant?, first 10 result positions) of one query.

    distances: the query's distance to every point in the collection.
    """
    relevant = db_labels == query_label
    order = metrics.top_k_order(distances, CURVE_K)
    top = relevant[order]
    return (
        metrics.lrap_row(-distances, relevant),  # relevance falls as distance grows
        metrics.precision_at_k(top, 10),
        metrics.average_precision_at_k(top, 100, n_relevant),
        top,
        order[:10],
    )


def database_subsets(n_points: int, seed: int) -> dict[int, np.ndarray]:
    """Nested seeded random subsets of the collection, one per size step below the whole."""
    perm = np.random.default_rng(seed).permutation(n_points)
    return {s: np.sort(perm[:s]) for s in SIZE_STEPS if s < n_points}


def subset_lrap(distances: np.ndarray, relevant: np.ndarray, subsets: dict[int, np.ndarray]) -> dict[int, float]:
    """LRAP of one query against each subset; NaN where the subset holds none of its class.

    scikit-learn would score such a query 1.0, which flatters small databases.
    """
    out = {}
    for size, idx in subsets.items():
        rel = relevant[idx]
        out[size] = metrics.lrap_row(-distances[idx], rel) if rel.any() else float("nan")
    return out


def evaluate(settings: Settings, encoder: Encoder, n_queries: int | None = 1000, seed: int = 0,
             chunk: int | None = None, progress: bool = True, backend: Backend | None = None) -> EvalReport:
    """Query the whole collection with test images and score every full ranking."""
    from cbir.sources import queries_from

    test = datasets.load(queries_from(settings.dataset), "test", settings.data_dir, settings.cache_dir)
    idx = select_queries(len(test), n_queries, seed)
    with reading(settings, encoder.expected(settings.dataset), backend) as reader, \
            ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        ranking = Ranking(reader)
        db_ids = ranking.ids
        if len(db_ids) == 0:
            raise CbirError(f"collection {settings.collection_name!r} is empty; run `ingest run` first")
        chunk = chunk or int(np.clip(DISTANCE_BUDGET // len(db_ids), 1, 256))
        classes, db_codes = np.unique(ranking.labels.astype(str), return_inverse=True)
        class_sizes = np.bincount(db_codes, minlength=len(classes))
        q_all = test.labels[idx]
        present = np.isin(q_all.astype(str), classes)
        n_skipped = int((~present).sum())
        idx = idx[present]
        if len(idx) == 0:
            raise CbirError(f"none of the {len(present)} queries has its class in collection {settings.collection_name!r}; "
                            "nothing to score")
        q_labels = test.labels[idx].astype(np.int64)
        q_codes = np.searchsorted(classes, q_labels.astype(str))
        start = time.perf_counter()
        codes = encoder.encode(test.images[idx])
        out = np.zeros((len(idx), 3))
        hits_at = np.zeros((len(idx), min(CURVE_K, len(db_ids))), dtype=bool)
        top_pos = np.zeros((len(idx), min(10, len(db_ids))), dtype=np.int64)
        subsets = database_subsets(len(db_ids), seed)
        curve_rows: list[dict[int, float]] = []
        with tqdm(total=len(idx), desc="eval", unit="query", disable=not progress, leave=False) as bar:
            for lo in range(0, len(idx), chunk):
                dist = ranking.distances(codes[lo : lo + chunk])
                rows = range(lo, min(lo + chunk, len(idx)))

                def score(j: int):
                    label = int(q_codes[j])
                    res = score_ranking(dist[j - lo], db_codes, label, int(class_sizes[label]))
                    if j >= SIZE_CURVE_QUERIES:
                        return res, None
                    # The whole collection is the last step: its LRAP is the one just computed.
                    return res, {**subset_lrap(dist[j - lo], db_codes == label, subsets), len(db_ids): res[0]}

                # numpy's sorts release the GIL, so threads use every core
                for j, (res, curve) in zip(rows, pool.map(score, rows)):
                    out[j], hits_at[j], top_pos[j] = res[:3], res[3], res[4]
                    if curve is not None:
                        curve_rows.append(curve)
                bar.update(len(rows))
        seconds = time.perf_counter() - start
        db_labels = ranking.labels
    size_curve = {}
    for size in curve_rows[0]:
        scored = [c[size] for c in curve_rows if not np.isnan(c[size])]
        if scored:  # a size at which no query's class is present has no LRAP to show
            size_curve[size] = float(np.mean(scored))
    return EvalReport(settings.dataset, settings.collection_name, encoder.model_id, len(db_ids), idx, q_labels,
                      out[:, 0], out[:, 1], out[:, 2], seconds, seed if n_queries is not None else None, n_skipped,
                      codes=codes, top_ids=db_ids[top_pos], top_labels=db_labels[top_pos], hits_at=hits_at,
                      size_curve=size_curve)
