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

from cbir.errors import CbirError, CollectionDamaged, CollectionIncompatible, CollectionMissing, ServerError
from cbir.names import check_collection_name
from cbir.settings import redact_url
from cbir.store.base import CollectionInfo, Hits, Points, check_finite
from cbir.store.collection import SCHEMA, CollectionMeta, Hints
from cbir.store.edge import new_generation

_MEMORY_CLIENTS: dict[str, object] = {}  # ':memory:' is one engine per process, shared by every open
STALE_BUILD_SECONDS = 3600  # an unfinished build older than this was killed: the next writer removes it


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
    ids = np.array([p.id for p in points])
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
    local = False  # rankings come from the server's own queries
    def __init__(self, conn: Connection, name: str, physical: str, meta: CollectionMeta):
        super().__init__(conn, physical)
        self.name = name
        self.meta = meta
        self.location = conn.location
        self.generation = meta.generation

    def retrieve(self, ids, with_vectors=False, fields=("label",)) -> Points:
        return self.points(with_vectors, fields, ids=ids)

    def close(self) -> None:
        """The connection belongs to the backend."""


class ServerBuild(_Collection):
    def __init__(self, conn: Connection, physical: str, generation: str, in_place: bool):
        super().__init__(conn, physical)
        self.generation = generation
        self.in_place = in_place


class ServerWriteSession:
    def __init__(self, backend: "ServerBackend", name: str):
        self.backend = backend
        self.name = name
        self.location = backend.location
        self.swept = 0

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
            started = meta.extra.get("build_started", 0)
            if meta.complete or time.time() - float(started or 0) > STALE_BUILD_SECONDS:
                conn.call("deleting a leftover collection", conn.client.delete_collection, physical)
                removed += 1
        self.swept += removed
        return removed

    def build(self, meta: CollectionMeta, copy_current: bool = False, expected_points: int = 0) -> ServerBuild:
        from qdrant_client import models

        self.sweep()
        conn = self.backend.conn
        if copy_current:
            found = self.backend._resolve(self.name)
            if found is None:
                raise CollectionMissing(f"collection {self.name!r} does not exist yet; run {self.backend.hints.build} first")
            physical, current = found
            return ServerBuild(conn, physical, current.generation, in_place=True)
        gen = new_generation()
        physical = physical_name(self.name, gen)
        record = meta.but(generation=gen, complete=False, extra={**meta.extra, "build_started": time.time()})
        settings = self.backend.layout
        conn.call("creating a collection", conn.client.create_collection, physical,
                  vectors_config=models.VectorParams(size=meta.dim, distance=models.Distance.EUCLID),
                  shard_number=settings.get("shards"), replication_factor=settings.get("replicas"),
                  metadata=record.to_json())
        return ServerBuild(conn, physical, gen, in_place=False)

    def publish(self, build: ServerBuild, meta: CollectionMeta, index: bool = True) -> CollectionMeta:
        from qdrant_client import models

        conn = self.backend.conn
        count = build.count()
        extra = {k: v for k, v in meta.extra.items() if k != "build_started"}
        meta = meta.but(generation=build.generation, complete=True, points=count, schema=SCHEMA, extra=extra)
        conn.call("updating collection metadata", conn.client.update_collection, build.physical, metadata=meta.to_json())
        if build.in_place:
            return meta
        old = self.backend._alias_target(self.name)
        if old is None and self.backend._exists(self.name):
            # A collection of an older cbir holds the name itself: it must go before the alias can take its place.
            conn.call("deleting the older collection", conn.client.delete_collection, self.name)
        ops = []
        if old is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.name)))
        ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=build.physical, alias_name=self.name)))
        conn.call("switching the alias", conn.client.update_collection_aliases, change_aliases_operations=ops)
        if old is not None and old != build.physical:
            conn.call("deleting the old collection", conn.client.delete_collection, old)
        return meta

    def abort(self, build: ServerBuild) -> None:
        if not build.in_place:
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

    def __init__(self, conn: Connection, hints: Hints | None = None, layout: dict | None = None):
        self.conn = conn
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
        reader = ServerReader(self.conn, name, physical, meta)
        count = reader.count()
        if meta.complete and count != meta.points:
            raise CollectionDamaged(f"collection {name!r} on {self.location} holds {count} points, {meta.points} were "
                                    f"written; rebuild it with {self.hints.rebuild}")
        return reader

    def generation(self, name: str) -> str | None:
        found = self._resolve(name)
        return None if found is None else found[1].generation

    @contextmanager
    def writer(self, name: str) -> Iterator[ServerWriteSession]:
        check_collection_name(name)
        yield ServerWriteSession(self, name)

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
