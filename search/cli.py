"""`search IMAGE...`: the most similar images in the collection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cbir import options as opt

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(cls=opt.OneLineCommand)
@opt.cli_errors
def search(
    images: Annotated[list[Path], typer.Argument(help="Query images (PNG, JPEG, ...) or folders of them.", show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many results per query.")] = 10,
    label: Annotated[Optional[int], typer.Option(help="Only results with this label (0-9).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per query instead of a table.")] = False,
    grid: Annotated[Optional[Path], typer.Option(help="Also write a picture of queries and results (PNG).")] = None,
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
    """Find the images in the collection most similar to each query image (Euclidean distance)."""
    from search import render
    from search.query import search_files

    settings = opt.settings(home=home, data_dir=data_dir, dataset=dataset, encoder=encoder, model=model, qdrant_url=qdrant_url,
                            qdrant_api_key=qdrant_api_key, collection=collection, wait=wait)
    if grid is not None:
        from search.pictures import check_grid_size
        from search.query import expand

        check_grid_size(len(expand(images)), top_k)
    results = search_files(settings, images, top_k=top_k, label=label)
    for i, res in enumerate(results):
        if as_json:
            typer.echo(render.json_line(res))
        else:
            typer.echo(("\n" if i else "") + render.table(res))
    if grid is not None:
        from cbir.render import save_png
        from search.pictures import grid_image  # PIL drawing and data-set reading: only when asked

        path = save_png(grid_image(settings, results), grid)
        typer.echo(f"wrote {path}", err=as_json)


def main() -> None:
    """Console-script entry point."""
    app()
