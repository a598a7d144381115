"""`ingest run`: read a source, encode what is new or changed, write it into a new build, publish it.

read (a source's items) -> plan (what differs from the collection) -> encode (LiteRT, in batches)
-> write (upsert into a build beside the current collection) -> publish (one atomic switch).

Nothing is changed in place: a rebuild fills an empty build; an update copies the current
collection and changes the copy. So a killed or interrupted ingest leaves the old collection
answering, whole, and the next run removes what the killed one left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from cbir import __version__, match
from cbir.encoder import Encoder
from cbir.errors import CbirError, CollectionDamaged, CollectionIncompatible, Interrupted, StoreError
from cbir.settings import Settings
from cbir.store import Backend, CollectionMeta, open_backend
from cbir.store.collection import check_compatible, now


@dataclass
class Plan:
    """What an ingest will do to the collection."""

    add: list = field(default_factory=list)
    update: list = field(default_factory=list)
    remove: list = field(default_factory=list)
    unchanged: int = 0
    rebuild: bool = False  # a fresh build (no collection yet, --recreate, or another source)

    @property
    def writes(self) -> int:
        return len(self.add) + len(self.update)

    @property
    def changes(self) -> bool:
        return bool(self.add or self.update or self.remove) or self.rebuild


@dataclass(frozen=True)
class IngestReport:
    """What an ingest did."""

    collection: str
    location: str
    total: int
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    seconds: float = 0.0
    encode_seconds: float = 0.0
    upsert_seconds: float = 0.0
    index_seconds: float = 0.0
    note: str = ""

    @property
    def points(self) -> int:
        return self.added + self.updated

    def summary(self) -> str:
        if self.points == 0 and self.removed == 0:
            return (f"collection {self.collection!r} is up to date: {self.total} points, unchanged {self.unchanged}, "
                    f"in {self.location}{self.note}")
        rate = self.points / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"ingested {self.points} points in {self.seconds:.1f} s ({rate:.0f} points/s; encode {self.encode_seconds:.1f} s, "
            f"upsert {self.upsert_seconds:.1f} s, index {self.index_seconds:.1f} s): added {self.added}, updated "
            f"{self.updated}, removed {self.removed}, unchanged {self.unchanged}; collection {self.collection!r} now holds "
            f"{self.total} points in {self.location}{self.note}"
        )


def collection_meta(name: str, encoder: Encoder, source, n_points: int) -> CollectionMeta:
    """The record of a collection this encoder builds from this source."""
    return CollectionMeta(
        name=name, dim=encoder.dim, model_id=encoder.model_id, encoder=encoder.name,
        encoder_sha256=encoder.encoder_sha256, dataset=source.name, points=n_points, complete=False,
        model_file=str(encoder.path), source=source.describe(), created=now(), cbir_version=__version__,
    )


def plan(session, source, encoder: Encoder, recreate: bool, hints) -> tuple[Plan, CollectionMeta | None]:
    """Compare the source with the current collection; refuse what would lose data."""
    current = None
    try:
        current = session.current()
    except (CollectionDamaged, CollectionIncompatible):
        if not recreate:
            raise  # the message says to rebuild with --recreate
    if current is not None and source.kind in ("idx", "deformed"):
        refuse_shrinking(current, source, session.name, recreate)
    if recreate or current is None:
        return Plan(add=source.point_ids().tolist(), rebuild=True), current
    check_compatible(current, encoder.expected(source.name), session.name, hints.rebuild, hints.build)
    if current.source.get("kind") != source.kind:
        raise CbirError(f"collection {session.name!r} was built from {current.source.get('kind')} data, not "
                        f"{source.kind}; use --collection NAME for another collection")
    if current.source == source.describe():
        session.backend.reader(session.name).close()  # checked like any open: a damaged collection is never up to date
        return Plan(unchanged=current.points), current  # the same items of the same files: nothing to read
    stored = stored_manifest(session, source.fingerprint_fields)
    p = Plan()
    for pid, state in source.manifest().items():
        old = stored.pop(pid, None)
        if old is None:
            p.add.append(pid)
        elif source.changed(pid, old, state):
            p.update.append(pid)
        else:
            p.unchanged += 1
    p.remove = list(stored)
    return p, current


def _as_ids(values: list) -> np.ndarray:
    """Point ids as an array: integers, or text (UUIDs of folder points)."""
    if values and isinstance(values[0], str):
        return np.array(values, dtype=object)
    return np.asarray(values, dtype=np.int64)


def _ids_of(source, chunk, payloads) -> list:
    """The ids of the items that loaded (a folder leaves unreadable files out of its payloads)."""
    from cbir.sources.folder import point_id

    return [point_id(source.collection, p["path"]) for p in payloads]


def refuse_shrinking(current: CollectionMeta, source, name: str, recreate: bool) -> None:
    """A partial ingest (--limit) never replaces a full collection, nor shrinks a partial one (unless --recreate)."""
    if source.kind == "deformed":
        held = current.source.get("size")
        if isinstance(held, int) and len(source) < held and not recreate:
            raise CbirError(f"collection {name!r} holds {held} generated images; --size {len(source)} would shrink it; "
                            "use another --collection, or --recreate to rebuild it smaller")
        return
    held = current.first
    wanted = source.describe()["first"]
    if held is None and wanted is not None:
        raise CbirError(f"collection {name!r} holds the whole {current.dataset} training split ({current.points} points); "
                        f"--limit {wanted} would shrink it; ingest the part into its own collection (leave out "
                        "--collection, or pass --collection NAME)")
    if held is not None and wanted is not None and wanted < held and not recreate:
        raise CbirError(f"collection {name!r} holds the first {held} images; --limit {wanted} would shrink it; "
                        "use another --collection for the smaller part")


def calibrate(build, encoder: Encoder, source, n: int = 1000, seed: int = 0) -> dict:
    """What real queries' nearest distances are in this build: the match signal's yardstick (cbir.match).

    Held-out images of the same kind when the source has them (a data set's test split); else the
    collection's own points, each asked for its nearest neighbour other than itself (leave-one-out).
    """
    held = source.held_out(n, seed)
    if held is not None:
        images, what = held
        distances = [h.distances[0] for h in build.query_batch(encoder.encode(images), 1, fields=()) if len(h.distances)]
        return match.calibrate(np.asarray(distances), what, images)
    every = build.points(with_vectors=False, fields=()).ids
    if len(every) < 3:
        return {}
    pick = every[np.sort(np.random.default_rng(seed).choice(len(every), min(n, len(every)), replace=False))]
    points = build.retrieve(pick.tolist(), with_vectors=True, fields=())  # only the sample's vectors
    distances = []
    for pid, hits in zip(points.ids, build.query_batch(points.vectors, 2, fields=())):
        others = [d for i, d in zip(hits.ids, hits.distances) if i != pid]
        if others:
            distances.append(others[0])
    images, _ = source.load(pick, record_failures=False)  # their strokes (a file that fails now is left out)
    return match.calibrate(np.asarray(distances), f"{len(distances)} of the collection's own images (leave-one-out)", images)


def stored_manifest(session, fields) -> dict:
    """{point id: {field: value}} of the fingerprint fields of what the current collection holds."""
    reader = session.backend.reader(session.name)
    try:
        points = reader.points(with_vectors=False, fields=fields)
    finally:
        reader.close()
    columns = [points.payloads[f] for f in fields]
    return {pid: dict(zip(fields, values)) for pid, *values in zip(points.ids.tolist(), *columns)}


def ingest(
    settings: Settings,
    encoder: Encoder,
    source,
    recreate: bool = False,
    batch_size: int = 1000,
    progress: bool = True,
    backend: Backend | None = None,
    log=lambda line: None,
    hint_flags: tuple[str, ...] = (),
) -> IngestReport:
    """Bring the settings' collection up to date with the source, built by encoder.

    hint_flags: flags the advice in messages must carry besides the settings' own (e.g. --limit N).
    """
    owned = backend is None
    backend = backend or open_backend(settings, hint_flags)
    name = settings.collection_name
    try:
        with backend.writer(name) as session:
            work, current = plan(session, source, encoder, recreate, backend.hints)
            if not work.changes:
                return IngestReport(name, backend.location_of(name),
                                    current.points, unchanged=work.unchanged)
            return _write(settings, session, backend, encoder, source, work, current, batch_size, progress, log)
    finally:
        if hasattr(source, "close"):
            source.close()  # a folder's decoding workers
        if owned:
            backend.close()


def _write(settings, session, backend, encoder, source, work: Plan, current, batch_size, progress, log) -> IngestReport:
    name = session.name
    total_after = len(work.add) + len(work.update) + work.unchanged
    meta = collection_meta(name, encoder, source, total_after)
    build = session.build(meta, copy_current=not work.rebuild, expected_points=work.writes)
    if session.swept:
        log(f"removed {session.swept} unfinished or retired build(s) of collection {name!r} left by earlier runs")
    start = time.perf_counter()
    encode_s = upsert_s = 0.0
    done = 0
    lost_adds = 0
    adds = set(work.add)
    todo = _as_ids(work.add + work.update)
    try:
        if work.remove:
            build.delete(work.remove)
        bars = dict(disable=not progress, unit="img", dynamic_ncols=True, leave=False)
        with tqdm(total=len(todo), desc=f"ingest {name}", **bars) as bar:
            for lo in range(0, len(todo), batch_size):
                chunk = todo[lo : lo + batch_size]
                images, payloads = source.load(chunk)
                if len(payloads) < len(chunk):  # unreadable files, left out (counted in the report)
                    ok = set(_ids_of(source, chunk, payloads))
                    lost_adds += sum(1 for c in chunk if c not in ok and c in adds)
                    chunk = np.asarray([c for c in chunk if c in ok], dtype=chunk.dtype)
                t0 = time.perf_counter()
                codes = encoder.encode(images) if len(images) else np.zeros((0, encoder.dim), np.float32)
                t1 = time.perf_counter()
                if len(chunk):
                    build.upsert(chunk, codes, payloads)
                t2 = time.perf_counter()
                encode_s += t1 - t0
                upsert_s += t2 - t1
                done += len(chunk)
                bar.update(len(chunk))
        total_after -= lost_adds  # an unreadable new file is not there; an unreadable changed one keeps its old point
        count = build.count()
        if count != total_after:
            raise StoreError(f"after writing, the new build of {name!r} holds {count} points, expected {total_after}; "
                             f"nothing was changed; run {backend.hints.build} again")
        meta = meta.but(extra={**meta.extra, "calibration": calibrate(build, encoder, source)})
        t3 = time.perf_counter()
        session.publish(build, meta)
        index_s = time.perf_counter() - t3
    except KeyboardInterrupt:
        session.abort(build)
        kept = f"the collection still holds its {current.points} points" if current is not None else "no collection was made"
        again = backend.hints.rebuild if work.rebuild and current is not None else backend.hints.build  # a rebuild stays one
        raise Interrupted(f"interrupted after encoding {done} of {len(todo)} points; nothing was changed: {kept}; "
                          f"run {again} again to finish") from None
    except BaseException:
        session.abort(build)
        raise
    seconds = time.perf_counter() - start
    failed = getattr(source, "failed", [])
    if failed:
        log(f"skipped {len(failed)} file{'s' * (len(failed) != 1)} that could not be read (--strict stops at the first "
            f"instead), e.g. {failed[0]}")
    return IngestReport(name, backend.location_of(name),
                        count, added=len(work.add) - lost_adds, updated=len(work.update), removed=len(work.remove),
                        unchanged=work.unchanged, seconds=seconds, encode_seconds=encode_s, upsert_seconds=upsert_s,
                        index_seconds=index_s)
