"""`ingest`: train the model, load the collection, show the denoising demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cbir import options as opt
from cbir.errors import CbirError
from cbir.noise import quiet_tensorflow

app = typer.Typer(help="Fit an encoder and ingest a data set into Qdrant.", no_args_is_help=True, add_completion=False,
                  cls=opt.OneLineGroup, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.callback()
def _group(version: opt.Version = None) -> None:
    """Fit an encoder and ingest a data set into Qdrant."""


def _summary(path: Path, prov: dict) -> str:
    line = f"saved {path} ({prov['encoder']} encoder, model {prov['model_id']}, {prov['code_dim']}-d"
    if "final_loss" in prov:
        line += f", final loss {prov['final_loss']:.4f}"
    if "final_val_loss" in prov:
        line += f", val_loss {prov['final_val_loss']:.4f}"
    return line + ")"


def _config(settings, source=None, **flags):
    """The encoder's default training settings (for this source's size) with the flags that were given on top."""
    from ingest.train import config_for

    return config_for(settings, source, **flags)


Images = Annotated[Optional[Path], typer.Option("--images", help="A folder of your own images (recursively; label = first subfolder) instead of a data set; needs --collection.", show_default=False)]
Strict = Annotated[bool, typer.Option("--strict", help="With --images: stop at the first file that cannot be read (default: skip and count them).")]


def _folder(settings, images: Path | None, strict: bool = False):
    """(settings, source) for --images: the folder as the collection's data set."""
    if images is None:
        return settings, None
    from cbir.encoders import FOLDER
    from cbir.errors import CbirError
    from cbir.sources.folder import FolderSource

    if not settings.collection:
        raise CbirError("--images needs --collection NAME: a folder's images go into a collection named for them")
    if settings.dataset != "mnist" and "dataset" in (settings.given or ()):
        raise CbirError("--images and --dataset both name the images; give one")
    source = FolderSource(images, settings.collection_name, strict)
    return settings.but(dataset=FOLDER, images=source.root), source


