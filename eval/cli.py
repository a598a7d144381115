"""`cbir eval`: batch evaluation of retrieval quality."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from cbir import options as opt
from cbir.errors import CbirError

app = typer.Typer(help="Evaluate retrieval on the test split.", no_args_is_help=True, add_completion=False,
                  cls=opt.OneLineGroup, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.callback()
def _group(version: opt.Version = None) -> None:
    """Evaluate retrieval on the test split."""


def write_pictures(settings, result, out: Path, others=None, progress=lambda line: None) -> dict[str, Path]:
    """The report's PNGs under out."""
    from eval import figures

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CbirError(f"cannot write the report to {out}: {exc.strerror or exc}") from exc
    from cbir.noise import quiet_tensorflow

    with quiet_tensorflow():  # umap imports TensorFlow (for its parametric variant), whose start-up chatter is noise here
        return figures.write_all(result, out, settings, others, progress)


COMPARED = ("dae", "pixels")  # beside the report's encoder in its LRAP-vs-size chart, as the tutorial's figure compares


def other_curves(settings, result, seed: int, log) -> dict[str, dict[int, float]]:
    """LRAP against database size for the seed DAE and raw pixels, from their own collections of the same data set
    (same queries, first 1000), where those exist and are up to date; said in one line where they do not."""
    from cbir.encoders import load_encoder
    from cbir.errors import CbirError as Error
    from eval.runner import evaluate

    if result.queries.exclude is not None or settings.dataset == "folder":
        return {}
    curves, missing = {}, []
    for name in COMPARED:
        if name == result.encoder:
            continue
        other = settings.but(encoder=name, collection=None, model=None)
        try:
            report = evaluate(other, load_encoder(other), min(len(result.lrap), 1000), seed, progress=False,
                              queries=None)
            curves[name] = report.size_curve
        except Error:
            missing.append(other.collection_name)
    if missing:
        log(f"the LRAP-vs-size chart leaves out {', '.join(missing)}: not built for this model "
            "(`cbir eval compare` builds every encoder's collection)")
    return curves


def parse_queries(value: str) -> int | None:
    """'all' -> None (every test image), else a positive count."""
    if value.strip().lower() == "all":
        return None
    try:
        number = int(value)
    except ValueError:
        raise CbirError(f"--queries takes a number or 'all' (got {value!r})") from None
    if number < 1:
        raise CbirError(f"--queries must be at least 1 (got {number})")
    return number


@app.command("run")
@opt.cli_errors
def run_cmd(
    queries: Annotated[str, typer.Option(help="How many test images to query with, or 'all'.")] = "1000",
    seed: Annotated[int, typer.Option(min=0, help="Seed of the query sample.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Write eval.json, eval.md and the report's PNG pictures into this folder.")] = None,
    queries_dir: Annotated[Optional[Path], typer.Option("--queries-dir", help="Query with the images of a labelled folder (label = first subfolder) instead of a test split.", show_default=False)] = None,
    holdout: Annotated[Optional[float], typer.Option(help="Query with this fraction of the collection's own points (stratified, seeded), left out of the ranking.", show_default=False)] = None,
    quiet: opt.Quiet = False,
    home: opt.Home = None,
    data_dir: opt.DataDir = None,
    dataset: opt.Dataset = None,
    encoder: opt.Encoder = None,
    model: opt.Model = None,
    qdrant_url: opt.QdrantUrl = None,
    qdrant_api_key: opt.QdrantApiKey = None,
    collection: opt.Collection = None,
    wait: opt.Wait = None,
) -> None:
    """Full-ranking LRAP, P@10, mAP@100 and per-class LRAP of queries against the collection.

    Queries: the data set's test images (--queries N or all), a labelled folder (--queries-dir), or a held-out
    fraction of the collection itself (--holdout 0.2).
    """
    from cbir.encoders import with_encoder
    from eval import report
    from eval.queries import from_folder
    from eval.runner import evaluate

    settings = opt.settings(home=home, data_dir=data_dir, dataset=dataset, encoder=encoder, model=model, qdrant_url=qdrant_url,
                            qdrant_api_key=qdrant_api_key, collection=collection, wait=wait)
    if queries_dir is not None and holdout is not None:
        raise CbirError("give --queries-dir or --holdout, not both")
    started = time.perf_counter()
    n = parse_queries(queries)
    settings, enc = with_encoder(settings)
    say = (lambda line: typer.echo(line, err=True)) if opt.progress_enabled(quiet) else (lambda line: None)
    asked = from_folder(queries_dir, log=lambda line: typer.echo(line, err=True)) if queries_dir is not None else None
    result = evaluate(settings, enc, n, seed, progress=opt.progress_enabled(quiet), queries=asked, holdout=holdout)
    summary = result.summary()
    timing = f"ranking {summary['seconds']} s"
    if out is not None:
        say("the other encoders' curves for the LRAP-vs-size chart ...")
        others = other_curves(settings, result, seed, lambda line: typer.echo(line, err=True))
        drawn = time.perf_counter()
        pictures = write_pictures(settings, result, out, others, say)
        timing += f", pictures {time.perf_counter() - drawn:.1f} s"
    # What the user waited for: loading, ranking, pictures, all of it.
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    if out is not None:
        js, md = report.write(summary, out, pictures)
        typer.echo(f"wrote {js}, {md} and pictures", err=True)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(
            f"LRAP {summary['lrap']:.4f}  P@10 {summary['p@10']:.4f}  mAP@100 {summary['map@100']:.4f}  "
            f"({summary['n_queries']} queries vs {summary['database_size']} points, {summary['total_seconds']} s in all: {timing}"
            + (f"; {summary['n_skipped']} queries left out: their class has no point in the collection" if summary["n_skipped"] else "")
            + ")"
        )


