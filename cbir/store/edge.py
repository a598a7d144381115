"""The embedded backend: Qdrant Edge shards on disk under CBIR_HOME/qdrant, shared by many processes.

On disk, one folder per collection:

    <name>/CURRENT          {"generation": "g-...", "schema": 2}: which generation readers open
    <name>/g-<id>/          a generation: shard/ (the Edge shard), collection.json (its record),
                            files.json (the size of every shard file, checked on open)
    <name>/g-<id>.lock      readers hold it shared; whoever deletes the generation takes it exclusive
    <name>/write.lock       one writer at a time

A generation is written once, by one writer, and never changed after it is published: an update
copies the current generation, changes the copy and publishes that. Publishing is one atomic
rename of CURRENT. So readers never see a half-written collection, a killed writer leaves the old
generation answering, and any number of processes can read at once: the shards are made without a
write-ahead log (whose lock would let only one process open them), which is safe because nobody
writes to a published shard (tested with 16 processes reading one shard).
"""

from __future__ import annotations

import os
import re
import stat
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from cbir.errors import (
    CbirError,
    CollectionDamaged,
    CollectionIncompatible,
    CollectionMissing,
    StoreBusy,
    StoreError,
)
from cbir.names import check_collection_name
from cbir.store import files
from cbir.store.base import CollectionInfo, Hits, Points, check_finite
from cbir.store.collection import SCHEMA, CollectionMeta, Hints, check_probe, make_probe, remember_sample
from cbir.store.locks import FileLock

GENERATION = re.compile(r"^g-[0-9a-f]{16}-[0-9a-f]{8}$")
CURRENT = "CURRENT"
META = "collection.json"
SIZES = "files.json"
WRITE_LOCK = "write.lock"
# The engine writes through memory-mapped files: on a full disk the process would die of SIGBUS
# instead of getting an error. So room is checked before every write: a margin for the engine's
# preallocated files, and per point its vector, payload, id and index entries, twice over
# (optimising an index writes a new segment before the old one goes).
RESERVE_BYTES = 64 * 2**20
HNSW_M, HNSW_EF_CONSTRUCT = 16, 100
FULL_DISK_BYTES = 4 * 2**20  # less than this free, and a failure to open a shard is blamed on the disk


def bytes_per_point(dim: int) -> int:
    return 2 * (4 * dim + 2 * 4 * HNSW_M + 512)


def new_generation() -> str:
    """A generation id that sorts by creation time."""
    return f"g-{time.time_ns():016x}-{secrets.token_hex(4)}"


def _engine():
    import qdrant_edge

    return qdrant_edge


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _config(dim: int):
    qe = _engine()
    return qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Euclid),
        # No write-ahead log: its lock would allow one process per shard, and a published shard is never written.
        wal_enabled=False,
        hnsw_config=qe.HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=1),
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1, default_segment_number=2),
    )


class _Shard:
    """One Edge shard: the engine's calls, with its errors turned into the store's."""

    def __init__(self, shard, path: Path, name: str, hints: Hints):
        self.shard = shard
        self.path = path
        self.name = name
        self.hints = hints

    def _damaged(self, what: str, exc: BaseException) -> CollectionDamaged:
        return CollectionDamaged(
            f"collection {self.name!r} is damaged: {what} failed in {self.path} ({_short(exc)}); "
            f"rebuild it with {self.hints.rebuild}"
        )

    def call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except CbirError:
            raise
        except Exception as exc:  # the engine reports every failure as a plain Exception
            raise self._damaged(what, exc) from exc

    def count(self) -> int:
        qe = _engine()
        return int(self.call("counting", self.shard.count, qe.CountRequest(exact=True)))

    def query_batch(self, vectors, limit, label=None, exact=True, fields=("label",)) -> list[Hits]:
        qe = _engine()
        vectors = check_finite(vectors, "query")
        flt = None
        if label is not None:
            flt = qe.Filter(must=[qe.FieldCondition(key="label", match=qe.MatchValue(label))])
        # A filtered query scans exactly: the HNSW graph is built for unfiltered neighbours.
        params = qe.SearchParams(exact=True) if exact or label is not None else qe.SearchParams(hnsw_ef=max(128, 2 * limit))
        requests = [
            qe.QueryRequest(limit=int(limit), query=qe.Query.Nearest(v.tolist()), filter=flt,
                            with_payload=list(fields) if fields else False, params=params)
            for v in vectors
        ]
        results = self.call("a query", self.shard.query_batch, qe.QueryBatchRequest(requests))
        return [hits_of(r, fields) for r in results]

    def points(self, with_vectors=True, fields=("label",), ids=None) -> Points:
        qe = _engine()
        payload = list(fields) if fields else False
        if ids is not None:
            records = self.call("reading points", self.shard.retrieve, list(ids), payload, with_vectors)
            return points_of(records, with_vectors, fields, sort=False)
        records, offset = [], None
        while True:
            page, offset = self.call("reading points", self.shard.scroll,
                                     qe.ScrollRequest(offset=offset, limit=10_000, with_payload=payload, with_vector=with_vectors))
            records.extend(page)
            if offset is None:
                break
        return points_of(records, with_vectors, fields)

    def close(self) -> None:
        if self.shard is not None:
            shard, self.shard = self.shard, None
            try:
                shard.close()
            except Exception:  # closing a read-only shard flushes nothing of value; never fail a search on it
                pass


