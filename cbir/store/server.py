"""The server backend: collections on a Qdrant server (or qdrant-client's in-process ':memory:' engine).

A collection name is a Qdrant *alias*; the points live in a physical collection behind it,
`<name>--<generation>`. A rebuild fills a new physical collection and then switches the alias
in one atomic call (Qdrant's documented way to swap collections without downtime), so searches
see the old collection whole until the new one is complete. Incremental updates are applied in
place (each Qdrant write is atomic), which keeps them cheap on a server holding millions of points.

Every request has one deadline for the whole exchange: the client's own timeout restarts with
each byte received, so a server that trickles bytes could otherwise hang a command forever.
"""

from __future__ import annotations

import hashlib
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from cbir.errors import CbirError, CollectionDamaged, CollectionIncompatible, CollectionMissing, ServerError, StoreBusy
from cbir.names import check_collection_name
from cbir.settings import redact_url
from cbir.store.base import CollectionInfo, Hits, Points, check_finite
from cbir.store.collection import SCHEMA, CollectionMeta, Hints, check_probe, make_probe, remember_sample
from cbir.store.edge import new_generation

_MEMORY_CLIENTS: dict[str, object] = {}  # ':memory:' is one engine per process, shared by every open
STALE_LOCK_SECONDS = 120  # a write lock not renewed for this long belonged to a killed writer
RETIRE_GRACE_SECONDS = 1.0  # after a switch, readers of the old collection get this long to finish a call


def physical_name(name: str, generation: str) -> str:
    """The physical collection behind alias `name` for one generation (within Qdrant's 255 bytes)."""
    candidate = f"{name}--{generation}"
    if len(candidate.encode()) <= 255:
        return candidate
    return f"cbir-{hashlib.sha256(name.encode()).hexdigest()[:16]}--{generation}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


class Connection:
    """A qdrant-client with one deadline per call and the server's name for messages."""

    def __init__(self, client, location: str, deadline: float, in_process: bool):
        self.client = client
        self.location = location
        self.deadline = deadline
        self.in_process = in_process

    @classmethod
    def open(cls, url: str, api_key: str | None, timeout: float = 10.0) -> "Connection":
        from qdrant_client import QdrantClient

        if url == ":memory:":
            client = _MEMORY_CLIENTS.setdefault("memory", QdrantClient(location=":memory:"))
            return cls(client, "in-process Qdrant (:memory:)", timeout, True)
        import warnings

        with warnings.catch_warnings():
            # cbir prints its own one-line warning for a key over http (cbir.store.open_backend).
            warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")
            try:
                client = QdrantClient(url=url, api_key=api_key, timeout=max(1, int(timeout)), check_compatibility=False)
            except Exception as exc:
                raise ServerError(f"Qdrant server {redact_url(url)}: cannot connect ({_first_line(exc)})") from exc
        return cls(client, f"Qdrant server {redact_url(url)}", timeout, False)

    def call(self, what: str, fn, *args, **kwargs):
        """fn(*args, **kwargs), failing with one line when it errs or has not finished within the deadline."""
        box: dict = {}

        def run():
            try:
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=run, daemon=True, name="cbir-qdrant-call")
        worker.start()
        worker.join(self.deadline + 5)  # the client's own timeout, plus time for the answer to arrive
        if worker.is_alive():
            raise ServerError(f"{self.location}: {what} got no complete answer within {self.deadline + 5:g} s; "
                              "is the server up and the URL right?")
        if "error" in box:
            exc = box["error"]
            if isinstance(exc, CbirError):
                raise exc
            raise ServerError(f"{self.location}: {what} failed ({_first_line(exc)}); is the server up and the URL right?") from exc
        return box.get("value")


def _hits(points, fields) -> Hits:
    from cbir.store.edge import plain_id

    ids = np.array([plain_id(p.id) for p in points], dtype=object if points and not isinstance(points[0].id, int) else None)
    dists = np.fromiter((p.score for p in points), dtype=np.float32, count=len(points))
    payloads = [dict(p.payload or {}) for p in points] if fields else None
    return Hits(ids, dists, payloads)


