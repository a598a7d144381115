"""Many readers at once: 1, 4, 8, 16 `search` processes started together on one embedded store.

    python bench/concurrency.py                 # builds the 60,000-point default collection in a temporary CBIR_HOME
    python bench/concurrency.py --home DIR      # uses (and if needed builds) the collection under DIR

For each level: wall time until the last process finished, each process's own time (p50, max),
and failures, which must be 0: any number of readers share the store (and a rebuild running
beside them does not stop them, the `--while-rebuilding` rows). Writes bench/concurrency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DIGIT = REPO / "examples" / "digit.png"
sys.path.insert(0, str(REPO / "bench"))

from run import machine, script  # noqa: E402


def burst(n: int, env: dict) -> dict:
    """Start n searches at once; wait for all."""
    start = time.perf_counter()
    procs = [(time.perf_counter(), subprocess.Popen(script("search") + [str(DIGIT), "--json", "-k", "10"], env=env,
                                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for _ in range(n)]
    times, failures, errors = [], 0, []
    for started, proc in procs:
        out, err = proc.communicate(timeout=600)
        times.append(time.perf_counter() - started)
        ok = proc.returncode == 0 and len(json.loads(out.splitlines()[0])["results"]) == 10 if out else False
        if not ok:
            failures += 1
            errors.append(err.strip()[-200:])
    wall = time.perf_counter() - start
    return {"processes": n, "wall_seconds": round(wall, 3), "p50_seconds": round(statistics.median(times), 3),
            "max_seconds": round(max(times), 3), "failures": failures, "errors": errors[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="CBIR_HOME to use (default: a temporary one)")
    parser.add_argument("--levels", default="1,4,8,16")
    parser.add_argument("--out", type=Path, default=REPO / "bench")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="cbir-conc-"))
    env = {**os.environ, "CBIR_HOME": str(home)}
    for name in ("CBIR_MODEL", "CBIR_QDRANT_URL", "CBIR_ENCODER", "CBIR_COLLECTION", "CBIR_DATASET", "CBIR_WAIT"):
        env.pop(name, None)
    try:
        built = subprocess.run(script("ingest") + ["run"], env=env, capture_output=True, text=True)
        if built.returncode:
            raise SystemExit(built.stderr)
        levels = [int(x) for x in args.levels.split(",")]
        rows = [burst(n, env) for n in levels]
        # The same bursts while `ingest run --recreate` rebuilds the collection beside them.
        rebuild = subprocess.Popen(script("ingest") + ["run", "--recreate"], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        time.sleep(2.0)
        during = [{**burst(n, env), "while_rebuilding": True} for n in levels if n >= 8]
        rebuild_ok = rebuild.wait(timeout=900) == 0
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "rows": rows + during, "rebuild_ok": rebuild_ok}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "concurrency.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "concurrency.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"Measured {r['date']} on {m['cpu']}, {m['cores']} cores (`python bench/concurrency.py`): `search examples/digit.png` "
             "processes started together on the 60,000-point embedded collection.", "",
             "| processes | while rebuilding | wall s (all done) | p50 s per process | max s | failures |", "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['processes']} | {'yes' if row.get('while_rebuilding') else 'no'} | {row['wall_seconds']} | "
                     f"{row['p50_seconds']} | {row['max_seconds']} | {row['failures']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
