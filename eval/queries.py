"""What an evaluation queries with, and the labels it scores them by.

    test split    a data set's test images (a seeded sample, or all), for collections of a data set
    --queries-dir a labelled folder (label = first subfolder, as for --images), preprocessed like queries
    --holdout F   a stratified, seeded fraction of the collection's own points: they query with their
                  stored vectors and are left out of the ranking they are scored against
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cbir import datasets
from cbir.errors import CbirError


@dataclass
class Queries:
    labels: np.ndarray  # (n,) what counts as relevant: points with the same label
    images: np.ndarray | None  # (n, 28, 28) to encode; None when vectors are given
    vectors: np.ndarray | None  # (n, dim) already encoded (held-out points)
    names: list[str]  # what each query is, for reports
    what: str  # "1000 mnist test images (seed 0)"
    seed: int | None = None
    exclude: np.ndarray | None = None  # point ids left out of the ranking
    image_of: Callable[[int], np.ndarray] | None = None  # the picture of query j, for the report's grid

    def __len__(self) -> int:
        return len(self.labels)

    def keep(self, mask: np.ndarray) -> "Queries":
        """The queries where mask is true (the others left out and counted by the caller)."""
        picked = np.flatnonzero(mask)
        image_of = self.image_of
        return Queries(self.labels[mask], None if self.images is None else self.images[mask],
                       None if self.vectors is None else self.vectors[mask], [self.names[i] for i in picked], self.what,
                       self.seed, self.exclude, (lambda j: image_of(int(picked[j]))) if image_of else None)


def select_queries(n_test: int, n_queries: int | None, seed: int) -> np.ndarray:
    """All test indices in order, or a seeded sample of n without replacement."""
    if n_queries is None:
        return np.arange(n_test)
    if n_queries < 1:
        raise CbirError(f"--queries must be at least 1 (got {n_queries})")
    if n_queries > n_test:
        raise CbirError(f"--queries {n_queries} is more than the {n_test} test images; use --queries all for every one")
    if n_queries == n_test:
        return np.arange(n_test)
    return np.random.default_rng(seed).choice(n_test, n_queries, replace=False)


def test_split(settings, n_queries: int | None, seed: int) -> Queries:
    """A data set's test images: all of them, or a seeded sample."""
    from cbir.sources import queries_from

    name = queries_from(settings.dataset)
    if name is None:
        raise CbirError(f"collection {settings.collection_name!r} holds a folder's images: evaluate it with "
                        "--queries-dir DIR (a labelled folder) or --holdout 0.2")
    test = datasets.load(name, "test", settings.data_dir, settings.cache_dir)
    idx = select_queries(len(test), n_queries, seed)
    images = test.images[idx]
    what = f"all {len(idx)} {name} test images" if n_queries is None else f"{len(idx)} {name} test images (seed {seed})"
    return Queries(test.labels[idx].astype(np.int64), images, None, [f"test #{i}" for i in idx], what,
                   seed if n_queries is not None else None, image_of=lambda j: images[j].astype(np.float32) / 255.0)


def from_folder(folder: Path, strict: bool = False, log=lambda line: None) -> Queries:
    """Every image under a labelled folder (label = first subfolder), preprocessed like queries."""
    from cbir.sources.folder import FolderSource

    source = FolderSource(folder, "queries", strict)
    entries = [e for e in source.entries if e.label is not None]
    if not entries:
        raise CbirError(f"--queries-dir {source.root}: no image sits in a subfolder, so none has a label to score by")
    images, payloads = source.load(source.point_ids()[[i for i, e in enumerate(source.entries) if e.label is not None]])
    if source.failed:
        log(f"skipped {len(source.failed)} query file(s) that could not be read, e.g. {source.failed[0]}")
    floats = images.astype(np.float32)
    return Queries(np.array([p["label"] for p in payloads], dtype=object), images, None, [p["path"] for p in payloads],
                   f"{len(payloads)} images of {source.root}", image_of=lambda j: floats[j])


def holdout(reader, fraction: float, seed: int, stored_image=None) -> Queries:
    """A stratified, seeded fraction of the collection's labelled points: queries that leave the ranking."""
    if not 0 < fraction < 1:
        raise CbirError(f"--holdout takes a fraction between 0 and 1, e.g. 0.2 (got {fraction})")
    points = reader.points(with_vectors=True, fields=("label", "path"))
    labels = np.asarray(points.payloads["label"], dtype=object)
    rng = np.random.default_rng(seed)
    picked = []
    for label in sorted({x for x in labels if x is not None}, key=str):
        members = np.flatnonzero(labels == label)
        take = int(round(len(members) * fraction))
        if 0 < take < len(members):
            picked.extend(rng.choice(members, take, replace=False).tolist())
    if not picked:
        raise CbirError(f"--holdout {fraction}: no class has enough labelled points to hold some out")
    picked = np.sort(np.asarray(picked))
    ids = points.ids[picked]
    names = [points.payloads["path"][i] or str(points.ids[i]) for i in picked]
    payloads = [{"path": points.payloads["path"][i]} for i in picked]
    return Queries(labels[picked], None, points.vectors[picked], names,
                   f"{len(picked)} of the collection's points held out ({fraction:g}, stratified, seed {seed})", seed, exclude=ids,
                   image_of=(lambda j: stored_image(ids[j], payloads[j])) if stored_image else None)
