"""The vector store: one small interface, two Qdrant backends (embedded Edge shard, or a server).

Distances are Euclidean. Each collection records which model produced its vectors, so a
search with a different model is refused instead of returning meaningless neighbours.
"""

from __future__ import annotations

import json
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np

from cbir.errors import CbirError
from cbir.settings import Settings


@dataclass(frozen=True)
class Hits:
    """One query's results, nearest first: point ids, Euclidean distances, labels (if asked)."""

    ids: np.ndarray
    distances: np.ndarray
    labels: np.ndarray | None = None


class Store(Protocol):
    """What ingest, search and eval need from a vector store."""

    location: str

    def metadata(self) -> dict | None: ...  # None when the collection does not exist
    def create(self, dim: int, metadata: dict) -> None: ...
    def set_metadata(self, metadata: dict) -> None: ...
    def drop(self) -> None: ...
    def upsert(self, ids: np.ndarray, vectors: np.ndarray, payloads: Sequence[dict]) -> None: ...
    def flush(self) -> None: ...
    def query_batch(self, vectors: np.ndarray, limit: int, label: int | None = None, with_labels: bool = True) -> list[Hits]: ...
    def rank_all(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...  # (ids sorted, distances to each)
    def count(self) -> int: ...
    def labels(self) -> tuple[np.ndarray, np.ndarray]: ...  # (ids, labels) of every point, ids sorted
    def close(self) -> None: ...


def query(store: Store, vector: np.ndarray, limit: int, label: int | None = None) -> Hits:
    """A single query: a batch of one."""
    return store.query_batch(np.asarray(vector)[None, :], limit, label)[0]


def check_compatible(meta: dict | None, model_id: str, dim: int, collection: str) -> None:
    """Refuse a collection that does not exist or was built by a different model."""
    if meta is None:
        raise CbirError(f"collection {collection!r} does not exist yet; run `ingest run` first")
    if meta.get("dim") != dim:
        raise CbirError(
            f"collection {collection!r} holds {meta.get('dim')}-d vectors but the model makes {dim}-d ones; "
            "re-run `ingest run --recreate` with this model or use the model that built it"
        )
    if meta.get("model_id") != model_id:
        raise CbirError(
            f"collection {collection!r} was built by model {meta.get('model_id')}, not the current model "
            f"{model_id}; re-run `ingest run --recreate` or pass --model with the model that built it"
        )


def check_complete(meta: dict, collection: str) -> None:
    """Refuse a collection whose last ingest did not finish: its answers would silently miss points."""
    if meta.get("complete") is False:  # collections from before this flag count as complete
        raise CbirError(
            f"collection {collection!r} is incomplete: an `ingest run` was interrupted or is still running; "
            "run `ingest run` again to finish it (nothing is duplicated)"
        )


def _scroll_sorted(scroll_page, value, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Page through a collection (scroll_page(offset) -> (records, next offset)).

    Returns every point's id and value(record), both ordered by id.
    """
    ids, values, offset = [], [], None
    while True:
        records, offset = scroll_page(offset)
        ids.extend(int(r.id) for r in records)
        values.extend(value(r) for r in records)
        if offset is None:
            break
    ids_arr = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids_arr, kind="stable")
    return ids_arr[order], np.asarray(values, dtype=dtype)[order]


def _label(record) -> int:
    return int(record.payload["label"])


def scatter_full_rankings(hits: list[Hits], ids: np.ndarray) -> np.ndarray:
    """Full-ranking query answers -> a (queries, points) distance matrix in the order of ids."""
    out = np.empty((len(hits), len(ids)), dtype=np.float64)
    for row, h in enumerate(hits):
        pos = np.searchsorted(ids, h.ids)
        if len(h.ids) != len(ids) or np.any(ids[np.minimum(pos, len(ids) - 1)] != h.ids):
            raise CbirError(f"the store returned {len(h.ids)} of {len(ids)} points; a full ranking is needed")
        out[row, pos] = h.distances
    return out


class EdgeStore:
    """Embedded Qdrant Edge shard under CBIR_HOME/qdrant/<collection>; one process at a time."""

    META = "collection.json"
    # The engine writes through memory-mapped files: on a full disk the process dies of SIGBUS
    # instead of getting an error. So check for room first: its WAL takes 32 MiB segments and
    # a 128-d point about 2.8 KiB on disk (164 MiB apparent for 60,000 points, measured).
    RESERVE_BYTES = 64 * 2**20
    BYTES_PER_POINT = 3 * 2**10

    def __init__(self, root: Path, collection: str):
        self.collection = collection
        self.dir = Path(root) / collection
        self.location = f"embedded Qdrant Edge at {self.dir}"
        self._shard = None
        self._cache = None
        if (self.dir / "shard").is_dir() and (self.dir / self.META).is_file():
            self._shard = self._open(lambda e: e.EdgeShard.load(str(self.dir / "shard")))

    def _open(self, how):
        import qdrant_edge

        try:
            return how(qdrant_edge)
        except Exception as exc:
            if "WouldBlock" in str(exc) or "lock" in str(exc).lower():
                raise CbirError(
                    f"store {self.dir} is busy: another cbir process (an `ingest run`?) has it open; "
                    "wait for it to finish and try again"
                ) from None
            raise CbirError(
                f"cannot open store {self.dir} ({str(exc)[:200]}); check free space and permissions in CBIR_HOME"
            ) from None

    def metadata(self) -> dict | None:
        if self._shard is None:
            return None
        try:
            return json.loads((self.dir / self.META).read_text())
        except (OSError, ValueError) as exc:
            raise CbirError(
                f"cannot read {self.dir / self.META} ({exc}); rebuild the collection with `ingest run --recreate`"
            ) from None

    def create(self, dim: int, metadata: dict) -> None:
        import qdrant_edge as qe

        if self._shard is not None:
            raise CbirError(f"collection {self.collection!r} already exists")
        shard_dir = self.dir / "shard"
        try:
            if shard_dir.exists():  # leftovers of a create that died before writing its metadata
                shutil.rmtree(shard_dir)
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CbirError(
                f"cannot create the store in {self.dir}: {exc.strerror or exc}; "
                "set CBIR_HOME (or --home) to a writable folder with free space"
            ) from None
        self._check_space(0)
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Euclid))
        self._shard = self._open(lambda e: e.EdgeShard.create(str(shard_dir), config))
        self.set_metadata({**metadata, "dim": dim})  # the collection exists once its metadata does

    def set_metadata(self, metadata: dict) -> None:
        """Replace the collection's metadata atomically (write a temporary file, then rename)."""
        tmp = self.dir / (self.META + ".tmp")
        try:
            tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True))
            tmp.replace(self.dir / self.META)
        except OSError as exc:
            raise CbirError(f"cannot write {self.dir / self.META}: {exc.strerror or exc}; check space and permissions") from None

    def drop(self) -> None:
        self.close()
        if self.dir.exists():
            (self.dir / self.META).unlink(missing_ok=True)
            shutil.rmtree(self.dir)

    def _need(self):
        if self._shard is None:
            raise CbirError(f"collection {self.collection!r} does not exist yet; run `ingest run` first")
        return self._shard

    def upsert(self, ids, vectors, payloads) -> None:
        import qdrant_edge as qe

        shard = self._need()
        self._check_space(len(ids))
        self._cache = None
        points = [
            qe.Point(id=int(i), vector=v.tolist(), payload=p)
            for i, v, p in zip(ids, np.asarray(vectors, dtype=np.float32), payloads)
        ]
        self._write("upserting points", lambda: shard.update(qe.UpdateOperation.upsert_points(points)))

    def flush(self) -> None:
        if self._shard is not None:
            self._write("flushing", self._shard.flush)

    def _check_space(self, n_points: int) -> None:
        free = shutil.disk_usage(self.dir).free
        needed = self.RESERVE_BYTES + n_points * self.BYTES_PER_POINT
        if free < needed:
            raise CbirError(
                f"not enough free space for the store in {self.dir}: {free // 2**20} MiB free, "
                f"{needed // 2**20} MiB needed; free some space or set CBIR_HOME to another disk, then run `ingest run` again"
            )

    def _write(self, what: str, fn) -> None:
        try:
            fn()
        except Exception as exc:  # the engine reports I/O failures (disk full, read-only) as plain Exceptions
            raise CbirError(
                f"{what} in {self.dir} failed ({str(exc)[:200]}); check free space and permissions in CBIR_HOME, "
                "then run `ingest run` again"
            ) from None

    def query_batch(self, vectors, limit, label=None, with_labels=True) -> list[Hits]:
        import qdrant_edge as qe

        shard = self._need()
        flt = None
        if label is not None:
            flt = qe.Filter(must=[qe.FieldCondition(key="label", match=qe.MatchValue(int(label)))])
        requests = [
            qe.QueryRequest(
                limit=int(limit),
                query=qe.Query.Nearest(np.asarray(v, dtype=np.float32).tolist()),
                filter=flt,
                with_payload=["label"] if with_labels else False,
                params=qe.SearchParams(exact=True),  # the embedded store promises exact answers
            )
            for v in vectors
        ]
        results = shard.query_batch(qe.QueryBatchRequest(requests))
        return [_hits(r, with_labels) for r in results]

    def count(self) -> int:
        import qdrant_edge as qe

        return int(self._need().count(qe.CountRequest(exact=True)))

    def rank_all(self, vectors) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances from each query to every point, computed over the shard's vectors as arrays.

        Same answer as a query with limit = collection size (tests check it), without building
        60k result objects per query: this is what makes full-ranking evaluation fast.
        """
        ids, points, sq_norms = self._arrays()
        q = np.asarray(vectors, dtype=np.float64)
        sq = (q**2).sum(1)[:, None] + sq_norms[None, :] - 2.0 * (q @ points.T)
        return ids, np.sqrt(np.maximum(sq, 0.0))

    def _arrays(self):
        """(ids sorted, vectors float64, squared norms), read from the shard once per open."""
        if self._cache is None:
            import qdrant_edge as qe

            shard = self._need()
            ids, points = _scroll_sorted(
                lambda offset: shard.scroll(qe.ScrollRequest(offset=offset, limit=10_000, with_payload=False, with_vector=True)),
                lambda r: r.vector, np.float32,
            )
            points = points.astype(np.float64)
            self._cache = (ids, points, (points**2).sum(1))
        return self._cache

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        import qdrant_edge as qe

        shard = self._need()
        return _scroll_sorted(
            lambda offset: shard.scroll(qe.ScrollRequest(offset=offset, limit=10_000, with_payload=["label"], with_vector=False)),
            _label, np.int64,
        )

    def close(self) -> None:
        self._cache = None
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None


def _hits(points, with_labels: bool) -> Hits:
    ids = np.fromiter((int(p.id) for p in points), dtype=np.int64, count=len(points))
    dists = np.fromiter((p.score for p in points), dtype=np.float32, count=len(points))
    labels = None
    if with_labels:
        labels = np.fromiter((int(p.payload["label"]) for p in points), dtype=np.int64, count=len(points))
    return Hits(ids, dists, labels)


class ServerStore:
    """A collection on a Qdrant server (or qdrant-client's in-process ':memory:' engine)."""

    def __init__(self, client, collection: str, location: str):
        self.client = client
        self.collection = collection
        self.location = location
        self._ids: np.ndarray | None = None
        self.in_process = location.startswith("in-process")

    @classmethod
    def connect(cls, url: str, api_key: str | None, collection: str, timeout: int = 10) -> "ServerStore":
        from qdrant_client import QdrantClient

        if url == ":memory:":
            return cls(QdrantClient(location=":memory:"), collection, "in-process Qdrant (:memory:)")
        with warnings.catch_warnings():
            # The README says to use https with an API key; a Python warning with a source line is noise here.
            warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")
            # No version probe at connect time: the first real call reports an unreachable server clearly.
            client = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
        return cls(client, collection, f"Qdrant server {url}")

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CbirError:
            raise
        except Exception as exc:
            msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise CbirError(f"{self.location}: {what} failed ({msg}); is the server up and the URL right?") from None

    def metadata(self) -> dict | None:
        if not self._call("listing collections", self.client.collection_exists, self.collection):
            return None
        info = self._call("reading the collection", self.client.get_collection, self.collection)
        return dict(info.config.metadata or {})

    def create(self, dim: int, metadata: dict) -> None:
        from qdrant_client import models

        self._call(
            "creating the collection",
            self.client.create_collection,
            self.collection,
            vectors_config=models.VectorParams(size=dim, distance=models.Distance.EUCLID),
            metadata={**metadata, "dim": dim},
        )

    def set_metadata(self, metadata: dict) -> None:
        self._call("updating collection metadata", self.client.update_collection, self.collection, metadata=metadata)

    def drop(self) -> None:
        self._call("deleting the collection", self.client.delete_collection, self.collection)

    def upsert(self, ids, vectors, payloads) -> None:
        from qdrant_client import models

        batch = models.Batch(
            ids=[int(i) for i in ids],
            vectors=np.asarray(vectors, dtype=np.float32).tolist(),
            payloads=list(payloads),
        )
        self._ids = None
        self._call("upserting points", self.client.upsert, self.collection, points=batch, wait=True)

    def flush(self) -> None:
        """Writes are acknowledged with wait=True; nothing to flush."""

    def query_batch(self, vectors, limit, label=None, with_labels=True) -> list[Hits]:
        from qdrant_client import models

        flt = None
        if label is not None:
            flt = models.Filter(must=[models.FieldCondition(key="label", match=models.MatchValue(value=int(label)))])
        requests = [
            models.QueryRequest(
                query=np.asarray(v, dtype=np.float32).tolist(),
                limit=int(limit),
                filter=flt,
                with_payload=["label"] if with_labels else False,
                # Exact, like the embedded store (the in-process engine is always exact and warns if asked).
                params=None if self.in_process else models.SearchParams(exact=True),
            )
            for v in vectors
        ]
        responses = self._call("querying", self.client.query_batch_points, self.collection, requests=requests)
        return [_hits(r.points, with_labels) for r in responses]

    def count(self) -> int:
        return int(self._call("counting", self.client.count, self.collection, exact=True).count)

    def rank_all(self, vectors) -> tuple[np.ndarray, np.ndarray]:
        """Every point's distance to each query, from Qdrant queries with limit = collection size."""
        ids = self._ids if self._ids is not None else self.labels()[0]
        return ids, scatter_full_rankings(self.query_batch(vectors, len(ids), with_labels=False), ids)

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        ids, labels = _scroll_sorted(
            lambda offset: self._call(
                "scrolling", self.client.scroll, self.collection,
                limit=10_000, offset=offset, with_payload=["label"], with_vectors=False,
            ),
            _label, np.int64,
        )
        self._ids = ids  # rank_all's column order, until the next write
        return ids, labels

    def close(self) -> None:
        self._call("closing the connection", self.client.close)


@contextmanager
def opened(settings: Settings, store: Store | None = None) -> Iterator[Store]:
    """Use the given store as is, or open the configured one and close it afterwards."""
    if store is not None:
        yield store
        return
    owned = open_store(settings)
    try:
        yield owned
    finally:
        owned.close()


def open_store(settings: Settings) -> Store:
    """The store the settings name: a Qdrant server when CBIR_QDRANT_URL is set, else embedded Edge."""
    if settings.qdrant_url:
        return ServerStore.connect(settings.qdrant_url, settings.qdrant_api_key, settings.collection_name)
    return EdgeStore(settings.store_dir, settings.collection_name)