@app.command()
@opt.cli_errors
def train(
    encoder: opt.Encoder = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Training epochs (dae: 20, dae-umap: 15).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Mini-batch size (dae: 128, dae-umap: 256).")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="Learning rate (dae: Adadelta's 1.0, the tutorial's; dae-umap: Adam's 1e-3).")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="dae only: adadelta, adam or sgd.")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0, help="Random seed for weights, noise, UMAP and shuffling (default 0).")] = None,
    train_size: Annotated[Optional[int], typer.Option(min=1, help="Fit on the first N images only.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the .keras file (default: a new version under CBIR_HOME/models/DATASET/ENCODER/, made current).")] = None,
    images: Images = None,
    collection: opt.Collection = None,
    quiet: opt.Quiet = False,
    home: opt.Home = None,
    data_dir: opt.DataDir = None,
    dataset: opt.Dataset = None,
) -> None:
    """Fit an encoder (default dae-umap) on a data set's training split or a folder (--images), without labels.

    The model is kept with its provenance under CBIR_HOME/models/<data set or collection>/<encoder>/ and becomes
    the one that collection's commands use.
    """
    from ingest.train import train_and_save

    settings = opt.settings(home=home, data_dir=data_dir, dataset=dataset, encoder=encoder, collection=collection)
    settings, source = _folder(settings, images)
    config = _config(settings, source, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                     optimizer=optimizer, seed=seed, train_size=train_size)
    verbose = 1 if opt.progress_enabled(quiet) else 0
    before = _current_model_id(settings) if out is None else None
    with quiet_tensorflow():
        path, prov = train_and_save(settings, config, out, verbose=verbose, source=source,
                                    log=lambda line: typer.echo(line, err=True))
    typer.echo(_summary(path, prov))
    if before is not None and before != prov.get("model_id"):
        for line in _rebuild_advice(settings, before, source):
            typer.echo(line)


def _current_model_id(settings) -> str | None:
    """The id of the model commands use now for this encoder (trained or packaged), before a training replaces it."""
    from cbir.encoders import resolve_model_path
    from cbir.modelfiles import model_id

    try:
        return model_id(resolve_model_path(settings.but(model=None), fallback=False))
    except CbirError:
        return None


def _rebuild_advice(settings, old_id: str, source) -> list[str]:
    """What to run next: every collection the replaced model built, with the command that rebuilds it."""
    from cbir import advice, catalog

    try:
        built = [c for c in catalog.collections(settings) if c.meta is not None and c.meta.model_id == old_id]
    except CbirError:
        return []
    lines = []
    for c in built:
        extra = ("--limit", str(c.meta.first)) if c.meta.first else ()
        target = settings.but(collection=c.name, dataset=c.meta.dataset,
                              **({"images": c.meta.source["root"]} if c.meta.source.get("kind") == "folder" else {}))
        lines.append(f"collection {c.name!r} was built by the previous model {old_id}; rebuild it with "
                     f"{advice.command(target, 'ingest run --recreate', *extra)}")
    return lines


@app.command()
@opt.cli_errors
def run(
    train_first: Annotated[bool, typer.Option("--train", help="Fit the encoder into CBIR_HOME/models first and use it; implies --recreate.")] = False,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs when --train is given (default: the encoder's).")] = None,
    train_size: Annotated[Optional[int], typer.Option(min=1, help="With --train: fit on the first N images only.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Ingest only the first N training images, into a collection of their own (default name: cbir-DATASET-ENCODER-firstN).")] = None,
    size: Annotated[Optional[int], typer.Option(min=1, max=99_999_999, help="With --dataset mnist-deformed: how many images to make (default 1,000,000; the first 60,000 are MNIST's own).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="Images per encode/upsert batch.")] = 1000,
    recreate: Annotated[bool, typer.Option(help="Build the collection anew, beside the old one, which answers searches until the new one replaces it.")] = False,
    images: Images = None,
    strict: Strict = False,
    quiet: opt.Quiet = False,
    home: opt.Home = None,
    data_dir: opt.DataDir = None,
    dataset: opt.Dataset = None,
    encoder_name: opt.Encoder = None,
    model: opt.Model = None,
    qdrant_url: opt.QdrantUrl = None,
    qdrant_api_key: opt.QdrantApiKey = None,
    collection: opt.Collection = None,
    wait: opt.Wait = None,
) -> None:
    """Encode the training split and write it into Qdrant: only what is new or changed; re-running never duplicates."""
    from cbir.encoder import Encoder
    from cbir.encoders import with_encoder
    from cbir.modelfiles import PACKAGED_DIR
    from cbir.sources import source_for
    from ingest.pipeline import ingest
    from ingest.train import train_and_save

    settings = opt.settings(home=home, data_dir=data_dir, dataset=dataset, encoder=encoder_name, model=model,
                            qdrant_url=qdrant_url, qdrant_api_key=qdrant_api_key, collection=collection, wait=wait)
    settings, folder = _folder(settings, images, strict)
    if folder is not None and (limit or size):
        raise CbirError("--limit and --size are for data sets; a folder's images are all indexed")
    source = folder or source_for(settings, "train", first=limit, size=size)
    log = lambda line: typer.echo(line, err=True)  # noqa: E731
    trained = None
    if train_first:
        verbose = 1 if opt.progress_enabled(quiet) else 0
        with quiet_tensorflow():
            # A new version, not yet current: collections built by the old model keep answering meanwhile.
            trained, prov = train_and_save(settings, _config(settings, source, epochs=epochs, train_size=train_size),
                                           verbose=verbose, make_current=False, source=source, log=log)
        typer.echo(_summary(trained, prov))
        encoder = Encoder(trained, name=settings.encoder)
    else:
        settings, encoder = with_encoder(settings)
        from ingest.encoders import REGISTRY

        spec = REGISTRY.get(settings.encoder)
        learns = spec is None or spec.config is not None  # pixels has nothing to learn from a folder
        if folder is not None and settings.model is None and encoder.path.is_relative_to(PACKAGED_DIR) and learns:
            log(f"no {settings.encoder} encoder trained on this folder yet: the packaged MNIST one encodes it "
                f"(train one with `ingest train --images {folder.root} --collection {settings.collection_name}`)")
    if source.partial and settings.collection is None:
        # A part never replaces the whole: it gets a collection of its own.
        settings = settings.but(collection=f"{settings.collection_name}-first{len(source)}")
    report = ingest(settings, encoder, source, recreate=recreate or train_first, batch_size=batch_size,
                    progress=opt.progress_enabled(quiet), log=log,
                    hint_flags=(("--limit", str(limit)) if limit else ()) + (("--size", str(size)) if size else ()))
    if trained is not None:
        from cbir.modelfiles import ModelStore

        ModelStore(settings.trained_model_dir).make_current(trained)  # the collection is published: now the model
    typer.echo(report.summary())


@app.command()
@opt.cli_errors
def denoise(
    image: Annotated[Path, typer.Argument(help="A digit image (PNG, JPEG, ...).", show_default=False)],
    out: Annotated[Path, typer.Option(help="Where to write the figure (PNG).")] = Path("denoise.png"),
    noise: Annotated[float, typer.Option(min=0.0, help="Noise factor, as in training.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the noise.")] = 0,
    home: opt.Home = None,
    dataset: opt.Dataset = None,
    model: opt.Model = None,
) -> None:
    """Show the denoiser at work: the image, a noisy copy and the DAE's reconstruction."""
    from cbir import preprocess, render
    from cbir.encoders import resolve_model_path
    from cbir.modelfiles import KerasModel
    from ingest.denoise import denoise_figure

    settings = opt.settings(home=home, dataset=dataset, model=model, encoder="dae")
    digit = preprocess.load_digit(image)
    with quiet_tensorflow():
        autoencoder = KerasModel(resolve_model_path(settings))
        figure = denoise_figure(autoencoder, digit, noise=noise, seed=seed)
    typer.echo(f"wrote {render.save_png(figure, out)}")


@app.command("export")
@opt.cli_errors
def export_cmd(
    out: Annotated[Optional[Path], typer.Option(help="Where to write the .tflite (default: beside --model; without --model, under CBIR_HOME/exports/).")] = None,
    home: opt.Home = None,
    dataset: opt.Dataset = None,
    encoder: opt.Encoder = None,
    model: opt.Model = None,
) -> None:
    """Export a .keras model's encoder to LiteRT (.tflite), which search and eval run.

    Nothing is ever written into the installed package: without --model or --out, the export of the
    encoder's current model goes to CBIR_HOME/exports/DATASET/ENCODER.tflite.
    """
    from cbir.encoders import resolve_model_path
    from cbir.modelfiles import PACKAGED_DIR, export_model

    settings = opt.settings(home=home, dataset=dataset, encoder=encoder, model=model)
    path = resolve_model_path(settings)
    if out is None and (settings.model is None or PACKAGED_DIR in path.parents):
        out = settings.home / "exports" / settings.dataset / f"{settings.encoder}.tflite"
    with quiet_tensorflow():
        lite = export_model(path, out)
    typer.echo(f"wrote {lite}")


def main() -> None:
    """Console-script entry point."""
    app()