def plain_id(value):
    """A point id as cbir uses it: an int, or a UUID as text."""
    return value if isinstance(value, int) else str(value)


def hits_of(points, fields) -> Hits:
    ids = np.array([plain_id(p.id) for p in points], dtype=object if points and not isinstance(points[0].id, int) else None)
    dists = np.fromiter((p.score for p in points), dtype=np.float32, count=len(points))
    payloads = [dict(p.payload or {}) for p in points] if fields else None
    return Hits(ids, dists, payloads)


def points_of(records, with_vectors, fields, sort: bool = True) -> Points:
    ids = np.array([plain_id(r.id) for r in records], dtype=object if records and not isinstance(records[0].id, int) else None)
    order = np.argsort(ids, kind="stable") if sort and len(ids) else np.arange(len(ids))
    vectors = None
    if with_vectors:
        vectors = (np.asarray([records[i].vector for i in order], dtype=np.float32).reshape(len(order), -1) if len(order)
                   else np.zeros((0, 0), dtype=np.float32))
    payloads = {f: [(records[i].payload or {}).get(f) for i in order] for f in fields or ()}
    return Points(ids[order] if len(ids) else ids, vectors, payloads)


class EdgeReader:
    """A published generation, open for reading; holds its shared lock until closed."""

    local = True  # its vectors are on this machine: reading them all is cheap

    def __init__(self, name: str, location: str, generation: str, meta: CollectionMeta, shard: _Shard, lock: FileLock):
        self.name = name
        self.location = location
        self.generation = generation
        self.meta = meta
        self._shard = shard
        self._lock = lock

    def count(self) -> int:
        return self._shard.count()

    def query_batch(self, vectors, limit, label=None, exact=True, fields=("label",)) -> list[Hits]:
        return self._shard.query_batch(vectors, limit, label, exact, fields)

    def points(self, with_vectors=True, fields=("label",)) -> Points:
        return self._shard.points(with_vectors, fields)

    def retrieve(self, ids, with_vectors=False, fields=("label",)) -> Points:
        return self._shard.points(with_vectors, fields, ids=ids)

    def close(self) -> None:
        self._shard.close()
        self._lock.release()


