"""Cross-check `cbir eval run` without Qdrant: brute-force numpy distances, scikit-learn's LRAP.

    python bench/crosscheck_lrap.py --queries 1000   # or --queries all

Prints, for the same query sample as `cbir eval run --seed 0`: LRAP of an encoder's vectors
(--encoder, default dae-umap; or --model FILE) by scikit-learn and by eval.metrics, P@10, and two
references (raw pixels, the same vectors L2-normalised).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import label_ranking_average_precision_score

from cbir import datasets
from cbir.encoder import Encoder
from cbir.encoders import resolve_model_path
from cbir.settings import Settings
from eval import metrics
from eval.runner import select_queries


def full_ranking_scores(db: np.ndarray, db_labels: np.ndarray, q: np.ndarray, q_labels: np.ndarray, chunk: int = 500):
    """LRAP (sklearn and ours) and P@10 of -euclidean distance, computed in chunks of queries."""
    db = db.astype(np.float64)
    db_sq = (db**2).sum(1)
    sk, ours, p10 = [], [], []
    for lo in range(0, len(q), chunk):
        qc = q[lo : lo + chunk].astype(np.float64)
        dist = np.sqrt(np.maximum((qc**2).sum(1)[:, None] + db_sq[None, :] - 2 * qc @ db.T, 0))
        relevant = q_labels[lo : lo + chunk, None] == db_labels[None, :]
        sk.append(label_ranking_average_precision_score(relevant, -dist) * len(qc))
        ours.append(metrics.lrap(-dist, relevant) * len(qc))
        top = np.argsort(dist, axis=1)[:, :10]
        p10.append(np.take_along_axis(relevant, top, axis=1).mean(1).sum())
    n = len(q)
    return sum(sk) / n, sum(ours) / n, sum(p10) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", default="1000", help="a number, or 'all'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--encoder", default=None)
    args = parser.parse_args()
    settings = Settings.from_env(model=args.model, encoder=args.encoder)
    train = datasets.load("mnist", "train", settings.data_dir, settings.cache_dir)
    test = datasets.load("mnist", "test", settings.data_dir, settings.cache_dir)
    idx = select_queries(len(test), None if args.queries == "all" else int(args.queries), args.seed)
    encoder = Encoder(resolve_model_path(settings))
    start = time.perf_counter()
    db, q = encoder.encode(train.images), encoder.encode(test.images[idx])
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    rows = {}
    for name, (a, b) in {
        "encoder vectors": (db, q),
        "encoder vectors, L2-normalised": (unit(db), unit(q)),
        "raw pixels": (train.images.reshape(-1, 784) / 255.0, test.images[idx].reshape(-1, 784) / 255.0),
    }.items():
        sk, ours, p10 = full_ranking_scores(a, train.labels, b, test.labels[idx])
        rows[name] = {"lrap_sklearn": round(sk, 4), "lrap_ours": round(ours, 4), "p@10": round(p10, 4)}
    print(json.dumps({"model_id": encoder.model_id, "n_queries": len(idx), "seed": args.seed,
                      "seconds": round(time.perf_counter() - start, 1), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
