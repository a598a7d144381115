"""Collection policy: the typed metadata record every collection carries, and the one check that
ingest, search, eval and compare all make before they trust a collection.

A collection records which model made its vectors (the .keras file's id and the SHA-256 of the
.tflite that actually encodes), what it was built from, and how many points it holds; opening
checks all of it, because a wrong answer is worse than an error.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field, fields, replace

from cbir.errors import CollectionDamaged, CollectionIncompatible, CollectionMissing
from cbir.names import check_collection_name

_REQUIRED = ("name", "dim", "model_id", "encoder", "encoder_sha256", "dataset", "points")
SCHEMA = 2  # 1: one shard per collection folder (cbir 0.1); 2: generations switched atomically


@dataclass(frozen=True)
class CollectionMeta:
    """What a collection knows about itself (stored as JSON beside its shard, or as server metadata)."""

    name: str
    dim: int
    model_id: str
    encoder: str  # the registered encoder's name, or the model file's stem for a --model of unknown origin
    encoder_sha256: str  # of the .tflite file that encodes: the bytes that really make the vectors
    dataset: str
    points: int  # how many points the collection holds when complete; opening checks it
    complete: bool = False
    model_file: str = ""
    source: dict = field(default_factory=dict)  # what it was built from: split, first N images, checksums
    generation: str = ""
    created: str = ""
    cbir_version: str = ""
    extra: dict = field(default_factory=dict)  # e.g. the match-signal calibration
    schema: int = SCHEMA

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw, where: str) -> "CollectionMeta":
        """Parse and check a stored record; anything malformed is a CollectionDamaged naming `where`."""
        if not isinstance(raw, dict):
            raise CollectionDamaged(f"{where} holds {type(raw).__name__ if raw is not None else 'null'}, "
                                    "not a collection record")
        schema = raw.get("schema", 1)
        if schema != SCHEMA:
            raise CollectionIncompatible(f"{where} is a collection of store schema {schema!r}, this cbir reads schema {SCHEMA}")
        kinds = {"name": str, "dim": int, "model_id": str, "encoder": str, "encoder_sha256": str, "dataset": str,
                 "points": int, "complete": bool, "model_file": str, "source": dict, "generation": str, "created": str,
                 "cbir_version": str, "extra": dict, "schema": int}
        values = {}
        for f in fields(cls):
            if f.name not in raw:
                if f.name in _REQUIRED:
                    raise CollectionDamaged(f"{where} lacks {f.name!r}")
                continue
            value = raw[f.name]
            want = kinds[f.name]
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise CollectionDamaged(f"{where}: {f.name!r} is {value!r}, not {want.__name__}")
            values[f.name] = value
        meta = cls(**values)
        try:
            check_collection_name(meta.name, source=where)
        except Exception as exc:
            raise CollectionDamaged(str(exc)) from exc
        if meta.dim < 1 or meta.points < 0:
            raise CollectionDamaged(f"{where}: dim {meta.dim} / points {meta.points} cannot be right")
        return meta

    def but(self, **changes) -> "CollectionMeta":
        return replace(self, **changes)

    @property
    def first(self) -> int | None:
        """A partial collection's size: it holds the first N items of its source (None: all of them)."""
        first = self.source.get("first")
        return int(first) if isinstance(first, int) else None

    def describe(self) -> str:
        """'60000 points of mnist (dae-umap, model 0b50...)'."""
        part = f", the first {self.first} training images only" if self.first is not None else ""
        return f"{self.points} points of {self.dataset}{part} ({self.encoder} encoder, model {self.model_id})"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Expected:
    """What the caller's encoder makes: the collection must have been built by exactly it."""

    model_id: str
    encoder_sha256: str
    dim: int
    encoder: str
    dataset: str | None = None  # None: any data set will do (search); ingest and eval need theirs


