"""`cbir`: the umbrella command, joining the ingest, search and eval apps."""

from __future__ import annotations

import typer

from cbir.options import OneLineGroup

from eval.cli import app as eval_app
from ingest.cli import app as ingest_app
from search.cli import search
from serve.cli import serve

app = typer.Typer(help="Content-based image retrieval: a denoising autoencoder plus Qdrant.", no_args_is_help=True,
                  add_completion=False, cls=OneLineGroup, rich_markup_mode=None, pretty_exceptions_enable=False)
app.add_typer(ingest_app, name="ingest")
app.command("search")(search)
app.add_typer(eval_app, name="eval")
app.command("serve")(serve)


def main() -> None:
    """Console-script entry point."""
    app()
