"""Stable point ids: the same image always gets the same id, so re-ingesting overwrites.

id = dataset code * 10^9 + split code * 10^8 + index, e.g. MNIST train #5 -> 1_000_000_005.
Readable at a glance and decodable without a lookup table.
"""

from __future__ import annotations

import numpy as np

from cbir.datasets import DATASETS, SPLITS, get_spec

_DATASET_STEP = 1_000_000_000
_SPLIT_STEP = 100_000_000


def point_ids(dataset: str, split: str, indices) -> np.ndarray:
    """Ids for the given indices of one split of one data set (int64 array)."""
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= _SPLIT_STEP):
        raise ValueError("index out of range for a point id")
    return get_spec(dataset).code * _DATASET_STEP + SPLITS.index(split) * _SPLIT_STEP + idx


def decode(point_id: int) -> tuple[str, str, int]:
    """(dataset, split, index) of a point id."""
    code, rest = divmod(int(point_id), _DATASET_STEP)
    split, index = divmod(rest, _SPLIT_STEP)
    name = next(spec.name for spec in DATASETS.values() if spec.code == code)
    return name, SPLITS[split], index
