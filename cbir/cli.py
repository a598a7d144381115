"""`cbir`: the umbrella command, joining the ingest, search, eval and serve apps, and managing the
collections and models (`cbir collections ...`, `cbir models ...`)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from cbir import options as opt
from eval.cli import app as eval_app
from ingest.cli import app as ingest_app
from search.cli import search
from serve.cli import serve

app = typer.Typer(help="Content-based image retrieval: a denoising autoencoder plus Qdrant.", no_args_is_help=True,
                  add_completion=False, cls=opt.OneLineGroup, rich_markup_mode=None, pretty_exceptions_enable=False)
collections_app = typer.Typer(help="The collections in the store: list, info, drop.", no_args_is_help=True,
                              cls=opt.OneLineGroup, rich_markup_mode=None, pretty_exceptions_enable=False)
models_app = typer.Typer(help="The encoders' models, packaged and trained: list, remove.", no_args_is_help=True,
                         cls=opt.OneLineGroup, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.callback()
def _main(version: opt.Version = None) -> None:
    """Content-based image retrieval: a denoising autoencoder plus Qdrant."""


app.add_typer(ingest_app, name="ingest")
app.command("search")(search)
app.add_typer(eval_app, name="eval")
app.command("serve")(serve)
app.add_typer(collections_app, name="collections")
app.add_typer(models_app, name="models")

AsJson = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


def _row(info) -> dict:
    m = info.meta
    return {"name": info.name, "points": m.points if m else None, "encoder": m.encoder if m else None,
            "dataset": m.dataset if m else None, "model_id": m.model_id if m else None,
            "complete": bool(m and m.complete), "size_bytes": info.size_bytes, "problem": info.problem,
            "source": m.source if m else None, "created": m.created if m else None}


@collections_app.command("list")
@opt.cli_errors
def collections_list(as_json: AsJson = False, home: opt.Home = None, qdrant_url: opt.QdrantUrl = None,
                     qdrant_api_key: opt.QdrantApiKey = None) -> None:
    """Every collection: name, points, encoder, data set, model id, complete or not, size on disk."""
    from cbir import catalog

    rows = [_row(info) for info in catalog.collections(opt.settings(home=home, qdrant_url=qdrant_url, qdrant_api_key=qdrant_api_key))]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no collections yet; build one with `ingest run`")
        return
    typer.echo(f"{'name':<32} {'points':>9}  {'encoder':<9} {'dataset':<14} {'model':<16}  {'complete':<8} {'size':>10}")
    for r in rows:
        points = "-" if r["points"] is None else r["points"]
        typer.echo(f"{r['name']:<32} {points:>9}  {r['encoder'] or '-':<9} {r['dataset'] or '-':<14} {r['model_id'] or '-':<16}  "
                   f"{'yes' if r['complete'] else 'no':<8} {_mib(r['size_bytes']):>10}" + (f"  ({r['problem']})" if r["problem"] else ""))


@collections_app.command("info")
@opt.cli_errors
def collections_info(name: Annotated[str, typer.Argument(help="The collection.", show_default=False)], as_json: AsJson = False,
                     home: opt.Home = None, qdrant_url: opt.QdrantUrl = None, qdrant_api_key: opt.QdrantApiKey = None) -> None:
    """One collection's record: what built it, from what, how many points, its calibration."""
    from cbir import catalog

    settings = opt.settings(home=home, qdrant_url=qdrant_url, qdrant_api_key=qdrant_api_key, collection=name)
    info = catalog.collection(settings, settings.collection_name)
    record = info.meta.to_json() if info.meta else {}
    record.get("extra", {}).pop("probe", None)
    calibration = record.get("extra", {}).get("calibration", {})
    if as_json:
        typer.echo(json.dumps({**_row(info), "record": record}))
        return
    r = _row(info)
    lines = [f"collection {info.name!r}" + (f": {info.problem}" if info.problem else ""),
             f"  points       {r['points']}", f"  complete     {'yes' if r['complete'] else 'no'}",
             f"  encoder      {r['encoder']} (model {r['model_id']}, {record.get('dim')}-d)",
             f"  model file   {record.get('model_file')}", f"  data set     {r['dataset']}", f"  source       {json.dumps(r['source'])}",
             f"  built        {r['created']} by cbir {record.get('cbir_version')}", f"  size on disk {_mib(r['size_bytes'])}"]
    if calibration:
        q = calibration["quantiles"]
        lines.append(f"  match signal calibrated on {calibration['source']}: nearest distance median {q[100]:.4f}, "
                     f"95th percentile {q[190]:.4f}, 99.5th {q[199]:.4f}")
    typer.echo("\n".join(lines) if info.meta else lines[0])