class _Collection:
    """Calls on one physical collection."""

    def __init__(self, conn: Connection, physical: str):
        self.conn = conn
        self.physical = physical

    def count(self) -> int:
        return int(self.conn.call("counting", self.conn.client.count, self.physical, exact=True).count)

    def query_batch(self, vectors, limit, label=None, exact=True, fields=("label",)) -> list[Hits]:
        from qdrant_client import models

        vectors = check_finite(vectors, "query")
        flt = None
        if label is not None:
            flt = models.Filter(must=[models.FieldCondition(key="label", match=models.MatchValue(value=label))])
        # The in-process engine is always exact (and warns when asked).
        params = None if self.conn.in_process else models.SearchParams(exact=bool(exact))
        requests = [
            models.QueryRequest(query=v.tolist(), limit=int(limit), filter=flt,
                                with_payload=list(fields) if fields else False, params=params)
            for v in vectors
        ]
        responses = self.conn.call("querying", self.conn.client.query_batch_points, self.physical, requests=requests)
        return [_hits(r.points, fields) for r in responses]

    def points(self, with_vectors=True, fields=("label",), ids=None) -> Points:
        from cbir.store.edge import points_of

        payload = list(fields) if fields else False
        if ids is not None:
            records = self.conn.call("retrieving points", self.conn.client.retrieve, self.physical,
                                     ids=[_pid(i) for i in ids], with_payload=payload, with_vectors=with_vectors)
            return points_of(records, with_vectors, fields, sort=False)
        records, offset = [], None
        while True:
            page, offset = self.conn.call("scrolling", self.conn.client.scroll, self.physical, limit=10_000,
                                          offset=offset, with_payload=payload, with_vectors=with_vectors)
            records.extend(page)
            if offset is None:
                break
        return points_of(records, with_vectors, fields)

    def upsert(self, ids, vectors, payloads) -> None:
        from qdrant_client import models

        vectors = check_finite(vectors, "ingest")
        batch = models.Batch(ids=[_pid(i) for i in ids], vectors=vectors.tolist(), payloads=list(payloads))
        self.conn.call("upserting points", self.conn.client.upsert, self.physical, points=batch, wait=True)

    def delete(self, ids) -> None:
        from qdrant_client import models

        if len(ids):
            self.conn.call("deleting points", self.conn.client.delete, self.physical,
                           points_selector=models.PointIdsList(points=[_pid(i) for i in ids]), wait=True)


def _pid(value):
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


class ServerReader(_Collection):
    """A collection on the server, read through the physical collection its alias named when it opened.

    Should a rebuild switch the alias and delete that collection meanwhile, a call fails once and
    is retried on the new one (a search simply gets the new collection's answer).
    """

    local = False  # rankings come from the server's own queries

    def __init__(self, backend: "ServerBackend", name: str, physical: str, meta: CollectionMeta):
        super().__init__(backend.conn, physical)
        self.backend = backend
        self.name = name
        self.meta = meta
        self.location = backend.conn.location
        self.generation = meta.generation

    def _retrying(self, method, *args, **kwargs):
        try:
            return method(*args, **kwargs)
        except ServerError:
            found = self.backend._resolve(self.name)
            if found is None or found[0] == self.physical:
                raise
            self.physical, self.meta = found  # switched by a rebuild: the new collection answers
            self.generation = self.meta.generation
            return method(*args, **kwargs)

    def count(self) -> int:
        return self._retrying(super().count)

    def query_batch(self, vectors, limit, label=None, exact=True, fields=("label",)) -> list[Hits]:
        return self._retrying(super().query_batch, vectors, limit, label, exact, fields)

    def points(self, with_vectors=True, fields=("label",), ids=None) -> Points:
        return self._retrying(super().points, with_vectors, fields, ids)

    def retrieve(self, ids, with_vectors=False, fields=("label",)) -> Points:
        return self.points(with_vectors, fields, ids=ids)

    def close(self) -> None:
        """The connection belongs to the backend."""


class ServerBuild(_Collection):
    def __init__(self, conn: Connection, physical: str, generation: str, lock: "ServerLock"):
        super().__init__(conn, physical)
        self.generation = generation
        self.sample: dict = {}
        self.lock = lock

    def upsert(self, ids, vectors, payloads) -> None:
        super().upsert(ids, vectors, payloads)
        remember_sample(self.sample, ids)
        self.lock.beat()

    def retrieve(self, ids, with_vectors=False, fields=()) -> Points:
        return self.points(with_vectors, fields, ids=ids)


