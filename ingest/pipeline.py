"""`ingest run`: read a data set split, encode it in batches, upsert the codes into Qdrant."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from cbir import __version__, datasets, ids
from cbir.errors import CbirError, Interrupted
from cbir.encoder import Encoder
from cbir.settings import Settings
from cbir.store import Store, check_compatible, opened


@dataclass(frozen=True)
class IngestReport:
    """What an ingest did."""

    points: int
    total: int
    seconds: float
    location: str
    collection: str
    encode_seconds: float = 0.0
    upsert_seconds: float = 0.0

    def summary(self) -> str:
        rate = self.points / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"ingested {self.points} points in {self.seconds:.1f} s ({rate:.0f} points/s; "
            f"encode {self.encode_seconds:.1f} s, upsert {self.upsert_seconds:.1f} s); "
            f"collection {self.collection!r} now holds {self.total} points in {self.location}"
        )


def collection_metadata(encoder: Encoder, dataset: str) -> dict:
    """What a collection records about how its vectors were made."""
    return {"model_id": encoder.model_id, "model_file": encoder.path.name, "dataset": dataset, "cbir_version": __version__}


def prepare(store: Store, encoder: Encoder, dataset: str, collection: str, recreate: bool) -> tuple[int, dict]:
    """Make the collection ready for this model and mark it incomplete until the ingest finishes.

    Returns how many points it already holds and its metadata.
    """
    meta = store.metadata()
    if meta is not None and recreate:
        store.drop()
        meta = None
    if meta is None:
        meta = {**collection_metadata(encoder, dataset), "complete": False}
        store.create(encoder.dim, meta)
        return 0, {**meta, "dim": encoder.dim}
    check_compatible(meta, encoder.model_id, encoder.dim, collection)
    if meta.get("dataset") != dataset:
        raise CbirError(
            f"collection {collection!r} holds {meta.get('dataset')}, not {dataset}; "
            "use --collection NAME for another data set"
        )
    meta = {**meta, "complete": False}
    store.set_metadata(meta)  # before the first write, so a killed run leaves a visible mark
    return store.count(), meta


def ingest(
    settings: Settings,
    encoder: Encoder,
    limit: int | None = None,
    batch_size: int = 1000,
    recreate: bool = False,
    progress: bool = True,
    store: Store | None = None,
) -> IngestReport:
    """Encode the training split and upsert it with stable ids; verify the count at the end."""
    split = datasets.load(settings.dataset, "train", settings.data_dir, settings.cache_dir)
    n = min(limit or len(split), len(split))
    with opened(settings, store) as store:
        before, meta = prepare(store, encoder, settings.dataset, settings.collection_name, recreate)
        start = time.perf_counter()
        encode_s = upsert_s = 0.0
        done = 0
        bars = dict(disable=not progress, unit="img", dynamic_ncols=True)
        try:
            with tqdm(total=n, desc="encode", position=0, **bars) as enc_bar, tqdm(total=n, desc="upsert", position=1, **bars) as up_bar:
                for lo in range(0, n, batch_size):
                    hi = min(lo + batch_size, n)
                    t0 = time.perf_counter()
                    codes = encoder.encode(split.images[lo:hi])
                    t1 = time.perf_counter()
                    encode_s += t1 - t0
                    enc_bar.update(hi - lo)
                    index = np.arange(lo, hi)
                    payloads = [
                        {"label": int(split.labels[i]), "split": "train", "index": int(i), "dataset": settings.dataset}
                        for i in index
                    ]
                    store.upsert(ids.point_ids(settings.dataset, "train", index), codes, payloads)
                    upsert_s += time.perf_counter() - t1
                    up_bar.update(hi - lo)
                    done = hi
        except KeyboardInterrupt:
            store.flush()
            raise Interrupted(
                f"interrupted after {done} of {n} points were written; the store is intact and marked "
                "incomplete: run `ingest run` again to finish"
            ) from None
        t2 = time.perf_counter()
        store.flush()
        upsert_s += time.perf_counter() - t2
        seconds = time.perf_counter() - start
        total = store.count()
        expected = max(before, n)  # stable ids: a re-run overwrites, it never adds
        if total != expected:
            raise CbirError(f"after ingest the collection holds {total} points, expected {expected}; re-run `ingest run`")
        store.set_metadata({**meta, "complete": True})
        return IngestReport(n, total, seconds, store.location, settings.collection_name, encode_s, upsert_s)
