"""The benchmark suite: every speed claim in the README comes from here.

    python bench/run.py                      # writes bench/results.json and bench/results.md
    python bench/run.py --scale-points 0     # skip the 1M-point HNSW simulation (keeps the last one's numbers)

Needs the MNIST files (CBIR_DATA_DIR) and works in a temporary CBIR_HOME with the packaged default encoder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DIGIT = REPO / "examples" / "digit.png"
TARGETS = {
    "cold search / floor": 3.0,
    "warm query p50 / numpy floor": 1.5,
    "ingest 60k seconds": 30.0,
    "eval all 10k seconds": 60.0,
}


def script(name: str) -> list[str]:
    """A console script as a user runs it, or its module when not installed beside this Python."""
    exe = Path(sys.executable).parent / name
    modules = {"search": "search.cli", "ingest": "ingest.cli", "cbir": "cbir.cli"}
    return [str(exe)] if exe.exists() else [sys.executable, "-c", f"from {modules[name]} import main; main()"]


def run(cmd: list[str], env: dict) -> tuple[float, int, str]:
    """Run a command; return (wall seconds, peak RSS in MiB, stdout). Fails loudly on error."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, unlike getrusage(CHILDREN)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err.read().decode()[-2000:]}")
        return wall, usage.ru_maxrss // 1024, out.read().decode()


def compile_sources() -> None:
    """Byte-compile the project, as an installed package is: pip writes .pyc files when it installs a wheel,
    but an editable install (or PYTHONDONTWRITEBYTECODE=1, as on the machine this was built on) leaves none,
    and a cold start would then time compiling every module's source instead of running it."""
    import compileall

    for package in ("cbir", "ingest", "search", "eval", "serve"):
        compileall.compile_dir(str(REPO / package), quiet=1)


def median_wall(cmd: list[str], env: dict, runs: int) -> tuple[float, list[float], int]:
    """Median wall time of `runs` runs after one warm-up (and the largest peak RSS seen)."""
    run(cmd, env)
    walls, rss = [], 0
    for _ in range(runs):
        wall, peak, _ = run(cmd, env)
        walls.append(wall)
        rss = max(rss, peak)
    return statistics.median(walls), walls, rss


