"""Data sources: where the images of a collection come from, one object per source.

A source says what it is (recorded with the collection), lists its items as {point id:
fingerprint} so an ingest can tell what is new, changed or gone, and loads items by id. Ids are
stable, so a re-run overwrites instead of duplicating.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cbir import datasets, ids


@dataclass
class IdxSource:
    """One split of an IDX data set (MNIST, Fashion-MNIST), or its first N items."""

    dataset: str
    split: str
    data_dir: object
    cache_dir: object
    first: int | None = None  # None: the whole split
    _split: datasets.Split | None = field(default=None, repr=False)

    kind = "idx"

    @property
    def data(self) -> datasets.Split:
        if self._split is None:
            self._split = datasets.load(self.dataset, self.split, self.data_dir, self.cache_dir)
        return self._split

    def __len__(self) -> int:
        total = len(self.data)
        return total if self.first is None else min(self.first, total)

    @property
    def partial(self) -> bool:
        return self.first is not None and self.first < len(self.data)

    def describe(self) -> dict:
        """What the collection records about its source (equal descriptions: the same items)."""
        return {"kind": self.kind, "split": self.split, "first": len(self) if self.partial else None,
                "md5": dict(sorted(self.data.md5.items()))}

    @property
    def fingerprint(self) -> str:
        """Every item's fingerprint: the files' checksums (an item changes only when the files do)."""
        return "-".join(v[:8] for _, v in sorted(self.data.md5.items()))

    def manifest(self) -> dict:
        """{point id: fingerprint} of every item."""
        fp = self.fingerprint
        return dict.fromkeys(self.point_ids(np.arange(len(self))).tolist(), fp)

    def point_ids(self, index: np.ndarray) -> np.ndarray:
        return ids.point_ids(self.dataset, self.split, index)

    def load(self, point_ids: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        """(images (n, 28, 28) uint8, payloads) of the items with these ids."""
        index = np.asarray(point_ids, dtype=np.int64) - int(self.point_ids(np.zeros(1, np.int64))[0])
        fp = self.fingerprint
        payloads = [{"label": int(self.data.labels[i]), "split": self.split, "index": int(i), "dataset": self.dataset,
                     "fp": fp} for i in index]
        return self.data.images[index], payloads


    def held_out(self, n: int = 1000, seed: int = 0) -> tuple[np.ndarray, str] | None:
        """Images of the same kind that are not in the collection, to calibrate the match signal with."""
        if self.split != "train":
            return None
        test = datasets.load(self.dataset, "test", self.data_dir, self.cache_dir)
        pick = np.random.default_rng(seed).choice(len(test), min(n, len(test)), replace=False)
        return test.images[np.sort(pick)], f"{len(pick)} {self.dataset} test images"


def idx_source(settings, split: str = "train", first: int | None = None) -> IdxSource:
    """The settings' data set as a source."""
    return IdxSource(settings.dataset, split, settings.data_dir, settings.cache_dir, first)
