"""Scale on Qdrant Edge: a synthetic collection of random 128-d vectors with an HNSW index.

    python bench/scale.py --points 1000000

Reports upsert and index-build seconds, HNSW query p50/p95 and recall@10 against exact search.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def run(points: int = 1_000_000, dim: int = 128, queries: int = 200, seed: int = 0, efs=(64, 128, 256, 512)) -> dict:
    """Random standard-normal vectors: the hardest case for HNSW (no neighbourhood structure)."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((points, dim), dtype=np.float32)
    probe = rng.standard_normal((queries, dim), dtype=np.float32)
    return measure(data, probe, efs)


def measure(data: np.ndarray, probe: np.ndarray, efs=(64, 128, 256, 512)) -> dict:
    """Build an HNSW-indexed Edge shard of data, and measure its searches for probe against brute force."""
    import qdrant_edge as qe

    points, dim = data.shape
    queries = len(probe)
    folder = Path(tempfile.mkdtemp(prefix="cbir-scale-"))
    try:
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Euclid),
            # Thresholds of 1 kB: index every segment and never fall back to a full scan, at any size.
            hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=1),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1, default_segment_number=2),
        )
        shard = qe.EdgeShard.create(str(folder / "shard"), config)
        start = time.perf_counter()
        for lo in range(0, points, 10_000):
            batch = data[lo : lo + 10_000]
            shard.update(qe.UpdateOperation.upsert_points(
                [qe.Point(id=lo + i, vector=v.tolist()) for i, v in enumerate(batch)]
            ))
        shard.flush()
        upsert_s = time.perf_counter() - start
        start = time.perf_counter()
        shard.optimize()
        build_s = time.perf_counter() - start
        info = shard.info()

        # Exact neighbours by brute force in numpy, in chunks to bound memory.
        sq = (data.astype(np.float32) ** 2).sum(1)
        truth = np.empty((queries, 10), dtype=np.int64)
        for lo in range(0, queries, 50):
            d = sq[None, :] - 2 * probe[lo : lo + 50].astype(np.float32) @ data.T
            part = np.argpartition(d, 10, axis=1)[:, :10]
            truth[lo : lo + 50] = np.take_along_axis(part, np.argsort(np.take_along_axis(d, part, 1), 1), 1)

        results = {}
        for ef in efs:
            lat, hits = [], 0
            for q, want in zip(probe, truth):
                t = time.perf_counter()
                got = shard.query(qe.QueryRequest(limit=10, query=qe.Query.Nearest(q.tolist()),
                                                  params=qe.SearchParams(hnsw_ef=ef)))
                lat.append(time.perf_counter() - t)
                hits += len({int(p.id) for p in got} & set(want.tolist()))
            results[f"hnsw_ef={ef}"] = {
                "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 2),
                "p95_ms": round(float(np.percentile(lat, 95)) * 1e3, 2),
                "recall@10": round(hits / (10 * queries), 4),
            }
        lat = []
        for q in probe[:20]:
            t = time.perf_counter()
            shard.query(qe.QueryRequest(limit=10, query=qe.Query.Nearest(q.tolist()), params=qe.SearchParams(exact=True)))
            lat.append(time.perf_counter() - t)
        results["exact"] = {"p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 2), "recall@10": 1.0}
        shard.close()
        return {
            "points": points, "dim": dim, "queries": queries,
            "upsert_seconds": round(upsert_s, 1), "index_build_seconds": round(build_s, 1),
            "segments": info.segments_count, "indexed_vectors": info.indexed_vectors_count,
            "search": results,
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(run(args.points, queries=args.queries), indent=2))