def percentiles(fn, n: int = 300, warmup: int = 20) -> tuple[float, float]:
    """p50 and p95 latency of fn() in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3)


def warm_latency(home: Path) -> dict:
    """Single-query latency through the Python API, and numpy brute force over the same vectors."""
    from cbir import preprocess
    from cbir.encoders import load_encoder
    from cbir.settings import Settings
    from cbir.store import open_backend
    from search.query import search_digits

    settings = Settings.from_env(home=home)
    encoder = load_encoder(settings)
    reader = open_backend(settings).reader(settings.collection_name)
    try:
        digit = preprocess.load_digit(DIGIT)[None]
        code = encoder.encode(digit)[0]
        points = reader.points(with_vectors=True, fields=()).vectors.astype(np.float32)
        sq_norms = (points**2).sum(1)

        def numpy_top10():
            d = sq_norms - 2.0 * (points @ code)
            part = np.argpartition(d, 10)[:10]
            return part[np.argsort(d[part])]

        assert set(reader.query_batch(code[None], 10)[0].ids.tolist()) == set(
            (1_000_000_000 + numpy_top10()).tolist()
        ), "Qdrant and numpy disagree on the top 10"
        api = percentiles(lambda: search_digits(reader, encoder, digit, 10))
        query = percentiles(lambda: reader.query_batch(code[None], 10))
        hnsw = percentiles(lambda: reader.query_batch(code[None], 10, exact=False))
        floor = percentiles(numpy_top10)
    finally:
        reader.close()
    return {
        "api_p50_ms": api[0], "api_p95_ms": api[1],
        "query_p50_ms": query[0], "query_p95_ms": query[1],
        "hnsw_p50_ms": hnsw[0], "hnsw_p95_ms": hnsw[1],
        "numpy_p50_ms": floor[0], "numpy_p95_ms": floor[1],
    }


def hnsw_on_codes(scale) -> dict:
    """The same HNSW measurement on the 60k MNIST codes with 200 test queries: structured data."""
    from cbir import datasets
    from cbir.encoders import load_encoder
    from cbir.settings import Settings

    settings = Settings.from_env()
    encoder = load_encoder(settings)
    train = datasets.load("mnist", "train", settings.data_dir, settings.cache_dir)
    test = datasets.load("mnist", "test", settings.data_dir, settings.cache_dir)
    return scale.measure(encoder.encode(train.images), encoder.encode(test.images[:200]))


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "python": platform.python_version(),
            "platform": platform.platform()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each cold command")
    parser.add_argument("--scale-points", type=int, default=1_000_000, help="0 skips the HNSW simulation")
    parser.add_argument("--out", type=Path, default=REPO / "bench")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="cbir-bench-"))
    env = {**os.environ, "CBIR_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    for name in ("CBIR_MODEL", "CBIR_QDRANT_URL", "CBIR_ENCODER", "CBIR_COLLECTION", "CBIR_DATASET"):
        env.pop(name, None)
    results: dict = {"date": time.strftime("%Y-%m-%d"), "machine": machine()}
    try:
        print("ingest 60k ...", flush=True)
        wall, rss, out = run(script("ingest") + ["run"], env)
        results["ingest"] = {"wall_seconds": round(wall, 2), "peak_rss_mib": rss, "summary": out.strip()}
        words = out.replace("(", " ").replace(";", " ").replace(",", " ").split()
        results["ingest"].update(
            seconds=float(words[words.index("in") + 1]),
            encode_seconds=float(words[words.index("encode") + 1]),
            upsert_seconds=float(words[words.index("upsert") + 1]),
            index_seconds=float(words[words.index("index") + 1]),
            points_per_second=float(words[words.index("points/s") - 1]),
        )

        print("cold search ...", flush=True)
        compile_sources()
        cold, cold_all, search_rss = median_wall(script("search") + [str(DIGIT)], env, args.runs)
        floor, floor_all, _ = median_wall([sys.executable, "-c", "import numpy, PIL.Image"], env, args.runs)
        results["cold_search"] = {
            "median_seconds": round(cold, 3), "runs": [round(w, 3) for w in cold_all], "peak_rss_mib": search_rss,
            "floor_median_seconds": round(floor, 3), "floor_runs": [round(w, 3) for w in floor_all],
            "ratio": round(cold / floor, 2),
        }

        print("warm latency ...", flush=True)
        warm = warm_latency(home)
        warm["ratio_query_to_numpy"] = round(warm["query_p50_ms"] / warm["numpy_p50_ms"], 2)
        warm["ratio_api_to_numpy"] = round(warm["api_p50_ms"] / warm["numpy_p50_ms"], 2)
        results["warm_query"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in warm.items()}

        print("eval ...", flush=True)
        for label, n in (("eval_1000", "1000"), ("eval_all", "all")):
            wall, rss, out = run(script("cbir") + ["eval", "run", "--queries", n, "--json"], env)
            summary = json.loads(out.strip().splitlines()[-1])
            results[label] = {"wall_seconds": round(wall, 2), "eval_seconds": summary["seconds"], "peak_rss_mib": rss,
                              "lrap": summary["lrap"], "p@10": summary["p@10"], "map@100": summary["map@100"],
                              "n_queries": summary["n_queries"]}

        print("training the seed DAE, 1 epoch ...", flush=True)
        model_out = home / "bench-model" / "dae.keras"
        wall, rss, _ = run(script("ingest") + ["train", "--encoder", "dae", "--epochs", "1", "--out", str(model_out)], env)
        prov = json.loads(model_out.with_suffix(".json").read_text())
        results["train"] = {"seconds_per_epoch": prov["train_seconds"], "wall_seconds": round(wall, 1), "peak_rss_mib": rss}

        print("HNSW on the real codes ...", flush=True)
        sys.path.insert(0, str(REPO / "bench"))
        import scale

        results["hnsw_mnist"] = hnsw_on_codes(scale)

        if args.scale_points:
            print(f"scale: {args.scale_points} random vectors with HNSW ...", flush=True)
            results["scale"] = {**scale.run(args.scale_points), "date": results["date"]}
        elif (args.out / "results.json").is_file():  # the 1M run takes minutes: keep the last one
            previous = json.loads((args.out / "results.json").read_text())
            if "scale" in previous:
                results["scale"] = {"date": previous["date"], **previous["scale"]}
    finally:
        shutil.rmtree(home, ignore_errors=True)

    results["targets"] = {
        "cold search / floor": [results["cold_search"]["ratio"], TARGETS["cold search / floor"]],
        "warm query p50 / numpy floor": [results["warm_query"]["ratio_query_to_numpy"], TARGETS["warm query p50 / numpy floor"]],
        "ingest 60k seconds": [results["ingest"]["seconds"], TARGETS["ingest 60k seconds"]],
        "eval all 10k seconds": [results["eval_all"]["eval_seconds"], TARGETS["eval all 10k seconds"]],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    print(markdown(results))


def markdown(r: dict) -> str:
    """The README's Performance table."""
    m, ing, cold, warm = r["machine"], r["ingest"], r["cold_search"], r["warm_query"]
    lines = [
        f"Measured {r['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']} "
        "(`python bench/run.py`).",
        "",
        "| what | measured | target |",
        "|---|---|---|",
        f"| cold `search digit.png`, whole process (median of {len(cold['runs'])}) | {cold['median_seconds']:.3f} s "
        f"= {cold['ratio']}x the floor `python -c \"import numpy, PIL.Image\"` ({cold['floor_median_seconds']:.3f} s) | <= 3x |",
        f"| warm single query, Qdrant Edge, p50 / p95 | {warm['query_p50_ms']:.2f} / {warm['query_p95_ms']:.2f} ms "
        f"= {warm['ratio_query_to_numpy']}x numpy brute force ({warm['numpy_p50_ms']:.2f} / {warm['numpy_p95_ms']:.2f} ms) | <= 1.5x |",
        f"| warm single query, Qdrant Edge's HNSW index (`exact=False`), p50 / p95 | {warm['hnsw_p50_ms']:.2f} / {warm['hnsw_p95_ms']:.2f} ms | |",
        f"| warm single query through the Python API (encode + exact query), p50 / p95 | {warm['api_p50_ms']:.2f} / {warm['api_p95_ms']:.2f} ms | |",
        f"| ingest 60,000 (encode + upsert + HNSW index) | {ing['seconds']:.1f} s (encode {ing['encode_seconds']:.1f} s, "
        f"upsert {ing['upsert_seconds']:.1f} s, index {ing['index_seconds']:.1f} s), {ing['points_per_second']:.0f} points/s | <= 30 s |",
        f"| eval, 1000 queries, full ranking | {r['eval_1000']['eval_seconds']} s (LRAP {r['eval_1000']['lrap']}) | |",
        f"| eval, all 10,000 queries, full ranking | {r['eval_all']['eval_seconds']} s (LRAP {r['eval_all']['lrap']}) | <= 60 s |",
        f"| training the seed DAE, seconds per epoch (60,000 images) | {r['train']['seconds_per_epoch']} s | |",
        f"| peak RSS: ingest / search / eval (all) / train | {ing['peak_rss_mib']} / {cold['peak_rss_mib']} / "
        f"{r['eval_all']['peak_rss_mib']} / {r['train']['peak_rss_mib']} MiB | |",
    ]
    for key, title in (("hnsw_mnist", "The 60,000 MNIST vectors of the default encoder"), ("scale", "Synthetic scale test")):
        if key not in r:
            continue
        s = r[key]
        what = "random " if key == "scale" else ""
        when = f" (measured {s['date']})" if key == "scale" and "date" in s else ""
        lines += ["", f"{title}{when}: {s['points']:,} {what}{s['dim']}-d vectors in one Qdrant Edge shard, "
                  f"HNSW m=16, ef_construct=100: upsert {s['upsert_seconds']} s, index build {s['index_build_seconds']} s, "
                  f"{s['queries']} queries.",
                  "", "| search | p50 ms | p95 ms | recall@10 |", "|---|---|---|---|"]
        for name, v in s["search"].items():
            lines.append(f"| {name} | {v['p50_ms']} | {v.get('p95_ms', '')} | {v['recall@10']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