class ServerLock:
    """One writer per collection on a server: a marker collection that only one creator gets.

    Creating a collection is atomic on Qdrant, so whoever creates `cbir-lock--<name's hash>` holds
    the lock; the holder's pid, host and command are its metadata, renewed as it works, and a lock
    whose holder stopped renewing it for STALE_LOCK_SECONDS (a killed writer) is taken over.
    """

    def __init__(self, backend: "ServerBackend", name: str):
        self.backend = backend
        self.name = name
        self.marker = "cbir-lock--" + hashlib.sha256(name.encode()).hexdigest()[:24]
        self._last = 0.0
        self.held = False

    def _info(self) -> dict:
        import os
        import socket
        import sys

        from cbir.store.locks import redact_argv

        return {"cbir_lock": self.name, "pid": os.getpid(), "host": socket.gethostname(),
                "command": " ".join(redact_argv(sys.argv))[:200], "heartbeat": time.time()}

    def acquire(self, wait: float) -> "ServerLock":
        from qdrant_client import models

        conn = self.backend.conn
        deadline = time.monotonic() + wait
        vanished = 0
        while True:
            try:
                conn.call("taking the write lock", conn.client.create_collection, self.marker,
                          vectors_config=models.VectorParams(size=1, distance=models.Distance.DOT), metadata=self._info())
                self.held = True
                self._last = time.time()
                return self
            except ServerError:
                holder = self._holder()
                if holder is None:
                    # Released between our two calls: try again. But a create that fails while no lock exists
                    # is the server failing (unreachable, refusing): say so instead of trying forever.
                    vanished += 1
                    if vanished >= 3:
                        raise
                    time.sleep(0.05)
                    continue
                if time.time() - float(holder.get("heartbeat", 0)) > STALE_LOCK_SECONDS:
                    self._drop()  # its holder was killed: take it over
                    continue
                if time.monotonic() >= deadline:
                    who = f"pid {holder.get('pid')} on {holder.get('host')} (`{holder.get('command', '')}`)"
                    raise StoreBusy(f"collection {self.name!r} on {conn.location} is busy: {who} is writing to it; "
                                    f"gave up after waiting {wait:g} s; try again when it is done, or wait longer with "
                                    "--wait SECONDS (CBIR_WAIT)") from None
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def _holder(self) -> dict | None:
        try:
            info = self.backend.conn.call("reading the write lock", self.backend.conn.client.get_collection, self.marker)
        except ServerError:
            return None
        return dict(info.config.metadata or {})

    def beat(self) -> None:
        """Renew the lock now and then while working."""
        if self.held and time.time() - self._last > 10:
            self._last = time.time()
            conn = self.backend.conn
            conn.call("renewing the write lock", conn.client.update_collection, self.marker, metadata=self._info())

    def _drop(self) -> None:
        try:
            self.backend.conn.call("releasing the write lock", self.backend.conn.client.delete_collection, self.marker)
        except ServerError:
            pass

    def release(self) -> None:
        if self.held:
            self.held = False
            self._drop()


