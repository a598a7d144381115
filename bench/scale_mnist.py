"""Scale on real digits: infinite MNIST (mnist-deformed) at 60,000 and 1,000,000 points (and more if asked).

    python bench/scale_mnist.py                       # 60k and 1M in a temporary CBIR_HOME
    python bench/scale_mnist.py --sizes 60000,1000000,8000000 --home DIR

For each size: `ingest run --dataset mnist-deformed --size N` as a user runs it (wall time, points/s,
encode/upsert/index seconds, peak RSS), the collection's size on disk, then on 1000 MNIST test
queries: exact and HNSW latency (p50, p99, one query at a time through the store), recall@10 of
HNSW against exact (exact checked against numpy brute force on 100 of them), and full-ranking LRAP
(`cbir eval run --queries 1000`, whose curve is the tutorial's figure: LRAP against database size).
Writes bench/scale_mnist.json, bench/scale_mnist.md and docs/lrap_by_database_size.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from run import machine, run, script  # noqa: E402


def disk_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def latency_and_recall(settings, n_queries: int = 1000) -> dict:
    from cbir import datasets
    from cbir.encoders import with_encoder
    from cbir.store import reading

    settings, encoder = with_encoder(settings)
    test = datasets.load("mnist", "test", settings.data_dir, settings.cache_dir)
    codes = encoder.encode(test.images[:n_queries])
    with reading(settings, encoder.expected()) as reader:
        out = {}
        answers = {}
        for exact in (True, False):
            times, ids = [], []
            for code in codes:
                t0 = time.perf_counter()
                hits = reader.query_batch(code[None], 10, exact=exact, fields=())[0]
                times.append(time.perf_counter() - t0)
                ids.append(set(hits.ids.tolist()))
            name = "exact" if exact else "hnsw"
            answers[name] = ids
            out[f"{name}_p50_ms"] = round(float(np.percentile(times, 50)) * 1e3, 3)
            out[f"{name}_p99_ms"] = round(float(np.percentile(times, 99)) * 1e3, 3)
        out["recall@10"] = round(float(np.mean([len(a & b) / 10 for a, b in zip(answers["exact"], answers["hnsw"])])), 4)
        # The exact answers, checked against numpy on 100 queries.
        points = reader.points(with_vectors=True, fields=())
        vec, pid = points.vectors, points.ids
        sq = (vec.astype(np.float64) ** 2).sum(1)
        agree = []
        for code, got in zip(codes[:100], answers["exact"][:100]):
            d = sq - 2 * vec @ code.astype(np.float64)
            agree.append(set(pid[np.argpartition(d, 10)[:10]].tolist()) == got)
        out["exact_equals_numpy"] = float(np.mean(agree))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="60000,1000000")
    parser.add_argument("--home", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the collections (with --home)")
    parser.add_argument("--out", type=Path, default=REPO / "bench")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="cbir-scale-"))
    env = {**os.environ, "CBIR_HOME": str(home), "CBIR_DATASET": "mnist-deformed"}
    for name in ("CBIR_MODEL", "CBIR_QDRANT_URL", "CBIR_ENCODER", "CBIR_COLLECTION"):
        env.pop(name, None)
    rows = []
    try:
        for size in (int(x) for x in args.sizes.split(",")):
            collection = f"deformed-{size}"
            print(f"ingest {size} ...", flush=True)
            wall, rss, out = run(script("ingest") + ["run", "--size", str(size), "--collection", collection, "--recreate",
                                                     "--batch-size", "5000"], env)
            words = out.replace("(", " ").replace(";", " ").replace(",", " ").replace(":", " ").split()
            row = {"points": size, "ingest_wall_seconds": round(wall, 1), "ingest_peak_rss_mib": rss,
                   "encode_seconds": float(words[words.index("encode") + 1]),
                   "upsert_seconds": float(words[words.index("upsert") + 1]),
                   "index_seconds": float(words[words.index("index") + 1]),
                   "disk_mib": round(disk_bytes(home / "qdrant" / collection) / 2**20, 1)}
            row["points_per_second"] = round(size / wall, 1)
            from cbir.settings import Settings

            os.environ.update({"CBIR_HOME": str(home), "CBIR_DATASET": "mnist-deformed", "CBIR_COLLECTION": collection})
            print("latency and recall ...", flush=True)
            row.update(latency_and_recall(Settings.from_env()))
            print("eval ...", flush=True)
            wall, rss, out = run(script("cbir") + ["eval", "run", "--queries", "1000", "--json", "--collection", collection], env)
            summary = json.loads(out.strip().splitlines()[-1])
            row.update(eval_seconds=summary["seconds"], eval_peak_rss_mib=rss, lrap=summary["lrap"], p_at_10=summary["p@10"],
                       lrap_by_database_size=summary["lrap_by_database_size"])
            rows.append(row)
            print(json.dumps(row), flush=True)
            if not args.keep:
                shutil.rmtree(home / "qdrant" / collection, ignore_errors=True)
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale_mnist.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "scale_mnist.md").write_text(markdown(result))
    figure(rows, REPO / "docs" / "lrap_by_database_size.png")
    print(markdown(result))


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    biggest = max(rows, key=lambda r: r["points"])
    curve = {int(k): v for k, v in biggest["lrap_by_database_size"].items()}
    sizes = sorted(curve)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(sizes, [curve[s] for s in sizes], marker="o", color="#4c72b0", label="dae-umap, infinite MNIST")
    ax.set(xscale="log", xlabel="database images (nested random subsets of the collection)", ylabel="LRAP",
           title=f"LRAP of 1000 MNIST test queries against database size, up to {biggest['points']:,}")
    lo = min(curve.values())
    ax.set_ylim(max(0.0, lo - 0.02), min(1.0, max(curve.values()) + 0.01))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"Measured {r['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB (`python bench/scale_mnist.py`): "
             "`ingest run --dataset mnist-deformed --size N` with the default encoder (16-d), one Qdrant Edge shard with "
             "HNSW (m=16, ef_construct=100); 1000 MNIST test queries.", "",
             "| points | ingest s (points/s) | encode / upsert / index s | disk MiB | peak RSS MiB (ingest / eval) | "
             "exact p50 / p99 ms | HNSW p50 / p99 ms | recall@10 | LRAP | P@10 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        lines.append(f"| {x['points']:,} | {x['ingest_wall_seconds']} ({x['points_per_second']:,.0f}) | {x['encode_seconds']} / "
                     f"{x['upsert_seconds']} / {x['index_seconds']} | {x['disk_mib']} | {x['ingest_peak_rss_mib']} / "
                     f"{x['eval_peak_rss_mib']} | {x['exact_p50_ms']} / {x['exact_p99_ms']} | {x['hnsw_p50_ms']} / "
                     f"{x['hnsw_p99_ms']} | {x['recall@10']} | {x['lrap']} | {x['p_at_10']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