class EdgeBuild:
    """A new generation being written by the one writer; published or aborted by its session."""

    def __init__(self, session: "EdgeWriteSession", generation: str, shard: _Shard, lock: FileLock):
        self.session = session
        self.generation = generation
        self.dir = session.dir / generation
        self._shard = shard
        self._lock = lock
        self._indexing = None  # the thread building the HNSW index, while it runs
        self.sample: dict = {}  # a few points written, to check the published shard by (see collection.probe)

    def _check_space(self, n_points: int, dim: int) -> None:
        self.session.backend.check_space(self.dir, RESERVE_BYTES + n_points * bytes_per_point(dim), self.session.name)

    def upsert(self, ids, vectors, payloads) -> None:
        qe = _engine()
        vectors = check_finite(vectors, "ingest")
        self._check_space(len(ids), vectors.shape[1])
        points = [qe.Point(id=_point_id(i), vector=v.tolist(), payload=p) for i, v, p in zip(ids, vectors, payloads)]
        self._write("upserting points", self._shard.shard.update, qe.UpdateOperation.upsert_points(points))
        remember_sample(self.sample, ids)

    def delete(self, ids) -> None:
        qe = _engine()
        if len(ids):
            self._write("deleting points", self._shard.shard.update, qe.UpdateOperation.delete_points([_point_id(i) for i in ids]))

    def count(self) -> int:
        return self._shard.count()

    def points(self, with_vectors=False, fields=()) -> Points:
        return self._shard.points(with_vectors, fields)

    def query_batch(self, vectors, limit, label=None, exact=True, fields=("label",)) -> list[Hits]:
        return self._shard.query_batch(vectors, limit, label, exact, fields)

    def retrieve(self, ids, with_vectors=False, fields=()) -> Points:
        return self._shard.points(with_vectors, fields, ids=ids)

    def _write(self, what: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # the engine reports I/O failures (disk full, read-only) as plain Exceptions
            raise StoreError(
                f"{what} in {self.dir} failed ({_short(exc)}); check free space and permissions in CBIR_HOME, "
                f"then run {self.session.hints.build} again"
            ) from exc

    def finish(self, index: bool = True) -> None:
        """Build the HNSW index, write everything to disk and close the shard."""
        shard = self._shard.shard
        if index:
            self._indexing = interruptible(lambda: self._write("building the HNSW index", shard.optimize))
        self._write("flushing", shard.flush)
        self._shard.close()

    def discard(self) -> None:
        if self.session.backend._current_or_none(self.session.dir) == self.generation:
            return  # it was published after all (an interrupt landed just after the switch): it is the collection
        if self._indexing is not None and self._indexing.is_alive():
            self._lock.release()
            return  # the engine is still indexing into it: left for the next writer to sweep
        self._shard.close()
        try:
            files.remove_tree(self.dir, self.session.backend.root)
            (self.session.dir / f"{self.generation}.lock").unlink(missing_ok=True)
        except (OSError, StoreError):
            pass  # a leftover: the next writer sweeps it
        self._lock.release()


def interruptible(fn):
    """Run fn in a thread and wait for it in a way Ctrl-C can interrupt (the engine's long calls do not
    look at signals); the thread is returned so the caller can tell whether it still runs."""
    import threading

    box: dict = {}

    def run():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name="cbir-engine-call")
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
    if "error" in box:
        raise box["error"]
    return worker


def _point_id(value):
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