@collections_app.command("drop")
@opt.cli_errors
def collections_drop(name: Annotated[str, typer.Argument(help="The collection.", show_default=False)],
                     yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
                     home: opt.Home = None, qdrant_url: opt.QdrantUrl = None, qdrant_api_key: opt.QdrantApiKey = None,
                     wait: opt.Wait = None) -> None:
    """Remove a collection and its files (asks first, unless --yes)."""
    import sys

    from cbir import catalog
    from cbir.errors import CbirError

    settings = opt.settings(home=home, qdrant_url=qdrant_url, qdrant_api_key=qdrant_api_key, collection=name, wait=wait)
    info = catalog.collection(settings, settings.collection_name)
    if not yes:
        if not sys.stdin.isatty():
            raise CbirError(f"not dropping {name!r} without asking: add --yes (stdin is not a terminal to ask on)")
        points = info.meta.points if info.meta else "?"
        if not typer.confirm(f"drop collection {name!r} ({points} points)?", default=False):
            typer.echo("nothing was dropped", err=True)
            raise typer.Exit(1)
    catalog.drop(settings, settings.collection_name)
    typer.echo(f"dropped collection {name!r}")


@models_app.command("list")
@opt.cli_errors
def models_list(as_json: AsJson = False, home: opt.Home = None, qdrant_url: opt.QdrantUrl = None,
                qdrant_api_key: opt.QdrantApiKey = None) -> None:
    """Packaged and trained models per data set (or folder collection) and encoder: which is current, when it
    was made, and the collections it built."""
    from cbir import catalog

    entries = catalog.models(opt.settings(home=home, qdrant_url=qdrant_url, qdrant_api_key=qdrant_api_key))
    if as_json:
        typer.echo(json.dumps([{**e.__dict__, "path": str(e.path), "built": list(e.built)} for e in entries]))
        return
    typer.echo(f"{'scope':<16} {'encoder':<9} {'model':<16}  {'kind':<8} {'current':<7}  {'made':<25}  collections built")
    for e in entries:
        typer.echo(f"{e.scope:<16} {e.encoder:<9} {e.model_id:<16}  {'packaged' if e.packaged else 'trained':<8} "
                   f"{'yes' if e.current else '':<7}  {e.created:<25}  {', '.join(e.built) or '-'}")


@models_app.command("remove")
@opt.cli_errors
def models_remove(encoder: Annotated[str, typer.Option("--encoder", "-e", help="The encoder whose trained models go.", show_default=False)],
                  dataset: opt.Dataset = None,
                  collection: Annotated[Optional[str], typer.Option("--collection", help="A folder collection's own models instead of a data set's.", show_default=False)] = None,
                  model_id: Annotated[Optional[str], typer.Option("--model-id", help="Only this version (default: every trained one).", show_default=False)] = None,
                  home: opt.Home = None) -> None:
    """Remove trained models (one version, or all of them): back to the packaged model, without deleting files by hand."""
    from cbir import catalog
    from cbir.sources import models_from

    settings = opt.settings(home=home, dataset=dataset, encoder=encoder, collection=collection)
    scope = collection or models_from(settings.dataset)
    typer.echo(catalog.remove_model(settings, scope, settings.encoder, model_id))


def main() -> None:
    """Console-script entry point."""
    app()
