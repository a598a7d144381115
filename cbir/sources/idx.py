"""MNIST and Fashion-MNIST (IDX files): one split, or its first N items."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cbir import datasets, ids


@dataclass
class IdxSource:
    dataset: str
    split: str
    data_dir: object
    cache_dir: object
    first: int | None = None  # None: the whole split
    _split: datasets.Split | None = field(default=None, repr=False)

    kind = "idx"

    @property
    def name(self) -> str:
        return self.dataset

    @property
    def models_from(self) -> str:
        return self.dataset

    @property
    def queries_from(self) -> str:
        return self.dataset

    @property
    def digits(self) -> bool:
        return datasets.get_spec(self.dataset).digits

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
        return {"kind": self.kind, "split": self.split, "first": len(self) if self.partial else None,
                "md5": dict(sorted(self.data.md5.items()))}

    @property
    def fingerprint(self) -> str:
        """Every item's fingerprint: the files' checksums (an item changes only when the files do)."""
        return "-".join(v[:8] for _, v in sorted(self.data.md5.items()))

    def point_ids(self) -> np.ndarray:
        return ids.point_ids(self.dataset, self.split, np.arange(len(self)))

    fingerprint_fields = ("fp",)

    def changed(self, pid, stored: dict, now) -> bool:
        return stored.get("fp") != now

    def manifest(self) -> dict:
        return dict.fromkeys(self.point_ids().tolist(), self.fingerprint)

    def load(self, point_ids: np.ndarray, record_failures: bool = True) -> tuple[np.ndarray, list[dict]]:
        index = np.asarray(point_ids, dtype=np.int64) - int(ids.point_ids(self.dataset, self.split, [0])[0])
        fp = self.fingerprint
        payloads = [{"label": int(self.data.labels[i]), "split": self.split, "index": int(i), "dataset": self.dataset,
                     "fp": fp} for i in index]
        return self.data.images[index], payloads

    def close(self) -> None:
        """Nothing to release."""

    def held_out(self, n: int = 1000, seed: int = 0) -> tuple[np.ndarray, str] | None:
        """Images of the same kind that are not in the collection, to calibrate the match signal with."""
        if self.split != "train":
            return None
        test = datasets.load(self.dataset, "test", self.data_dir, self.cache_dir)
        pick = np.random.default_rng(seed).choice(len(test), min(n, len(test)), replace=False)
        return test.images[np.sort(pick)], f"{len(pick)} {self.dataset} test images"

    def image(self, index: int) -> np.ndarray:
        return self.data.images[index]
