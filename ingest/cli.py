"""`ingest`: train the model, load the collection, show the denoising demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cbir import options as opt

app = typer.Typer(help="Train the autoencoder and ingest a data set into Qdrant.", no_args_is_help=True, add_completion=False)


@app.callback()
def _group() -> None:
    """Train the autoencoder and ingest a data set into Qdrant."""


@app.command()
@opt.cli_errors
def train(
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 20,
    batch_size: Annotated[int, typer.Option(min=1, help="Mini-batch size.")] = 128,
    learning_rate: Annotated[float, typer.Option(help="Learning rate (Adadelta's 1.0 is the tutorial's).")] = 1.0,
    optimizer: Annotated[str, typer.Option(help="adadelta, adam or sgd.")] = "adadelta",
    seed: Annotated[int, typer.Option(help="Random seed for weights, noise and shuffling.")] = 0,
    train_size: Annotated[Optional[int], typer.Option(min=1, help="Train on the first N images only.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the .keras file (default: CBIR_HOME/models/dae.keras).")] = None,
    home: opt.Home = None,
    data_dir: opt.DataDir = None,
    dataset: opt.Dataset = None,
) -> None:
    """Train the denoising autoencoder and save it with a provenance JSON."""
    from cbir.model import TrainConfig
    from ingest.train import train_and_save

    settings = opt.settings(home=home, data_dir=data_dir, dataset=dataset)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                         optimizer=optimizer, seed=seed, train_size=train_size)
    path, prov = train_and_save(settings, config, out, verbose=1 if opt.progress_enabled() else 2)
    typer.echo(
        f"saved {path} (model {prov['model_id']}): {prov['epochs_run']} epochs, "
        f"loss {prov['final_loss']:.4f}, val_loss {prov['final_val_loss']:.4f}, {prov['train_seconds']:.0f} s"
    )


@app.command()
@opt.cli_errors
def run(
    train_first: Annotated[bool, typer.Option("--train", help="Train a new model into CBIR_HOME/models first and use it; implies --recreate.")] = False,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs when --train is given.")] = 20,
    train_size: Annotated[Optional[int], typer.Option(min=1, help="With --train: train on the first N images only.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Ingest only the first N training images.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per encode/upsert batch.")] = 1000,
    recreate: Annotated[bool, typer.Option(help="Drop the collection and build it anew.")] = False,
    home: opt.Home = None,
    data_dir: opt.DataDir = None,
    dataset: opt.Dataset = None,
    model: opt.Model = None,
    qdrant_url: opt.QdrantUrl = None,
    qdrant_api_key: opt.QdrantApiKey = None,
    collection: opt.Collection = None,
) -> None:
    """Encode the training split and upsert it into Qdrant (re-running overwrites, never duplicates)."""
    from cbir.encoder import Encoder, load_encoder
    from cbir.model import TrainConfig
    from ingest.pipeline import ingest
    from ingest.train import train_and_save

    settings = opt.settings(home=home, data_dir=data_dir, dataset=dataset, model=model, qdrant_url=qdrant_url,
                            qdrant_api_key=qdrant_api_key, collection=collection)
    if train_first:
        path, prov = train_and_save(settings, TrainConfig(epochs=epochs, train_size=train_size),
                                    verbose=1 if opt.progress_enabled() else 2)
        typer.echo(f"trained {path} (model {prov['model_id']}), final loss {prov['final_loss']:.4f}")
        encoder = Encoder(path)
    else:
        encoder = load_encoder(settings)
    # A new model makes every stored vector stale: rebuild rather than refuse.
    report = ingest(settings, encoder, limit=limit, batch_size=batch_size, recreate=recreate or train_first,
                    progress=opt.progress_enabled())
    typer.echo(report.summary())


@app.command()
@opt.cli_errors
def denoise(
    image: Annotated[Path, typer.Argument(help="A digit image (PNG, JPEG, ...).", show_default=False)],
    out: Annotated[Path, typer.Option(help="Where to write the figure (PNG).")] = Path("denoise.png"),
    noise: Annotated[float, typer.Option(min=0.0, help="Noise factor, as in training.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the noise.")] = 0,
    home: opt.Home = None,
    model: opt.Model = None,
) -> None:
    """Show the denoiser at work: the image, a noisy copy and the model's reconstruction."""
    from cbir import preprocess, render
    from cbir.encoder import resolve_model_path
    from cbir.model import KerasModel
    from ingest.denoise import denoise_figure

    settings = opt.settings(home=home, model=model)
    digit = preprocess.load_digit(image)
    autoencoder = KerasModel(resolve_model_path(settings.model, settings.trained_model_dir))
    figure = denoise_figure(autoencoder, digit, noise=noise, seed=seed)
    typer.echo(f"wrote {render.save_png(figure, out)}")


@app.command("export")
@opt.cli_errors
def export_cmd(
    home: opt.Home = None,
    model: opt.Model = None,
) -> None:
    """Export a .keras model's encoder to LiteRT (.tflite beside it), which search and eval run."""
    from cbir.encoder import resolve_model_path
    from cbir.model import export_model

    settings = opt.settings(home=home, model=model)
    typer.echo(f"wrote {export_model(resolve_model_path(settings.model, settings.trained_model_dir))}")


def main() -> None:
    """Console-script entry point."""
    app()
