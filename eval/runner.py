"""`cbir eval run`: test images as queries, a full-ranking Qdrant query each, metrics per query."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from cbir import datasets
from cbir.errors import CbirError
from cbir.encoder import Encoder
from cbir.settings import Settings
from eval import metrics
from cbir.store import Store
from search.query import checked


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
    extra: dict = field(default_factory=dict)

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
            "database_size": int(self.database_size),
            "seed": self.seed,
            "lrap": round(float(self.lrap.mean()), 4),
            "p@10": round(float(self.p_at_10.mean()), 4),
            "map@100": round(float(self.ap_at_100.mean()), 4),
            "per_class_lrap": per_class,
            "seconds": round(self.seconds, 1),
        }


def select_queries(n_test: int, n_queries: int | None, seed: int) -> np.ndarray:
    """All test indices in order, or a seeded sample of n without replacement."""
    if n_queries is None or n_queries >= n_test:
        return np.arange(n_test)
    if n_queries < 1:
        raise CbirError(f"--queries must be at least 1 (got {n_queries})")
    return np.random.default_rng(seed).choice(n_test, n_queries, replace=False)


def score_ranking(distances: np.ndarray, db_labels: np.ndarray, query_label: int, n_relevant: int) -> tuple[float, float, float]:
    """(LRAP, P@10, AP@100) of one query, given its distance to every point in the collection."""
    relevant = db_labels == query_label
    top = relevant[metrics.top_k_order(distances, 100)]
    return (
        metrics.lrap_row(-distances, relevant),  # relevance falls as distance grows
        metrics.precision_at_k(top, 10),
        metrics.average_precision_at_k(top, 100, n_relevant),
    )


def evaluate(settings: Settings, encoder: Encoder, n_queries: int | None = 1000, seed: int = 0,
             chunk: int = 256, progress: bool = True, store: Store | None = None) -> EvalReport:
    """Query the whole collection with test images and score every full ranking."""
    test = datasets.load(settings.dataset, "test", settings.data_dir, settings.cache_dir)
    idx = select_queries(len(test), n_queries, seed)
    with checked(settings, encoder, store) as store, ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        db_ids, db_labels = store.labels()
        if len(db_ids) == 0:
            raise CbirError(f"collection {settings.collection_name!r} is empty; run `ingest run` first")
        class_sizes = np.bincount(db_labels, minlength=int(db_labels.max()) + 1)
        start = time.perf_counter()
        codes = encoder.encode(test.images[idx])
        q_labels = test.labels[idx].astype(np.int64)
        out = np.zeros((len(idx), 3))
        with tqdm(total=len(idx), desc="eval", unit="query", disable=not progress) as bar:
            for lo in range(0, len(idx), chunk):
                ids, dist = store.rank_all(codes[lo : lo + chunk])
                if not np.array_equal(ids, db_ids):
                    raise CbirError("the collection changed during evaluation; run it again when ingest is done")
                rows = range(lo, min(lo + chunk, len(idx)))

                def score(j: int) -> tuple[float, float, float]:
                    label = int(q_labels[j])
                    n_rel = int(class_sizes[label]) if label < len(class_sizes) else 0
                    return score_ranking(dist[j - lo], db_labels, label, n_rel)

                # numpy's sorts release the GIL, so threads use every core
                out[rows.start : rows.stop] = list(pool.map(score, rows))
                bar.update(len(rows))
        seconds = time.perf_counter() - start
    return EvalReport(settings.dataset, settings.collection_name, encoder.model_id, len(db_ids), idx, q_labels,
                      out[:, 0], out[:, 1], out[:, 2], seconds, seed if n_queries is not None else None)
