"""Stable point ids: the same image always gets the same id, so re-ingesting overwrites.

id = dataset code * 10^9 + split code * 10^8 + index, e.g. MNIST train #5 -> 1_000_000_005.
Readable at a glance and decodable without a lookup table.
"""

from __future__ import annotations

import numpy as np

from cbir.datasets import DATASETS, SPLITS, get_spec

_DATASET_STEP = 1_000_000_000
_SPLIT_STEP = 100_000_000


# Each data set's code: part of every point id, so never renumbered.
CODES = {**{spec.name: spec.code for spec in DATASETS.values()}, "mnist-deformed": 3}


def point_ids(dataset: str, split: str, indices) -> np.ndarray:
    """Ids for the given indices of one split of one data set (int64 array)."""
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= _SPLIT_STEP):
        raise ValueError("index out of range for a point id")
    if dataset not in CODES:
        get_spec(dataset)  # says which data sets there are
    return CODES[dataset] * _DATASET_STEP + SPLITS.index(split) * _SPLIT_STEP + idx


def decode(point_id: int) -> tuple[str, str, int]:
    """(dataset, split, index) of a point id; ValueError for an id no data set point has."""
    code, rest = divmod(int(point_id), _DATASET_STEP)
    split, index = divmod(rest, _SPLIT_STEP)
    name = next((n for n, c in CODES.items() if c == code), None)
    if name is None or not 0 <= split < len(SPLITS) or point_id < 0:
        raise ValueError(f"{point_id} is not the id of a data set's point")
    return name, SPLITS[split], index


def parse(text: str) -> int | str:
    """A point id written out (a flag, a URL, a table): a number for a data set's points, a UUID for a
    folder's. ValueError for anything else, including numbers no point id can be (negative, over 63 bits)."""
    import uuid

    if text.isdigit():
        value = int(text)
        if value < 2**63:
            return value
        raise ValueError(f"{text} is not a point id")
    return str(uuid.UUID(text))  # ValueError when it is not one