class ServerWriteSession:
    def __init__(self, backend: "ServerBackend", name: str, lock: ServerLock):
        self.backend = backend
        self.name = name
        self.location = backend.location
        self.swept = 0
        self.lock = lock

    def current(self) -> CollectionMeta | None:
        found = self.backend._resolve(self.name)
        return None if found is None else found[1]

    def sweep(self) -> int:
        """Delete physical collections of this name that no alias points at: retired ones, and killed builds."""
        conn = self.backend.conn
        target = self.backend._alias_target(self.name)
        removed = 0
        for physical in self.backend._physical_names():
            if physical == target:
                continue
            meta = self.backend._meta_or_none(physical)
            if meta is None or meta.name != self.name:
                continue
            # Writers hold the lock: any other build of this name was left by a killed one.
            conn.call("deleting a leftover collection", conn.client.delete_collection, physical)
            removed += 1
        self.swept += removed
        return removed

    def build(self, meta: CollectionMeta, copy_current: bool = False, expected_points: int = 0) -> ServerBuild:
        """A new physical collection beside the current one: empty, or a copy of it to change."""
        from qdrant_client import models

        self.sweep()
        conn = self.backend.conn
        source = None
        if copy_current:
            found = self.backend._resolve(self.name)
            if found is None:
                raise CollectionMissing(f"collection {self.name!r} does not exist yet; run {self.backend.hints.build} first")
            source = found[0]
        gen = new_generation()
        physical = physical_name(self.name, gen)
        record = meta.but(generation=gen, complete=False)
        layout = self.backend.layout
        conn.call("creating a collection", conn.client.create_collection, physical,
                  vectors_config=models.VectorParams(size=meta.dim, distance=models.Distance.EUCLID),
                  shard_number=layout.get("shards"), replication_factor=layout.get("replicas"),
                  metadata=record.to_json())
        build = ServerBuild(conn, physical, gen, self.lock)
        if source is not None:
            self._copy(source, build)
        return build

    def _copy(self, source: str, build: ServerBuild) -> None:
        """Every point of the current collection into the build (server collections are copied through the client)."""
        from qdrant_client import models

        conn = self.backend.conn
        offset = None
        while True:
            records, offset = conn.call("copying the collection", conn.client.scroll, source, limit=1000, offset=offset,
                                        with_payload=True, with_vectors=True)
            if records:
                points = [models.PointStruct(id=r.id, vector=r.vector, payload=r.payload) for r in records]
                conn.call("copying the collection", conn.client.upsert, build.physical, points=points, wait=True)
                build.lock.beat()
            if offset is None:
                break

    def publish(self, build: ServerBuild, meta: CollectionMeta, index: bool = True) -> CollectionMeta:
        from qdrant_client import models

        conn = self.backend.conn
        count = build.count()
        probe = make_probe(build, build.sample)
        meta = meta.but(generation=build.generation, complete=True, points=count, schema=SCHEMA,
                        extra={**meta.extra, "probe": probe})
        conn.call("updating collection metadata", conn.client.update_collection, build.physical, metadata=meta.to_json())
        old = self.backend._alias_target(self.name)
        if old is None and self.backend._exists(self.name):
            # A collection of an older cbir holds the name itself: it must go before the alias can take its place.
            conn.call("deleting the older collection", conn.client.delete_collection, self.name)
        ops = []
        if old is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.name)))
        ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=build.physical, alias_name=self.name)))
        conn.call("switching the alias", conn.client.update_collection_aliases, change_aliases_operations=ops)
        # From here on the new collection is the collection: nothing below may undo that.
        if old is not None and old != build.physical:
            try:
                time.sleep(RETIRE_GRACE_SECONDS)  # readers still on the old collection finish their call
                conn.call("deleting the old collection", conn.client.delete_collection, old)
            except BaseException:  # noqa: BLE001 - the next writer sweeps it
                pass
        build.published = True
        return meta

    def abort(self, build: ServerBuild) -> None:
        if getattr(build, "published", False) or self.backend._alias_target(self.name) == build.physical:
            return
        try:
            self.backend.conn.call("deleting an unfinished collection", self.backend.conn.client.delete_collection, build.physical)
        except CbirError:
            pass  # the next writer sweeps it

    def drop(self) -> bool:
        from qdrant_client import models

        conn = self.backend.conn
        target = self.backend._alias_target(self.name)
        existed = target is not None
        if target is not None:
            conn.call("deleting the alias", conn.client.update_collection_aliases,
                      change_aliases_operations=[models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.name))])
            conn.call("deleting the collection", conn.client.delete_collection, target)
        elif self.backend._exists(self.name):
            conn.call("deleting the collection", conn.client.delete_collection, self.name)
            existed = True
        for physical in self.backend._physical_names():
            meta = self.backend._meta_or_none(physical)
            if meta is not None and meta.name == self.name:
                conn.call("deleting a leftover collection", conn.client.delete_collection, physical)
        return existed