class EdgeWriteSession:
    """The write lock of one collection, and what a writer does with it."""

    def __init__(self, backend: "EdgeBackend", name: str, folder: Path):
        self.backend = backend
        self.name = name
        self.dir = folder
        self.hints = backend.hints
        self.location = backend.location
        self.swept = 0

    def current(self) -> CollectionMeta | None:
        """The published collection's record; None when there is none (raises when it is unreadable)."""
        gen = self.backend._current(self.dir, self.name)
        if gen is None:
            self.backend._refuse_legacy(self.dir, self.name)
            return None
        return self.backend._meta(self.dir, gen, self.name)

    def current_generation(self) -> str | None:
        return self.backend._current(self.dir, self.name)

    def sweep(self) -> int:
        """Remove what killed writers left: unpublished or retired generations, stray lock and temp files."""
        current = self.backend._current_or_none(self.dir)
        removed = 0
        for entry in list(os.scandir(self.dir)):
            stem = entry.name[:-5] if entry.name.endswith(".lock") else entry.name
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                Path(entry.path).unlink(missing_ok=True)
                continue
            if not GENERATION.match(stem) or stem == current:
                continue
            if entry.name.endswith(".lock"):
                if not (self.dir / stem).exists():
                    removed += self._retire(stem, wait=0)
                continue
            removed += self._retire(stem, wait=0)
        self.swept += removed
        return removed

    def _retire(self, gen: str, wait: float) -> int:
        """Delete a generation nobody reads (exclusive lock within wait); 1 if gone, 0 if still in use."""
        lock_path = self.dir / f"{gen}.lock"
        if os.path.islink(lock_path):
            lock_path.unlink()  # not ours: removed, never followed
        lock = FileLock(lock_path, f"generation {gen} of collection {self.name!r}")
        try:
            lock.acquire(exclusive=True, wait=wait)
        except StoreBusy:
            return 0
        try:
            existed = (self.dir / gen).exists() or os.path.islink(self.dir / gen)
            files.remove_tree(self.dir / gen, self.backend.root)
            (self.dir / f"{gen}.lock").unlink(missing_ok=True)
        finally:
            lock.release()
        return int(existed)

    def build(self, meta: CollectionMeta, copy_current: bool = False, expected_points: int = 0) -> EdgeBuild:
        """A new, unpublished generation: empty, or a copy of the current one to change."""
        self.sweep()
        source = None
        needed = RESERVE_BYTES + expected_points * bytes_per_point(meta.dim)
        if copy_current:
            gen = self.backend._current(self.dir, self.name)
            if gen is None:
                raise CollectionMissing(f"collection {self.name!r} does not exist yet; run {self.hints.build} first")
            source = files.refuse_link(self.dir / gen / "shard", self.backend.root)
            needed += files.disk_usage(source)
        # Refuse before anything is written: a half-built generation helps nobody.
        self.backend.check_space(self.dir, needed, self.name)
        gen = new_generation()
        lock = FileLock(self.dir / f"{gen}.lock", f"generation {gen} of collection {self.name!r}").acquire(True, 0)
        gdir = self.dir / gen
        try:
            gdir.mkdir()
            files.write_json_atomic(gdir / META, meta.but(generation=gen, complete=False).to_json())
            qe = _engine()
            if source is not None:
                files.copy_tree_sparse(source, gdir / "shard")
                engine_shard = qe.EdgeShard.load(str(gdir / "shard"))
            else:
                engine_shard = qe.EdgeShard.create(str(gdir / "shard"), _config(meta.dim))
        except BaseException as exc:
            lock.release()
            try:
                files.remove_tree(gdir, self.backend.root)
                (self.dir / f"{gen}.lock").unlink(missing_ok=True)
            except (OSError, StoreError):
                pass
            if isinstance(exc, (CbirError, KeyboardInterrupt)):
                raise
            if isinstance(exc, OSError):
                raise StoreError(f"cannot create a collection in {self.dir}: {exc.strerror or exc}; "
                                 "set CBIR_HOME (or --home) to a writable folder with free space") from exc
            raise StoreError(f"cannot create a collection in {self.dir} ({_short(exc)}); check free space and "
                             "permissions in CBIR_HOME") from exc
        return EdgeBuild(self, gen, _Shard(engine_shard, gdir / "shard", self.name, self.hints), lock)

    def publish(self, build: EdgeBuild, meta: CollectionMeta, index: bool = True) -> CollectionMeta:
        """Finish the build and make it the collection, in one atomic switch; retire the old generation."""
        count = build.count()
        probe = make_probe(build, build.sample)
        build.finish(index=index)
        meta = meta.but(generation=build.generation, complete=True, points=count, schema=SCHEMA,
                        extra={**meta.extra, "probe": probe})
        gdir = build.dir
        # Open the finished shard once, as its first reader would: the engine tidies up on load (it drops the
        # journal of a shard points were deleted from, and fills in its config), and the sizes recorded below
        # must be those every later reader finds, or the first search would make the collection look damaged.
        try:
            _engine().EdgeShard.load(str(gdir / "shard")).close()
        except Exception as exc:  # the engine reports every failure as a plain Exception
            raise StoreError(f"the new build of collection {self.name!r} does not load ({_short(exc)}); nothing was "
                             f"changed; run {self.hints.build} again") from exc
        # The engine rewrites its config on a shard's load (filling in defaults): not part of the data.
        sizes = {k: v for k, v in files.file_sizes(gdir / "shard").items() if k != "edge_config.json"}
        files.write_json_atomic(gdir / SIZES, sizes)
        files.write_json_atomic(gdir / META, meta.to_json())
        old = self.backend._current_or_none(self.dir)
        files.write_json_atomic(self.dir / CURRENT, {"generation": build.generation, "schema": SCHEMA})  # the switch
        # From here on the new generation is the collection: nothing below may undo that, not even Ctrl-C.
        try:
            build._lock.release()
            if old is not None and old != build.generation:
                self._retire(old, wait=min(self.backend.wait, 2.0))  # still read by someone: the next writer sweeps it
            self._remove_legacy()
        except BaseException:  # noqa: BLE001 - leftovers of an older generation are swept by the next writer
            pass
        return meta

    def abort(self, build: EdgeBuild) -> None:
        build.discard()

    def _remove_legacy(self) -> None:
        """The files of a collection cbir 0.1 made here (one shard, no generations), once it is replaced."""
        if (self.dir / "shard").is_dir() and (self.dir / META).is_file():
            files.remove_tree(self.dir / "shard", self.backend.root)
            (self.dir / META).unlink()

    def drop(self) -> bool:
        """Remove the collection: unpublish it at once, then delete its files as readers let go."""
        existed = (self.dir / CURRENT).exists() or self.backend._is_legacy(self.dir)
        (self.dir / CURRENT).unlink(missing_ok=True)
        files.fsync_dir(self.dir)
        self._remove_legacy()
        busy = []
        for entry in list(os.scandir(self.dir)):
            if GENERATION.match(entry.name) and not self._retire(entry.name, wait=self.backend.wait):
                busy.append(entry.name)
        if busy:
            raise StoreBusy(
                f"collection {self.name!r} is dropped, but a process still reads it, so {len(busy)} folder(s) under "
                f"{self.dir} stay until it is done; run the drop again later to remove them"
            )
        for entry in list(os.scandir(self.dir)):
            if entry.name.endswith(".lock") and entry.name != WRITE_LOCK:
                Path(entry.path).unlink(missing_ok=True)
        return existed


