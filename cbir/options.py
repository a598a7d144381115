"""Shared CLI options (each backed by a CBIR_* env var) and the error handling every command uses."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cbir.errors import CbirError
from cbir.settings import Settings

Home = Annotated[
    Optional[Path],
    typer.Option("--home", envvar="CBIR_HOME", help="Where the model and the embedded store live."),
]
DataDir = Annotated[
    Optional[Path],
    typer.Option("--data-dir", envvar="CBIR_DATA_DIR", help="Folder with the four IDX files (gzipped or not)."),
]
QdrantUrl = Annotated[
    Optional[str],
    typer.Option("--qdrant-url", envvar="CBIR_QDRANT_URL", help="Qdrant server URL; unset = embedded store."),
]
QdrantApiKey = Annotated[
    Optional[str],
    typer.Option("--qdrant-api-key", envvar="CBIR_QDRANT_API_KEY", help="API key for the Qdrant server.", show_default=False),
]
Collection = Annotated[
    Optional[str],
    typer.Option("--collection", envvar="CBIR_COLLECTION", help="Collection name (default: cbir-DATASET-ENCODER)."),
]
Model = Annotated[
    Optional[Path],
    typer.Option("--model", envvar="CBIR_MODEL", help="A .keras model file; overrides --encoder's (default: the encoder's model trained under CBIR_HOME, else the packaged one)."),
]
Dataset = Annotated[
    Optional[str],
    typer.Option("--dataset", envvar="CBIR_DATASET", help="mnist or fashion-mnist (default: mnist)."),
]

Encoder = Annotated[
    Optional[str],
    typer.Option("--encoder", "-e", envvar="CBIR_ENCODER", help="pixels, pca, dae or dae-umap (default: dae-umap)."),
]


def settings(**flags) -> Settings:
    """Settings from env vars with the CLI flags that were given on top."""
    return Settings.from_env(**flags)


def cli_errors(func):
    """Turn a CbirError into one line on stderr and exit code 2; Ctrl-C into exit code 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except CbirError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def progress_enabled() -> bool:
    """Show progress bars only to a person at a terminal."""
    return sys.stderr.isatty()
