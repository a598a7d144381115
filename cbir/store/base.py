"""The store's interface: what ingest, search, eval and serve need, whatever the backend.

A backend (embedded Qdrant Edge, or a Qdrant server) hands out
- readers: one collection's current, complete contents, checked on open;
- write sessions: the right to change a collection, one at a time. A change is made in a new
  build beside the current contents and published by one atomic switch, so readers always see
  either the old or the new collection, whole, and a killed writer leaves the old one answering.
Distances are Euclidean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import numpy as np

from cbir.store.collection import CollectionMeta


@dataclass(frozen=True)
class Hits:
    """One query's results, nearest first: point ids, Euclidean distances, payload fields asked for."""

    ids: np.ndarray
    distances: np.ndarray
    payloads: list[dict] | None = None

    @property
    def labels(self) -> list:
        return [p.get("label") for p in self.payloads or []]


@dataclass(frozen=True)
class Points:
    """Every point of a collection, ordered by id: ids, vectors (if asked for), payload fields (if asked for)."""

    ids: np.ndarray
    vectors: np.ndarray | None
    payloads: dict[str, list]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class CollectionInfo:
    """A line of `cbir collections list`: the collection's record (None when unreadable) and its size."""

    name: str
    meta: CollectionMeta | None
    size_bytes: int | None
    problem: str | None = None  # why meta is None: damaged, older schema, a build still running, ...


class Reader(Protocol):
    """One collection, open for reading; its metadata and point count were checked when it opened."""

    name: str
    location: str
    meta: CollectionMeta

    def count(self) -> int: ...
    def query_batch(self, vectors: np.ndarray, limit: int, label=None, exact: bool = True,
                    fields: Sequence[str] = ("label",)) -> list[Hits]: ...
    def points(self, with_vectors: bool = True, fields: Sequence[str] = ("label",)) -> Points: ...
    def retrieve(self, ids: Sequence, with_vectors: bool = False, fields: Sequence[str] = ("label",)) -> Points: ...
    def close(self) -> None: ...


class Build(Protocol):
    """A collection being built (a new generation): invisible to readers until it is published."""

    def upsert(self, ids: np.ndarray, vectors: np.ndarray, payloads: Sequence[dict]) -> None: ...
    def delete(self, ids: Sequence) -> None: ...
    def count(self) -> int: ...
    def points(self, with_vectors: bool = False, fields: Sequence[str] = ()) -> Points: ...


class WriteSession(Protocol):
    """The right to change one collection; other writers wait for it (or give up after --wait)."""

    name: str
    location: str

    def current(self) -> CollectionMeta | None: ...  # raises for a damaged or older-schema collection
    def build(self, meta: CollectionMeta, copy_current: bool = False) -> Build: ...
    def publish(self, build: Build, meta: CollectionMeta) -> None: ...
    def abort(self, build: Build) -> None: ...
    def drop(self) -> bool: ...


class Backend(Protocol):
    """The embedded store or a server: hands out readers and write sessions by collection name."""

    location: str

    def location_of(self, name: str) -> str: ...  # where a collection lives, for messages
    def reader(self, name: str) -> Reader: ...
    def writer(self, name: str) -> Iterator[WriteSession]: ...  # a context manager
    def collections(self) -> list[CollectionInfo]: ...
    def generation(self, name: str) -> str | None: ...  # cheap: has the collection been switched since?
    def meta(self, name: str) -> CollectionMeta | None: ...  # the record alone, without opening the collection
    def close(self) -> None: ...


def check_finite(vectors: np.ndarray, what: str) -> np.ndarray:
    """Vectors as float32, refused when any value is NaN or infinite (an encoder gone wrong, a bad input)."""
    from cbir.errors import CbirError

    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2:
        raise CbirError(f"{what}: expected a (N, dim) array of vectors, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise CbirError(f"{what}: {bad} of {len(arr)} vectors hold NaN or infinite values; the model or the input "
                        "is broken (check the image, or retrain / re-export the model)")
    return arr
