import numpy as np
import pytest

from cbir import ids


def test_ids_are_stable_readable_and_decodable():
    got = ids.point_ids("mnist", "train", [0, 5, 59999])
    assert got.tolist() == [1_000_000_000, 1_000_000_005, 1_000_059_999]
    assert ids.decode(1_000_000_005) == ("mnist", "train", 5)
    assert ids.decode(ids.point_ids("fashion-mnist", "test", [42])[0]) == ("fashion-mnist", "test", 42)


def test_ids_never_collide_across_datasets_and_splits():
    every = np.concatenate([
        ids.point_ids(name, split, np.arange(60000))
        for name in ("mnist", "fashion-mnist") for split in ("train", "test")
    ])
    assert len(np.unique(every)) == len(every)


def test_out_of_range_index_is_refused():
    with pytest.raises(ValueError):
        ids.point_ids("mnist", "train", [-1])
