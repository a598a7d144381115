"""`search IMAGE...`: the most similar images in the collection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cbir import options as opt
from cbir.errors import CbirError

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(cls=opt.OneLineCommand)
@opt.cli_errors
def search(
    images: Annotated[Optional[list[Path]], typer.Argument(help="Query images (PNG, JPEG, ...) or folders of them.", show_default=False)] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many results per query.")] = 10,
    label: Annotated[Optional[str], typer.Option(help="Only results with this label (a digit for MNIST; a subfolder's name for a folder).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per query instead of a table.")] = False,
    grid: Annotated[Optional[Path], typer.Option(help="Also write a picture of queries and results (PNG).")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Search the images in subfolders of the folders given too.")] = False,
    point_ids: Annotated[Optional[list[str]], typer.Option("--id", help="Use a stored point as the query (repeatable): its nearest neighbours, not itself.", show_default=False)] = None,
    quiet: opt.Quiet = False,
    version: opt.Version = None,
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
    """Find the images in the collection most similar to each query image (Euclidean distance).

    Every file is tried: one that fails gets a line on stderr (and, with --json, {"query", "error"} in its
    place); the exit code is 1 when some failed, 2 when none could be searched.
    """
    from search import render
    from search.inputs import collect
    from search.query import check_request

    settings = opt.settings(home=home, data_dir=data_dir, dataset=dataset, encoder=encoder, model=model, qdrant_url=qdrant_url,
                            qdrant_api_key=qdrant_api_key, collection=collection, wait=wait)
    check_request(top_k)
    if images and point_ids:
        raise CbirError("give query images or --id, not both")
    if point_ids:
        from search.query import parse_point_id, search_ids

        n_queries = len(point_ids)
        results = iter(search_ids(settings, [parse_point_id(p) for p in point_ids], top_k, label))
    else:
        found = collect(images or [], recursive)
        if not found.files:
            from search.query import no_images_message

            raise CbirError(no_images_message(images or [], found))
        if found.skipped():
            typer.echo(found.skipped(), err=True)
        n_queries = len(found.files)
        results = None
    if grid is not None:
        from search.pictures import check_grid_size

        check_grid_size(n_queries, top_k)
    if results is None:
        from search.query import iter_search

        progress = None
        if opt.progress_enabled(quiet) and n_queries >= 512:  # a bar only where one is worth its import (20 ms)
            from tqdm import tqdm

            progress = tqdm(total=n_queries, desc="search", unit="img", leave=False).update
        results = iter_search(settings, found.files, top_k, label, progress=progress)
    failed, kept = 0, []
    for i, res in enumerate(results):
        if res.error is not None:
            failed += 1
            typer.echo(f"error: {opt.one_line(res.error)}", err=True)
            if as_json:
                typer.echo(render.json_line(res))
        elif as_json:
            typer.echo(render.json_line(res))
        else:
            typer.echo(("\n" if i else "") + render.table(res))
        if grid is not None:
            kept.append(res)
    if results is not None and hasattr(results, "close"):
        results.close()
    if grid is not None:
        from cbir.render import save_png
        from search.pictures import grid_image  # PIL drawing and data-set reading: only when asked

        path = save_png(grid_image(settings, kept), grid)
        typer.echo(f"wrote {path}", err=as_json)
    if failed:
        raise typer.Exit(2 if failed == n_queries else 1)


def main() -> None:
    """Console-script entry point."""
    app()
