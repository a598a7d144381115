"""The stored image behind a point: read back from where the collection's images came from.

Points of a data set (MNIST, Fashion-MNIST) are decoded from their stable id (data set, split,
index) and read from the data set's files; each split is read once and kept.
"""

from __future__ import annotations

import threading

import numpy as np

from cbir import datasets, ids
from cbir.errors import CbirError
from cbir.settings import Settings


class StoredImages:
    """28x28 float32 images in [0, 1] of stored points; a folder's are read back from its files."""

    def __init__(self, settings: Settings, meta=None):
        self.settings = settings
        self.meta = meta  # the collection's record: a folder collection's root
        self._splits: dict[tuple[str, str], datasets.Split] = {}
        self._lock = threading.Lock()

    def _split(self, name: str, split: str) -> datasets.Split:
        with self._lock:
            if (name, split) not in self._splits:
                self._splits[(name, split)] = datasets.load(name, split, self.settings.data_dir, self.settings.cache_dir)
            return self._splits[(name, split)]

    def image(self, point_id, payload: dict | None = None, meta=None) -> np.ndarray:
        """The image of one point (payload and meta help for points that are files)."""
        if payload and payload.get("path"):
            meta = meta or self._collection_meta()
            if meta is not None and meta.source.get("kind") == "folder":
                return self._file(meta.source["root"], payload["path"])
        try:
            name, split, index = ids.decode(int(point_id))
        except (ValueError, TypeError) as exc:
            raise CbirError(f"point {point_id}: no stored image can be found for it") from exc
        if name == "mnist-deformed":
            from cbir.sources import DeformedSource

            with self._lock:
                source = self._deformed = getattr(self, "_deformed", None) or DeformedSource(
                    self.settings.data_dir, self.settings.cache_dir)
            return source.image(index).astype(np.float32) / 255.0
        return self._split(name, split).images[index].astype(np.float32) / 255.0

    def _collection_meta(self):
        """The settings' collection's record (a folder collection's root is in it), read once."""
        if self.meta is None:
            from cbir.store import open_backend

            backend = open_backend(self.settings)
            try:
                self.meta = backend.meta(self.settings.collection_name)
            finally:
                backend.close()
        return self.meta

    def _file(self, root: str, rel: str) -> np.ndarray:
        from pathlib import Path

        from cbir import preprocess

        base = Path(root)
        path = Path(base, rel)
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise CbirError(f"{rel}: not a path inside {root}")
        if not path.is_file():
            raise CbirError(f"{path}: the file behind this point is gone; run `ingest run --images {root}` to update the collection")
        return preprocess.load_digit(path)

    def images(self, point_ids, payloads=None, meta=None) -> list[np.ndarray]:
        payloads = payloads or [None] * len(point_ids)
        return [self.image(pid, p, meta) for pid, p in zip(point_ids, payloads)]