@app.command("compare")
@opt.cli_errors
def compare_cmd(
    encoders: Annotated[Optional[str], typer.Option(help=f"Comma-separated encoder names (default: every registered one: {', '.join(opt.ENCODER_NAMES)}).", show_default=False)] = None,
    queries: Annotated[str, typer.Option(help="How many test images to query with, or 'all'.")] = "1000",
    seed: Annotated[int, typer.Option(min=0, help="Seed of the query sample.")] = 0,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Index only the first N training images (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Write compare.json and compare.md into this folder.")] = None,
    queries_dir: Annotated[Optional[Path], typer.Option("--queries-dir", help="With --collection: score with a labelled folder of queries.", show_default=False)] = None,
    holdout: Annotated[Optional[float], typer.Option(help="With --collection: score with this held-out fraction of the folder (default 0.2).", show_default=False)] = None,
    home: opt.Home = None,
    data_dir: opt.DataDir = None,
    dataset: opt.Dataset = None,
    qdrant_url: opt.QdrantUrl = None,
    qdrant_api_key: opt.QdrantApiKey = None,
    collection: Annotated[Optional[str], typer.Option("--collection", help="A folder collection: compare the encoders on its folder (each in NAME-ENCODER).", show_default=False)] = None,
    quiet: opt.Quiet = False,
    wait: opt.Wait = None,
) -> None:
    """Ingest each encoder into its own collection (when needed), evaluate it, and print one table.

    On a data set (default): cbir-DATASET-ENCODER collections, test-split queries. On a folder collection
    (--collection NAME): the folder again, in NAME-ENCODER collections, with the encoders trained on it.
    """
    from dataclasses import asdict

    from eval import compare

    settings = opt.settings(home=home, data_dir=data_dir, dataset=dataset, qdrant_url=qdrant_url,
                            qdrant_api_key=qdrant_api_key, wait=wait, collection=collection)
    names = [n.strip() for n in encoders.split(",") if n.strip()] if encoders is not None else list(opt.ENCODER_NAMES)
    rows = compare.compare(settings, names, parse_queries(queries), seed, limit, progress=opt.progress_enabled(quiet),
                           log=(lambda line: typer.echo(line, err=True)) if not quiet else (lambda line: None), queries_dir=queries_dir, holdout=holdout)
    title = settings.collection_name if collection else settings.dataset
    if out is not None:
        js, md = compare.write(rows, title, out)
        typer.echo(f"wrote {js} and {md}", err=True)
    typer.echo(json.dumps([asdict(r) for r in rows]) if as_json else compare.markdown(rows, title).rstrip())
