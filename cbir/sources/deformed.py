"""`mnist-deformed`: infinite MNIST (cbir.deform), as many items as asked for, made reproducibly.

Items 0 .. 59,999 are MNIST's training digits; item i >= 60,000 is a deformation of training
digit i % 60,000, the same bytes every time. Labels are the source digits'. Encoded by MNIST's
models, evaluated with MNIST's test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cbir import datasets, deform, ids

NAME = "mnist-deformed"
DEFAULT_SIZE = 1_000_000


@dataclass
class DeformedSource:
    data_dir: object
    cache_dir: object
    size: int = DEFAULT_SIZE
    seed: int = 0
    _train: datasets.Split | None = field(default=None, repr=False)

    kind = "deformed"
    partial = False  # its size is what was asked for: a collection of its own name per size is not needed
    name = NAME
    models_from = "mnist"
    queries_from = "mnist"
    digits = True

    @property
    def train(self) -> datasets.Split:
        if self._train is None:
            self._train = datasets.load("mnist", "train", self.data_dir, self.cache_dir)
        return self._train

    def __len__(self) -> int:
        return self.size

    def describe(self) -> dict:
        return {"kind": self.kind, "size": self.size, "seed": self.seed, "recipe": deform.RECIPE,
                "md5": dict(sorted(self.train.md5.items()))}

    @property
    def fingerprint(self) -> str:
        return f"{deform.RECIPE}-{self.seed}-" + "-".join(v[:8] for _, v in sorted(self.train.md5.items()))

    def point_ids(self) -> np.ndarray:
        return ids.point_ids(NAME, "train", np.arange(self.size))

    fingerprint_fields = ("fp",)

    def changed(self, pid, stored: dict, now) -> bool:
        return stored.get("fp") != now

    def manifest(self) -> dict:
        return dict.fromkeys(self.point_ids().tolist(), self.fingerprint)

    def _index(self, point_ids) -> np.ndarray:
        return np.asarray(point_ids, dtype=np.int64) - int(ids.point_ids(NAME, "train", [0])[0])

    def load(self, point_ids: np.ndarray, record_failures: bool = True) -> tuple[np.ndarray, list[dict]]:
        index = self._index(point_ids)
        # Batches from ingest are runs of consecutive items: made in one call.
        if len(index) and np.array_equal(index, np.arange(index[0], index[0] + len(index))):
            images, labels, source = deform.generate(self.train.images, self.train.labels, int(index[0]),
                                                     int(index[0]) + len(index), seed=self.seed)
        else:
            parts = [deform.generate(self.train.images, self.train.labels, int(i), int(i) + 1, seed=self.seed) for i in index]
            images = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 28, 28), np.uint8)
            labels = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
            source = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64)
        fp = self.fingerprint
        payloads = [{"label": int(lab), "split": "train", "index": int(i), "source_index": int(src), "dataset": NAME,
                     "fp": fp} for i, lab, src in zip(index, labels, source)]
        return images, payloads

    def close(self) -> None:
        """Nothing to release."""

    def held_out(self, n: int = 1000, seed: int = 0) -> tuple[np.ndarray, str] | None:
        test = datasets.load("mnist", "test", self.data_dir, self.cache_dir)
        pick = np.random.default_rng(seed).choice(len(test), min(n, len(test)), replace=False)
        return test.images[np.sort(pick)], f"{len(pick)} mnist test images"

    def image(self, index: int) -> np.ndarray:
        return deform.generate(self.train.images, self.train.labels, index, index + 1, seed=self.seed)[0][0]
