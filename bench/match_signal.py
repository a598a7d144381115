"""The match signal on queries people make: how often digits are flagged, and how often non-digits are not.

    CBIR_DATA_DIR=../shared/data/mnist python bench/match_signal.py            # 500 queries per condition
    ... bench/match_signal.py --n 100 --home DIR                               # quicker; reuse a collection under DIR

Builds the default 60,000-point MNIST collection (with its calibration) with `ingest run` in a
temporary CBIR_HOME (or uses the one under --home), writes the user-made queries of
bench/user_made.py (every digit condition and every non-digit one: blank page, object, texture,
smooth random image, noise, letters) as files, and searches them through `search.query.iter_search`,
the path `search` takes. A query is *flagged* when `search` refuses it (no ink found) or answers
with `match: none`. Writes bench/match_signal.json and bench/match_signal.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from run import machine, run, script  # noqa: E402


def counts(settings, files: list[Path]) -> Counter:
    from search.query import iter_search

    c = Counter()
    for result in iter_search(settings, files, top_k=10):
        c["refused" if result.error else result.match or "no calibration"] += 1
    return c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="queries per condition")
    parser.add_argument("--seed", type=int, default=1, help="the queries' seed (bench/user_queries.py uses 0)")
    parser.add_argument("--home", type=Path, help="CBIR_HOME to use (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "match_signal", help="writes OUT.json and OUT.md")
    args = parser.parse_args()

    from bench.user_made import CONDITIONS, DIGIT_CONDITIONS, NON_DIGIT_CONDITIONS, make_queries
    from cbir.settings import Settings

    with tempfile.TemporaryDirectory(prefix="cbir-match-") as tmp:
        home = args.home or Path(tmp) / "home"
        env = dict(os.environ, CBIR_HOME=str(home))
        _, _, built = run([*script("ingest"), "run"], env)  # builds it, or says it is up to date
        print(built.strip().splitlines()[-1], file=sys.stderr)
        settings = Settings.from_env(home=home)
        rows = []
        for name in DIGIT_CONDITIONS + NON_DIGIT_CONDITIONS:
            folder = Path(tmp) / "queries" / name
            folder.mkdir(parents=True)
            files = []
            for i, (data, _label) in enumerate(make_queries(name, args.n, args.seed)):
                path = folder / f"{i:04d}.png"
                path.write_bytes(data)
                files.append(path)
            c = counts(settings, files)
            flagged = c["refused"] + c["none"]
            row = {"condition": name, "digit": CONDITIONS[name].digit, "n": len(files), "good": c["good"], "weak": c["weak"],
                   "none": c["none"], "refused": c["refused"], "flagged": round(flagged / len(files), 4)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    digits = [r for r in rows if r["digit"]]
    others = [r for r in rows if not r["digit"]]
    summary = {
        "digits_flagged": round(sum(r["flagged"] * r["n"] for r in digits) / sum(r["n"] for r in digits), 4),
        "non_digits_flagged": round(sum(r["flagged"] * r["n"] for r in others) / sum(r["n"] for r in others), 4),
    }
    out = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "n": args.n, "seed": args.seed, "rows": rows, **summary}
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(out))
    print(markdown(out))


def markdown(out: dict) -> str:
    rows, m = out["rows"], out["machine"]
    digits, others = [r for r in rows if r["digit"]], [r for r in rows if not r["digit"]]
    lines = [f"Measured {out.get('date', '')} on {m['cpu']}, {m['cores']} cores (`python bench/match_signal.py --n {out['n']}`): "
             "the default collection (60,000 MNIST training images), user-made queries from bench/user_made.py "
             f"(seed {out['seed']}); flagged = `none` (no close match) or refused (\"no ink found\").", "",
             "| condition | digit? | n | good | weak | none | refused | flagged (none or refused) |", "|---|:---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['condition']} | {'yes' if r['digit'] else 'no'} | {r['n']} | {r['good']} | {r['weak']} | {r['none']} | "
                     f"{r['refused']} | {r['flagged']:.3f} |")
    lines += ["", f"Digits flagged: {out['digits_flagged']:.3f} of {sum(r['n'] for r in digits)}; "
                  f"non-digits flagged: {out['non_digits_flagged']:.3f} of {sum(r['n'] for r in others)}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