class ServerBackend:
    """Collections on one Qdrant server."""

    def __init__(self, conn: Connection, hints: Hints | None = None, layout: dict | None = None, wait: float = 30.0):
        self.conn = conn
        self.wait = wait
        self.hints = hints or Hints()
        self.location = conn.location
        self.layout = layout or {}  # shards / replicas for new collections

    def location_of(self, name: str) -> str:
        return self.location

    def _aliases(self) -> dict[str, str]:
        response = self.conn.call("listing aliases", self.conn.client.get_aliases)
        return {a.alias_name: a.collection_name for a in response.aliases}

    def _alias_target(self, name: str) -> str | None:
        return self._aliases().get(name)

    def _physical_names(self) -> list[str]:
        response = self.conn.call("listing collections", self.conn.client.get_collections)
        return [c.name for c in response.collections]

    def _exists(self, physical: str) -> bool:
        return physical in self._physical_names()

    def _raw_meta(self, physical: str):
        info = self.conn.call("reading the collection", self.conn.client.get_collection, physical)
        return info.config.metadata

    def _meta_or_none(self, physical: str) -> CollectionMeta | None:
        try:
            return CollectionMeta.from_json(self._raw_meta(physical), f"collection {physical!r}")
        except CbirError:
            return None

    def _resolve(self, name: str) -> tuple[str, CollectionMeta] | None:
        """(physical collection, its record) behind a name; None when there is none."""
        check_collection_name(name)
        target = self._alias_target(name)
        if target is None:
            if self._exists(name):
                raise CollectionIncompatible(
                    f"collection {name!r} on {self.location} was built by an older cbir (no alias); "
                    f"rebuild it with {self.hints.rebuild}"
                )
            return None
        where = f"collection {name!r} on {self.location}"
        try:
            meta = CollectionMeta.from_json(self._raw_meta(target), where)
        except (CollectionDamaged, CollectionIncompatible) as exc:
            raise type(exc)(f"{exc}; rebuild it with {self.hints.rebuild}") from exc
        return target, meta

    def reader(self, name: str) -> ServerReader:
        found = self._resolve(name)
        if found is None:
            raise CollectionMissing(f"collection {name!r} does not exist yet on {self.location}; run {self.hints.build} first")
        physical, meta = found
        reader = ServerReader(self, name, physical, meta)
        hints = self.hints.for_meta(meta)
        count = reader.count()
        if count != reader.meta.points:
            raise CollectionDamaged(f"collection {name!r} on {self.location} holds {count} points, {reader.meta.points} were "
                                    f"written; rebuild it with {hints.rebuild}")
        check_probe(reader, reader.meta, lambda what: CollectionDamaged(
            f"collection {name!r} on {self.location} is damaged: {what}; rebuild it with {hints.rebuild}"))
        return reader

    def meta(self, name: str) -> CollectionMeta | None:
        try:
            found = self._resolve(name)
        except CbirError:
            return None
        return None if found is None else found[1]

    def generation(self, name: str) -> str | None:
        found = self._resolve(name)
        return None if found is None else found[1].generation

    @contextmanager
    def writer(self, name: str) -> Iterator[ServerWriteSession]:
        check_collection_name(name)
        lock = ServerLock(self, name).acquire(self.wait)
        try:
            yield ServerWriteSession(self, name, lock)
        finally:
            lock.release()

    def collections(self) -> list[CollectionInfo]:
        out = []
        aliases = self._aliases()
        for alias, physical in sorted(aliases.items()):
            meta, problem = None, None
            try:
                meta = CollectionMeta.from_json(self._raw_meta(physical), f"collection {alias!r}")
            except CbirError as exc:
                problem = str(exc)
            out.append(CollectionInfo(alias, meta, None, problem))
        behind = set(aliases.values())
        for physical in self._physical_names():
            if physical in behind:
                continue
            meta = self._meta_or_none(physical)
            if meta is None:
                try:
                    raw = self._raw_meta(physical) or {}
                except CbirError:
                    raw = {}
                if "model_id" in raw:  # a collection of an older cbir
                    out.append(CollectionInfo(physical, None, None, "built by an older cbir: rebuild it"))
            elif not meta.complete:
                out.append(CollectionInfo(meta.name, None, None, f"not built yet (a build is running or was interrupted: {physical})"))
        return out

    def close(self) -> None:
        if not self.conn.in_process:
            try:
                self.conn.call("closing the connection", self.conn.client.close)
            except CbirError:
                pass
