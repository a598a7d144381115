"""Real image folders nobody here made, through the commands a user types.

    python bench/folders.py write DIR            # DIR/uci-digits/{train,test}/<digit>/*.png and
                                                 # DIR/fashion-mnist/{train,test}/<class>/*.png
    python bench/folders.py table DIR            # train each encoder on each folder, index, evaluate: one table
    python bench/folders.py speed DIR            # indexing 60,000 Fashion-MNIST PNGs: images/s, and an unchanged re-run

scikit-learn's UCI handwritten digits (1,797 images of 8x8; a seeded, stratified fifth kept as
test/) and Fashion-MNIST (Debian's dataset-fashion-mnist: its 60,000 training and 10,000 test
images as PNG files under class-name folders). For `table`, every registered encoder is fitted on
the folder's train/ with `ingest train --images`, indexed with `ingest run --images`, and scored with
`cbir eval run --queries-dir test/`. Writes bench/folders.json and bench/folders.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from run import machine, run, script  # noqa: E402

ENCODERS = ("pixels", "pca", "dae", "dae-umap")


def write_folders(root: Path) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    from cbir import datasets

    uci = load_digits()
    rng = np.random.default_rng(0)
    test = set()
    for label in range(10):
        members = np.flatnonzero(uci.target == label)
        test.update(rng.choice(members, len(members) // 5, replace=False).tolist())
    for i, (image, label) in enumerate(zip(uci.images, uci.target)):
        folder = root / "uci-digits" / ("test" if i in test else "train") / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 16).clip(0, 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    names = datasets.DATASETS["fashion-mnist"].class_names
    for split in ("train", "test"):
        data = datasets.load("fashion-mnist", split, None, Path(tempfile.gettempdir()))
        for i, (image, label) in enumerate(zip(data.images, data.labels)):
            folder = root / "fashion-mnist" / split / names[label].replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:05d}.png")


def _env(home: Path) -> dict:
    env = {**os.environ, "CBIR_HOME": str(home)}
    for name in ("CBIR_MODEL", "CBIR_QDRANT_URL", "CBIR_ENCODER", "CBIR_COLLECTION", "CBIR_DATASET"):
        env.pop(name, None)
    return env


def table(root: Path, home: Path, folders=("uci-digits", "fashion-mnist")) -> list[dict]:
    env = _env(home)
    rows = []
    for folder in folders:
        train, test = root / folder / "train", root / folder / "test"
        for encoder in ENCODERS:
            collection = f"{folder}-{encoder}"
            print(f"{folder} / {encoder}: train ...", flush=True)
            if encoder != "pixels":
                train_wall, _, _ = run(script("ingest") + ["train", "--images", str(train), "--collection", collection,
                                                            "--encoder", encoder], env)
            else:
                train_wall = 0.0
            print("  index ...", flush=True)
            index_wall, _, _ = run(script("ingest") + ["run", "--images", str(train), "--collection", collection,
                                                        "--encoder", encoder, "--recreate"], env)
            print("  eval ...", flush=True)
            _, _, out = run(script("cbir") + ["eval", "run", "--collection", collection, "--queries-dir", str(test),
                                               "--json"], env)
            summary = json.loads(out.strip().splitlines()[-1])
            rows.append({"folder": folder, "encoder": encoder, "train_seconds": round(train_wall, 1),
                         "index_seconds": round(index_wall, 1), "lrap": summary["lrap"], "p@10": summary["p@10"],
                         "map@100": summary["map@100"], "n_queries": summary["n_queries"],
                         "database_size": summary["database_size"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def speed(root: Path, home: Path) -> dict:
    env = _env(home)
    train = root / "fashion-mnist" / "train"
    n = sum(1 for _ in train.rglob("*.png"))
    first, rss, out = run(script("ingest") + ["run", "--images", str(train), "--collection", "speed", "--encoder", "pixels",
                                               "--recreate"], env)
    again, _, again_out = run(script("ingest") + ["run", "--images", str(train), "--collection", "speed", "--encoder", "pixels"], env)
    default, rss_default, default_out = run(script("ingest") + ["run", "--images", str(train), "--collection", "speed-default",
                                                                 "--recreate"], env)
    return {"images": n, "pixels_seconds": round(first, 1), "pixels_images_per_second": round(n / first, 1),
            "default_encoder_seconds": round(default, 1), "default_images_per_second": round(n / default, 1),
            "unchanged_rerun_seconds": round(again, 2), "peak_rss_mib": max(rss, rss_default),
            "summaries": [out.strip(), again_out.strip(), default_out.strip()]}


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"Measured {r['date']} on {m['cpu']}, {m['cores']} cores (`python bench/folders.py table DIR`): each encoder "
             "trained on the folder's train/ (`ingest train --images`), indexed (`ingest run --images`), scored with "
             "`cbir eval run --queries-dir test/` (labels = subfolder names).", "",
             "| folder | encoder | LRAP | P@10 | mAP@100 | queries vs indexed | train s | index s |", "|---|---|---|---|---|---|---|---|"]
    for x in r.get("rows", []):
        lines.append(f"| {x['folder']} | {x['encoder']} | {x['lrap']:.4f} | {x['p@10']:.4f} | {x['map@100']:.4f} | "
                     f"{x['n_queries']} vs {x['database_size']} | {x['train_seconds']} | {x['index_seconds']} |")
    if "speed" in r:
        s = r["speed"]
        lines += ["", f"Indexing {s['images']:,} Fashion-MNIST PNG files (`python bench/folders.py speed DIR`): "
                  f"{s['pixels_images_per_second']:,.0f} images/s end to end with the pixels encoder ({s['pixels_seconds']} s), "
                  f"{s['default_images_per_second']:,.0f} images/s with the default encoder ({s['default_encoder_seconds']} s); "
                  f"an unchanged re-run: {s['unchanged_rerun_seconds']} s; peak RSS {s['peak_rss_mib']} MiB."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("write", "table", "speed"))
    parser.add_argument("root", type=Path)
    parser.add_argument("--home", type=Path)
    parser.add_argument("--folders", default="uci-digits,fashion-mnist")
    args = parser.parse_args()
    if args.what == "write":
        write_folders(args.root)
        return
    home = args.home or Path(tempfile.mkdtemp(prefix="cbir-folders-"))
    out = REPO / "bench" / "folders.json"
    result = json.loads(out.read_text()) if out.is_file() else {}
    result.update(date=time.strftime("%Y-%m-%d"), machine=machine())
    try:
        if args.what == "table":
            result["rows"] = table(args.root, home, tuple(args.folders.split(",")))
        else:
            result["speed"] = speed(args.root, home)
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    (REPO / "bench" / "folders.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