def check_compatible(meta: CollectionMeta | None, expected: Expected, name: str, rebuild: str, build: str) -> CollectionMeta:
    """The one check before a collection is read or added to; returns meta when it passes.

    rebuild / build: the commands to advise (with the user's flags) for a collection to rebuild / to build.
    """
    if meta is None:
        raise CollectionMissing(f"collection {name!r} does not exist yet; run {build} first")
    if not meta.complete:
        raise CollectionDamaged(f"collection {name!r} is marked incomplete, which a published collection never is; "
                                f"rebuild it with {rebuild}")
    if meta.dim != expected.dim:
        raise CollectionIncompatible(
            f"collection {name!r} holds {meta.dim}-d vectors ({meta.encoder} encoder) but the model makes "
            f"{expected.dim}-d ones ({expected.encoder}); rebuild it with {rebuild} or use the model that built it"
        )
    if meta.model_id != expected.model_id:
        from pathlib import Path

        kept = meta.model_file and Path(meta.model_file).is_file()
        other = f"pass `--model {meta.model_file}` (the model that built it)" if kept else "pass --model with the model that built it"
        raise CollectionIncompatible(
            f"collection {name!r} was built by model {meta.model_id} ({meta.encoder}), not the current model "
            f"{expected.model_id} ({expected.encoder}); rebuild it with {rebuild}, or {other}"
        )
    if meta.encoder_sha256 != expected.encoder_sha256:
        raise CollectionIncompatible(
            f"collection {name!r} was encoded by a .tflite file with SHA-256 {meta.encoder_sha256[:16]}..., but model "
            f"{expected.model_id}'s .tflite now has {expected.encoder_sha256[:16]}... (re-exported or replaced); "
            f"rebuild it with {rebuild}"
        )
    if expected.dataset is not None and meta.dataset != expected.dataset:
        raise CollectionIncompatible(
            f"collection {name!r} holds {meta.dataset}, not {expected.dataset}; use --dataset {meta.dataset} "
            "or --collection NAME for another collection"
        )
    return meta


PROBE_POINTS = 16  # stored points a collection is checked by, each time it is opened


def remember_sample(sample: dict, ids) -> None:
    """Keep a few ids of the points written, spread over the whole ingest (every 997th, up to the limit)."""
    for i in list(ids)[::997]:
        if len(sample) < PROBE_POINTS:
            sample[i.item() if hasattr(i, "item") else i] = True


def _key(pid) -> str:
    return str(pid.item() if hasattr(pid, "item") else pid)


def make_probe(build, sample: dict) -> dict:
    """{id: vector} of a few points as written: opening checks the store still holds exactly these."""
    ids = list(sample)[:PROBE_POINTS]
    if len(ids) < PROBE_POINTS:  # few points written (a small update): take some of the others too
        others = [i for i in build.points(with_vectors=False, fields=()).ids[: 2 * PROBE_POINTS].tolist() if i not in sample]
        ids += others[: PROBE_POINTS - len(ids)]
    if not ids:
        return {}
    found = build.retrieve(ids, with_vectors=True, fields=())
    return {_key(pid): vec.tolist() for pid, vec in zip(found.ids, found.vectors)}


def check_probe(reader, meta: CollectionMeta, damaged) -> None:
    """The probe points are there with the very vectors written; damaged(what) builds the error otherwise."""
    import numpy as np

    probe = meta.extra.get("probe") or {}
    if not probe:
        return
    ids = [int(k) if k.isdigit() else k for k in probe]
    found = reader.retrieve(ids, with_vectors=True, fields=())
    got = {_key(pid): vec for pid, vec in zip(found.ids, found.vectors if found.vectors is not None else [])}
    for key, vector in probe.items():
        if key not in got:
            raise damaged(f"point {key} is missing")
        if not np.array_equal(np.asarray(vector, dtype=np.float32), np.asarray(got[key], dtype=np.float32)):
            raise damaged(f"point {key}'s vector is not what was written")


@dataclass(frozen=True)
class Hints:
    """The commands messages advise, with the user's own flags (see cbir.advice)."""

    build: str = "`ingest run`"
    rebuild: str = "`ingest run --recreate`"
    # meta -> the hints for that very collection (its --limit, its --size), once its record is read
    refine: object = field(default=None, compare=False, repr=False)

    def for_meta(self, meta: "CollectionMeta | None") -> "Hints":
        return self.refine(meta) if self.refine is not None and meta is not None else self
