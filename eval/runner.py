"""`cbir eval run`: queries against the whole collection, a full ranking each, metrics per query.

The queries (eval/queries.py): a data set's test images, a labelled folder, or held-out points of
the collection itself. Relevant = a point with the query's label; the score of a point is its
negated distance.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from cbir import __version__
from cbir.encoder import Encoder
from cbir.errors import CbirError
from cbir.settings import Settings
from cbir.store import Backend, reading
from eval import metrics
from eval.queries import Queries, select_queries, test_split
from eval.queries import holdout as holdout_queries
from eval.ranking import Ranking

__all__ = ["EvalReport", "Queries", "evaluate", "score_ranking", "select_queries"]


@dataclass
class EvalReport:
    """Per-query metrics and what was evaluated."""

    dataset: str
    collection: str
    model_id: str
    database_size: int
    queries: Queries  # what was asked, after the queries that could not be scored were left out
    lrap: np.ndarray
    p_at_10: np.ndarray
    ap_at_100: np.ndarray
    seconds: float
    n_skipped: int = 0  # queries whose class has no point in the collection (or no label): left out, not scored 1.0
    codes: np.ndarray | None = None  # the queries' vectors, for the embedding map
    top_ids: np.ndarray | None = None  # (n, 10) point ids of each query's first results
    top_labels: np.ndarray | None = None  # (n, 10) their labels
    top_payloads: list | None = None  # their payloads (a folder's file paths), for the grid's pictures
    hits_at: np.ndarray | None = None  # (n, K) bool: is the result at rank k relevant (K = 1000)
    size_curve: dict[int, float] = field(default_factory=dict)  # database size -> LRAP
    class_names: dict = field(default_factory=dict)  # label -> name, for data sets whose labels stand for names
    point_image: object = None  # (point id, payload) -> its stored 28x28 image, for the grid
    encoder: str = ""

    @property
    def query_labels(self) -> np.ndarray:
        return self.queries.labels

    @property
    def seed(self) -> int | None:
        return self.queries.seed

    def precision_curve(self) -> np.ndarray:
        """Mean P@k for k = 1..K over the queries."""
        k = np.arange(1, self.hits_at.shape[1] + 1)
        return (np.cumsum(self.hits_at, axis=1) / k).mean(0)

    def summary(self) -> dict:
        """The headline numbers, JSON-ready."""
        labels = self.query_labels.astype(str)
        per_class = {c: round(float(self.lrap[labels == c].mean()), 4) for c in sorted(set(labels), key=_natural)}
        return {
            "dataset": self.dataset,
            "collection": self.collection,
            "model_id": self.model_id,
            "encoder": self.encoder,
            "cbir_version": __version__,
            "queries": self.queries.what,
            "n_queries": int(len(self.lrap)),
            "n_skipped": int(self.n_skipped),
            "database_size": int(self.database_size),
            "seed": self.seed,
            "lrap": round(float(self.lrap.mean()), 4),
            "p@10": round(float(self.p_at_10.mean()), 4),
            "map@100": round(float(self.ap_at_100.mean()), 4),
            "per_class_lrap": per_class,
            "class_names": {c: self.class_names[c] for c in per_class if c in self.class_names},
            "lrap_by_database_size": {str(k): round(v, 4) for k, v in self.size_curve.items()},
            "seconds": round(self.seconds, 1),
        }


def _natural(text: str):
    """'2' before '10'; names after numbers."""
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


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
             chunk: int | None = None, progress: bool = True, backend: Backend | None = None,
             queries: Queries | None = None, holdout: float | None = None) -> EvalReport:
    """Query the whole collection and score every full ranking.

    The queries: given, or a held-out fraction of the collection's own points (holdout), or the
    collection's data set's test images (n_queries of them, seeded; None: all).
    """
    from search.query import class_names
    from search.stored import StoredImages

    with reading(settings, encoder.expected(settings.dataset), backend) as reader, \
            ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        if queries is None and holdout is not None:
            stored = StoredImages(settings, reader.meta)
            queries = holdout_queries(reader, holdout, seed, lambda pid, payload: stored.image(pid, payload))
        elif queries is None:
            queries = test_split(settings, n_queries, seed)
        ranking = Ranking(reader, exclude=queries.exclude)
        db_ids = ranking.ids
        if len(db_ids) == 0:
            raise CbirError(f"collection {settings.collection_name!r} is empty; run `ingest run` first")
        chunk = chunk or int(np.clip(DISTANCE_BUDGET // len(db_ids), 1, 256))
        db_text = np.array([str(x) if x is not None else "" for x in ranking.labels])
        classes, db_codes = np.unique(db_text, return_inverse=True)
        class_sizes = np.bincount(db_codes, minlength=len(classes))
        q_text = np.array([str(x) if x is not None else "" for x in queries.labels])
        present = np.isin(q_text, classes[classes != ""]) & (q_text != "")
        n_skipped = int((~present).sum())
        if not present.any():
            raise CbirError(f"none of the {len(queries)} queries has its class in collection {settings.collection_name!r}; "
                            "nothing to score")
        queries = queries.keep(present)
        q_codes = np.searchsorted(classes, q_text[present])
        start = time.perf_counter()
        codes = queries.vectors if queries.vectors is not None else encoder.encode(queries.images)
        n = len(queries)
        out = np.zeros((n, 3))
        hits_at = np.zeros((n, min(CURVE_K, len(db_ids))), dtype=bool)
        top_pos = np.zeros((n, min(10, len(db_ids))), dtype=np.int64)
        subsets = database_subsets(len(db_ids), seed)
        curve_rows: list[dict[int, float]] = []
        with tqdm(total=n, desc="eval", unit="query", disable=not progress, leave=False) as bar:
            for lo in range(0, n, chunk):
                dist = ranking.distances(codes[lo : lo + chunk])
                rows = range(lo, min(lo + chunk, n))

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
        top_payloads = [[{"path": ranking.paths[i]} if ranking.paths is not None else {} for i in row] for row in top_pos]
        names = class_names(reader.meta.dataset)
        stored = StoredImages(settings, reader.meta)
    size_curve = {}
    for size in curve_rows[0]:
        scored = [c[size] for c in curve_rows if not np.isnan(c[size])]
        if scored:  # a size at which no query's class is present has no LRAP to show
            size_curve[size] = float(np.mean(scored))
    return EvalReport(settings.dataset, settings.collection_name, encoder.model_id, len(db_ids), queries,
                      out[:, 0], out[:, 1], out[:, 2], seconds, n_skipped,
                      codes=codes, top_ids=db_ids[top_pos], top_labels=db_labels[top_pos], top_payloads=top_payloads,
                      hits_at=hits_at, size_curve=size_curve, class_names=names, point_image=stored.image,
                      encoder=encoder.name)
