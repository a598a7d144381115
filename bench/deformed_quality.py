"""Are deformed digits (cbir.deform) still the same digit to the project's own encoder?

    CBIR_DATA_DIR=... python bench/deformed_quality.py                 # 10,000 deformed items, default parameters
    CBIR_DATA_DIR=... python bench/deformed_quality.py --sweep --items 2000   # a few parameter choices side by side

Encodes the 60,000 MNIST training digits and `--items` deformed items (60,000 .. 60,000 + items - 1,
each a deformation of training digit i % 60,000) with the default encoder (`cbir.encoders.load_encoder`),
finds each deformed item's nearest original training digit by brute-force Euclidean distance,
and reports the fraction whose neighbour has the item's label: once over all 60,000 originals
(the neighbour is then often the item's own source digit, which says the deformation is mild,
not that the digit is legible) and once with the item's own source left out (the honest test:
is it still a digit of its class?). For scale, the same leave-one-out figure for undeformed
training digits and for the 10,000 test digits is printed first.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace

import numpy as np

from cbir import datasets
from cbir.deform import DeformParams, generate
from cbir.encoders import load_encoder
from cbir.settings import Settings


def nearest(queries: np.ndarray, db: np.ndarray, exclude: np.ndarray | None = None, chunk: int = 1000) -> np.ndarray:
    """Index of each query's nearest db row (squared Euclidean), optionally never the row exclude[q]."""
    db = db.astype(np.float64)
    db_sq = (db**2).sum(1)
    out = np.empty(len(queries), dtype=np.int64)
    for lo in range(0, len(queries), chunk):
        q = queries[lo : lo + chunk].astype(np.float64)
        dist = db_sq[None, :] - 2.0 * q @ db.T  # + |q|^2, the same for every row
        if exclude is not None:
            dist[np.arange(len(q)), exclude[lo : lo + chunk]] = np.inf
        out[lo : lo + chunk] = dist.argmin(1)
    return out


def score(encoder, train, train_codes: np.ndarray, items: int, params: DeformParams, seed: int) -> dict:
    n = len(train)
    t0 = time.perf_counter()
    images, labels, source = generate(train.images, train.labels, n, n + items, seed, params)
    made = time.perf_counter() - t0
    codes = encoder.encode(images)
    nn_all = nearest(codes, train_codes)
    nn_other = nearest(codes, train_codes, exclude=source)
    ink_ratio = images.reshape(items, -1).sum(1) / train.images[source].reshape(items, -1).sum(1)
    return {
        "params": asdict(params),
        "items": items,
        "same_label_nn": round(float((train.labels[nn_all] == labels).mean()), 4),
        "nn_is_source": round(float((nn_all == source).mean()), 4),
        "same_label_nn_source_excluded": round(float((train.labels[nn_other] == labels).mean()), 4),
        "ink_ratio_p1_p50_p99": [round(float(v), 3) for v in np.percentile(ink_ratio, [1, 50, 99])],
        "generate_s": round(made, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep", action="store_true", help="also score other elastic and affine settings")
    args = parser.parse_args()

    settings = Settings.from_env()
    train = datasets.load("mnist", "train", settings.data_dir, settings.home / "data")
    test = datasets.load("mnist", "test", settings.data_dir, settings.home / "data")
    encoder = load_encoder(settings)
    t0 = time.perf_counter()
    train_codes = encoder.encode(train.images)
    print(f"encoder {encoder.path.name}: 60,000 training digits encoded in {time.perf_counter() - t0:.1f} s")

    loo = nearest(train_codes[:10_000], train_codes, exclude=np.arange(10_000))
    test_nn = nearest(encoder.encode(test.images), train_codes)
    print(json.dumps({
        "reference: training digits 0..9999, nearest other training digit has the same label":
            round(float((train.labels[loo] == train.labels[:10_000]).mean()), 4),
        "reference: test digits, nearest training digit has the same label":
            round(float((train.labels[test_nn] == test.labels).mean()), 4),
    }))

    base = DeformParams()
    runs = [base]
    if args.sweep:
        runs += [
            replace(base, sigma=4.0, max_elastic=8.0),  # Simard et al.'s sigma (cap raised: their fields are longer)
            replace(base, sigma=5.0),
            replace(base, alpha=38.0),
            replace(base, sigma=8.0),
            replace(base, alpha=0.0),  # affine only
            replace(base, rotation=0.0, scale=0.0, shear=0.0, translation=0.0),  # elastic only
            replace(base, rotation=12.0, scale=0.2, shear=0.3, translation=3.0),  # affine ranges doubled
        ]
    for params in runs:
        print(json.dumps(score(encoder, train, train_codes, args.items, params, args.seed)))


if __name__ == "__main__":
    main()
