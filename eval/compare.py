"""`cbir eval compare`: the batch evaluation for several encoders, each in its own collection, one table."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cbir import datasets, encoders
from cbir.errors import CbirError
from cbir.settings import Settings
from cbir.errors import CollectionIncompatible
from cbir.store import reading
from eval.runner import evaluate

TIMED_QUERIES = 200


@dataclass(frozen=True)
class CompareRow:
    """One encoder's scores and costs."""

    encoder: str
    model_id: str
    collection: str
    dim: int
    lrap: float
    p_at_10: float
    map_at_100: float
    encode_us_per_image: float  # batched, as ingest and eval encode
    query_p50_ms: float  # one image: encode + top-10 query, warm
    vector_bytes: int
    n_queries: int
    database_size: int
    ingested_now: bool


def collection_settings(settings: Settings, name: str, limit: int | None) -> Settings:
    """The encoder's own collection; a partial one (--limit) has a name of its own and never replaces a full one."""
    s = settings.but(encoder=name)
    n_train = datasets.SPLIT_SIZES["train"]
    if limit is not None and limit < n_train:
        s = s.but(collection=f"{s.collection_name}-first{limit}")
    return s


def ensure_ingested(settings: Settings, encoder, limit: int | None, progress: bool) -> bool:
    """Bring the encoder's collection up to date (only what is missing is encoded); True if anything was written."""
    from cbir.sources import source_for
    from ingest.pipeline import ingest

    source = source_for(settings, "train", first=limit)
    try:
        report = ingest(settings, encoder, source, progress=progress)
    except CollectionIncompatible:
        # Built by an older model of this encoder: rebuild it (beside the old one, switched when complete).
        report = ingest(settings, encoder, source, recreate=True, progress=progress)
    return report.points > 0


def _timings(settings: Settings, encoder, images: np.ndarray) -> tuple[float, float]:
    """(µs per image when encoding in batches, p50 ms of one image encoded and queried for its top 10)."""
    start = time.perf_counter()
    encoder.encode(images)
    per_image = (time.perf_counter() - start) / len(images) * 1e6
    times = []
    with reading(settings, encoder.expected()) as reader:
        for image in images[: TIMED_QUERIES + 1]:
            t0 = time.perf_counter()
            reader.query_batch(encoder.encode(image[None]), 10)
            times.append(time.perf_counter() - t0)
    return per_image, float(np.median(times[1:])) * 1e3  # the first query pays for warming up


def compare(settings: Settings, names: list[str], n_queries: int | None, seed: int = 0, limit: int | None = None,
            progress: bool = True, log=lambda line: None, queries_dir: Path | None = None,
            holdout: float | None = None) -> list[CompareRow]:
    """Ingest (when needed) and evaluate each named encoder: on settings.dataset, or on a folder collection's folder."""
    if settings.model is not None:
        raise CbirError("compare picks each encoder's model itself; drop --model / CBIR_MODEL")
    names = [encoders.spec(n).name for n in names]
    if not names:
        raise CbirError("no encoders to compare; pass --encoders NAME,NAME")
    if settings.collection is not None:
        return compare_on_folder(settings, names, seed, progress, log, queries_dir, holdout)
    if queries_dir is not None or holdout is not None:
        raise CbirError("--queries-dir and --holdout compare encoders on a folder collection: add --collection NAME")
    from cbir.sources import queries_from

    test = datasets.load(queries_from(settings.dataset), "test", settings.data_dir, settings.cache_dir)
    rows = []
    for name in names:
        s = collection_settings(settings, name, limit)
        encoder = encoders.load_encoder(s)
        ingested = ensure_ingested(s, encoder, limit, progress)
        result = evaluate(s, encoder, n_queries, seed, progress=progress)
        rows.append(_row(name, encoder, s, result, _timings(s, encoder, test.images[:1000]), ingested, log))
    return rows


def compare_on_folder(settings: Settings, names: list[str], seed: int, progress: bool, log,
                      queries_dir: Path | None, holdout: float | None) -> list[CompareRow]:
    """Each encoder's own collection of the folder that --collection was built from, NAME-ENCODER, with the
    encoder the folder trained (else the packaged MNIST one); scored with --queries-dir or --holdout (default 0.2)."""
    from cbir.encoder import Encoder
    from cbir.encoders import FOLDER, resolve_model_path
    from cbir.sources.folder import FolderSource
    from cbir.store import open_backend
    from eval.queries import from_folder
    from ingest.pipeline import ingest

    backend = open_backend(settings)
    try:
        meta = backend.meta(settings.collection_name)
    finally:
        backend.close()
    if meta is None or meta.source.get("kind") != "folder":
        raise CbirError(f"eval compare --collection needs a collection built from a folder (`ingest run --images DIR "
                        f"--collection NAME`); {settings.collection_name!r} is {'missing' if meta is None else 'not one'}")
    root = meta.source["root"]
    queries = from_folder(Path(queries_dir), log=log) if queries_dir is not None else None
    rows = []
    for name in names:
        model = resolve_model_path(settings.but(dataset=FOLDER, encoder=name, model=None))
        s = settings.but(dataset=FOLDER, encoder=name, model=model, images=root,
                         collection=f"{settings.collection_name}-{name}")
        encoder = Encoder(model, name=name)
        source = FolderSource(root, s.collection_name)
        try:
            report = ingest(s, encoder, source, progress=progress)
        except CollectionIncompatible:
            report = ingest(s, encoder, source, recreate=True, progress=progress)
        result = evaluate(s, encoder, seed=seed, progress=progress, queries=queries,
                          holdout=None if queries is not None else (holdout or 0.2))
        sample, _ = source.load(source.point_ids()[:1000])
        rows.append(_row(name, encoder, s, result, _timings(s, encoder, sample), report.points > 0, log))
    return rows


def _row(name: str, encoder, settings: Settings, result, timings, ingested: bool, log) -> CompareRow:
    summary = result.summary()
    per_image, p50 = timings
    log(f"{name}: LRAP {summary['lrap']:.4f}  P@10 {summary['p@10']:.4f}  mAP@100 {summary['map@100']:.4f}")
    return CompareRow(name, encoder.model_id, settings.collection_name, encoder.dim, summary["lrap"], summary["p@10"],
                      summary["map@100"], round(per_image, 1), round(p50, 2), encoder.dim * 4,
                      summary["n_queries"], summary["database_size"], ingested)


def markdown(rows: list[CompareRow], dataset: str) -> str:
    """The comparison as one Markdown table."""
    lines = [
        f"Encoders on {dataset}: {rows[0].n_queries} queries against {rows[0].database_size} indexed images, "
        "full ranking, score = -Euclidean distance." if rows else f"No encoders compared on {dataset}.",
        "",
        "| encoder | LRAP | P@10 | mAP@100 | encode µs/image | query p50 ms | vector |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.encoder} | {r.lrap:.4f} | {r.p_at_10:.4f} | {r.map_at_100:.4f} | {r.encode_us_per_image:.1f} | "
        f"{r.query_p50_ms:.2f} | {r.dim} x float32 = {r.vector_bytes} B |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def write(rows: list[CompareRow], dataset: str, out_dir: Path) -> tuple[Path, Path]:
    """compare.json and compare.md under out_dir."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        js, md = out_dir / "compare.json", out_dir / "compare.md"
        js.write_text(json.dumps({"dataset": dataset, "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
        md.write_text(markdown(rows, dataset))
    except OSError as exc:
        raise CbirError(f"cannot write the comparison to {out_dir}: {exc.strerror or exc}") from exc
    return js, md