class EdgeBackend:
    """Every collection under one store folder (CBIR_HOME/qdrant)."""

    def __init__(self, root: Path, wait: float, hints: Hints | None = None):
        self.root = Path(root)
        self.wait = wait
        self.hints = hints or Hints()
        self.location = f"embedded Qdrant Edge at {self.root}"

    # --- paths -------------------------------------------------------------------------------
    def folder(self, name: str) -> Path:
        """The collection's folder: a checked name, directly under the root, never a link."""
        check_collection_name(name)
        if os.path.islink(self.root):
            pass  # the user may keep the whole store on another disk through a link: its contents are checked
        return files.refuse_link(self.root / name, self.root)

    def location_of(self, name: str) -> str:
        return f"embedded Qdrant Edge at {self.root / name}"

    # --- reading -----------------------------------------------------------------------------
    def _current_or_none(self, folder: Path) -> str | None:
        try:
            raw = files.read_json(folder / CURRENT)
        except (OSError, ValueError):
            return None
        gen = raw.get("generation") if isinstance(raw, dict) else None
        return gen if isinstance(gen, str) and GENERATION.match(gen) else None

    def _current(self, folder: Path, name: str) -> str | None:
        """The published generation, None when there is none; a CURRENT that cannot be right is damage."""
        path = folder / CURRENT
        if not path.exists() and not path.is_symlink():
            return None
        try:
            raw = files.read_json(path)
        except (OSError, ValueError) as exc:
            raise CollectionDamaged(f"collection {name!r} is damaged: {path} is unreadable ({_short(exc)}); "
                                    f"rebuild it with {self.hints.rebuild}") from exc
        gen = raw.get("generation") if isinstance(raw, dict) else None
        if not (isinstance(gen, str) and GENERATION.match(gen)):
            raise CollectionDamaged(f"collection {name!r} is damaged: {path} names no generation; "
                                    f"rebuild it with {self.hints.rebuild}")
        return gen

    def _is_legacy(self, folder: Path) -> bool:
        return (folder / "shard").is_dir() and (folder / META).is_file() and not (folder / CURRENT).exists()

    def _refuse_legacy(self, folder: Path, name: str) -> None:
        if self._is_legacy(folder):
            raise CollectionIncompatible(
                f"collection {name!r} was built by an older cbir (store schema 1, one process at a time); "
                f"rebuild it with {self.hints.rebuild}"
            )

    def _meta(self, folder: Path, gen: str, name: str) -> CollectionMeta:
        gdir = files.refuse_link(folder / gen, self.root)
        path = gdir / META
        if not gdir.is_dir():
            raise CollectionDamaged(f"collection {name!r} is damaged: its current generation {gdir} is missing; "
                                    f"rebuild it with {self.hints.rebuild}")
        try:
            raw = files.read_json(path)
        except (OSError, ValueError) as exc:
            raise CollectionDamaged(f"collection {name!r} is damaged: {path} is unreadable ({_short(exc)}); "
                                    f"rebuild it with {self.hints.rebuild}") from exc
        try:
            meta = CollectionMeta.from_json(raw, str(path))
        except (CollectionDamaged, CollectionIncompatible) as exc:
            raise type(exc)(f"collection {name!r}: {exc}; rebuild it with {self.hints.rebuild}") from exc
        if meta.name != name or meta.generation != gen:
            raise CollectionDamaged(f"collection {name!r} is damaged: {path} describes {meta.name!r} {meta.generation}; "
                                    f"rebuild it with {self.hints.rebuild}")
        return meta

    def _check_files(self, gdir: Path, name: str, hints: Hints) -> None:
        """Every shard file that was written is there, at its size: catches deleted or truncated files."""
        try:
            expected = files.read_json(gdir / SIZES)
            if not isinstance(expected, dict):
                raise ValueError("not a file list")
        except (OSError, ValueError) as exc:
            raise CollectionDamaged(f"collection {name!r} is damaged: {gdir / SIZES} is unreadable ({_short(exc)}); "
                                    f"rebuild it with {hints.rebuild}") from exc
        shard = files.refuse_link(gdir / "shard", self.root)
        if not expected:
            raise CollectionDamaged(f"collection {name!r} is damaged: {gdir / SIZES} lists no files; "
                                    f"rebuild it with {hints.rebuild}")
        for dirpath, dirnames, filenames in os.walk(shard):
            for entry in dirnames + filenames:
                if os.path.islink(os.path.join(dirpath, entry)):
                    raise CollectionDamaged(f"collection {name!r} is damaged: {os.path.join(dirpath, entry)} is a symbolic "
                                            f"link, which the store never makes (nor follows); rebuild it with {hints.rebuild}")
        for rel, size in expected.items():
            path = shard / rel
            try:
                st = os.lstat(path)
                actual = st.st_size if stat.S_ISREG(st.st_mode) else -1
            except (OSError, ValueError):
                raise CollectionDamaged(f"collection {name!r} is damaged: {path} is missing; "
                                        f"rebuild it with {hints.rebuild}") from None
            if actual != size:
                raise CollectionDamaged(f"collection {name!r} is damaged: {path} has {actual} bytes, {size} were written; "
                                        f"rebuild it with {hints.rebuild}")

    def reader(self, name: str) -> EdgeReader:
        folder = self.folder(name)
        deadline = time.monotonic() + self.wait
        while True:
            gen = self._current(folder, name) if folder.is_dir() else None
            if gen is None:
                self._refuse_legacy(folder, name)
                building = folder.is_dir() and any(GENERATION.match(e.name) for e in os.scandir(folder))
                why = " (its first build is running, or was interrupted)" if building else ""
                raise CollectionMissing(f"collection {name!r} does not exist yet{why}; run {self.hints.build} first")
            lock = FileLock(folder / f"{gen}.lock", f"collection {name!r}")
            try:
                lock.acquire(exclusive=False, wait=max(0.0, deadline - time.monotonic()), waited=self.wait)
            except StoreBusy:
                if self._current_or_none(folder) not in (None, gen):
                    continue  # a writer is retiring the generation we read: the new one is there already
                raise
            except OSError as exc:
                raise StoreError(f"cannot open collection {name!r} in {folder}: {exc.strerror or exc}; "
                                 "check permissions in CBIR_HOME") from exc
            try:
                if self._current(folder, name) != gen:
                    lock.release()  # switched while we waited: open the new one
                    continue
                return self._open(folder, name, gen, lock)
            except BaseException:
                lock.release()
                raise

    def _open(self, folder: Path, name: str, gen: str, lock: FileLock) -> EdgeReader:
        meta = self._meta(folder, gen, name)
        gdir = folder / gen
        hints = self.hints.for_meta(meta)  # advice that rebuilds this very collection (its --limit, its --size)
        self._check_files(gdir, name, hints)
        try:
            engine_shard = _engine().EdgeShard.load(str(gdir / "shard"))
        except Exception as exc:
            if not os.access(gdir / "shard", os.W_OK):
                raise StoreError(f"cannot open collection {name!r}: {gdir / 'shard'} is not writable ({_short(exc)}); "
                                 "the engine rewrites a few small files when it opens a shard, so cbir needs write "
                                 "access to CBIR_HOME/qdrant even to search") from exc
            free = files.free_bytes(gdir)
            if free < FULL_DISK_BYTES:
                # The engine rewrites a small file when it opens a shard: even reading needs a little room.
                raise StoreError(
                    f"not enough free space to open collection {name!r} in {gdir}: {free // 1024} KiB free; "
                    "free some space on that disk and try again (the collection itself is intact)"
                ) from exc
            raise CollectionDamaged(f"collection {name!r} is damaged: its shard in {gdir} does not load ({_short(exc)}); "
                                    f"rebuild it with {hints.rebuild}") from exc
        shard = _Shard(engine_shard, gdir / "shard", name, hints)
        reader = EdgeReader(name, self.location_of(name), gen, meta, shard, lock)
        try:
            count = shard.count()
            if count != meta.points:
                raise CollectionDamaged(f"collection {name!r} is damaged: it holds {count} points, {meta.points} were "
                                        f"written; rebuild it with {hints.rebuild}")
            check_probe(reader, meta, lambda what: CollectionDamaged(
                f"collection {name!r} is damaged: {what}; rebuild it with {hints.rebuild}"))
        except BaseException:
            shard.close()
            raise
        return reader

    def generation(self, name: str) -> str | None:
        return self._current_or_none(self.folder(name))

    def meta(self, name: str) -> CollectionMeta | None:
        """The published collection's record, without opening its shard (None: none, or unreadable)."""
        try:
            folder = self.folder(name)
            gen = self._current(folder, name)
            return self._meta(folder, gen, name) if gen else None
        except CbirError:
            return None

    # --- writing -----------------------------------------------------------------------------
    @contextmanager
    def writer(self, name: str) -> Iterator[EdgeWriteSession]:
        folder = self.folder(name)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store in {folder}: {exc.strerror or exc}; "
                             "set CBIR_HOME (or --home) to a writable folder with free space") from exc
        files.refuse_link(folder, self.root)
        while True:
            lock = FileLock(folder / WRITE_LOCK, f"collection {name!r}")
            try:
                lock.acquire(exclusive=True, wait=self.wait)
            except OSError as exc:
                raise StoreError(f"cannot lock {folder / WRITE_LOCK}: {exc.strerror or exc}; "
                                 "set CBIR_HOME (or --home) to a writable folder") from exc
            if _same_file(lock, folder / WRITE_LOCK):
                break
            lock.release()  # a drop removed the folder while we waited: start over
            folder.mkdir(parents=True, exist_ok=True)
        session = EdgeWriteSession(self, name, folder)
        try:
            yield session
        finally:
            try:
                _tidy_dropped(folder)
            finally:
                lock.release()

    def check_space(self, folder: Path, needed: int, name: str) -> None:
        free = files.free_bytes(folder)
        if free < needed:
            raise StoreError(
                f"not enough free space for collection {name!r} in {folder}: {free // 2**20} MiB free, "
                f"{needed // 2**20 + 1} MiB needed; nothing was changed; free some space or set CBIR_HOME to another "
                f"disk, then run {self.hints.build} again"
            )

    # --- listing -----------------------------------------------------------------------------
    def collections(self) -> list[CollectionInfo]:
        out = []
        if not self.root.is_dir():
            return out
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if entry.is_symlink() or not entry.is_dir():
                continue
            try:
                check_collection_name(entry.name)
            except CbirError:
                continue
            folder = Path(entry.path)
            meta, problem = None, None
            try:
                gen = self._current(folder, entry.name)
                if gen is None:
                    if not self._is_legacy(folder):
                        if not any(GENERATION.match(e.name) for e in os.scandir(folder)):
                            continue  # only an empty folder: no collection was ever published here
                        problem = "not built yet (a build is running or was interrupted)"
                    else:
                        problem = "built by an older cbir: rebuild it"
                else:
                    meta = self._meta(folder, gen, entry.name)
            except CbirError as exc:
                problem = str(exc)
            out.append(CollectionInfo(entry.name, meta, files.disk_usage(folder), problem))
        return out

    def close(self) -> None:
        """Nothing stays open between calls."""


def _same_file(lock: FileLock, path: Path) -> bool:
    try:
        return os.fstat(lock._fd).st_ino == os.stat(path).st_ino
    except OSError:
        return False


def _tidy_dropped(folder: Path) -> None:
    """After a drop left nothing but the write lock, remove the folder too."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    if names == [WRITE_LOCK] or not names:
        try:
            (folder / WRITE_LOCK).unlink(missing_ok=True)
            folder.rmdir()
        except OSError:
            pass
