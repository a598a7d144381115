"""`cbir eval`: batch evaluation of retrieval quality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from cbir import options as opt
from cbir.errors import CbirError

app = typer.Typer(help="Evaluate retrieval on the test split.", no_args_is_help=True, add_completion=False)


@app.callback()
def _group() -> None:
    """Evaluate retrieval on the test split."""


def parse_queries(value: str) -> int | None:
    """'all' -> None (every test image), else a positive count."""
    if value.strip().lower() == "all":
        return None
    try:
        return int(value)  # evaluate() refuses numbers below 1
    except ValueError:
        raise CbirError(f"--queries takes a number or 'all' (got {value!r})") from None


@app.command("run")
@opt.cli_errors
def run_cmd(
    queries: Annotated[str, typer.Option(help="How many test images to query with, or 'all'.")] = "1000",
    seed: Annotated[int, typer.Option(help="Seed of the query sample.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Write eval.json and eval.md into this folder.")] = None,
    home: opt.Home = None,
    data_dir: opt.DataDir = None,
    dataset: opt.Dataset = None,
    model: opt.Model = None,
    qdrant_url: opt.QdrantUrl = None,
    qdrant_api_key: opt.QdrantApiKey = None,
    collection: opt.Collection = None,
) -> None:
    """Full-ranking LRAP, P@10, mAP@100 and per-class LRAP of test queries against the collection."""
    from cbir.encoder import load_encoder
    from eval import report
    from eval.runner import evaluate

    settings = opt.settings(home=home, data_dir=data_dir, dataset=dataset, model=model, qdrant_url=qdrant_url,
                            qdrant_api_key=qdrant_api_key, collection=collection)
    n = parse_queries(queries)
    result = evaluate(settings, load_encoder(settings), n, seed, progress=opt.progress_enabled())
    summary = result.summary()
    if out is not None:
        js, md = report.write(summary, out)
        typer.echo(f"wrote {js} and {md}", err=True)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(
            f"LRAP {summary['lrap']:.4f}  P@10 {summary['p@10']:.4f}  mAP@100 {summary['map@100']:.4f}  "
            f"({summary['n_queries']} queries vs {summary['database_size']} points, {summary['seconds']} s)"
        )
