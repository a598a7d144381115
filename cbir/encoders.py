"""Which encoder and which model file: names, the default, and where a model is found.

Every encoder is a Keras model saved as `<name>.keras` with its LiteRT export `<name>.tflite`
beside it, one per data set (a PCA fitted on digits means nothing for clothes). The package
ships them under `cbir/models/<dataset>/`; `ingest train --encoder NAME` adds versions under
CBIR_HOME/models/<dataset>/<name>/ (cbir.modelfiles.ModelStore), and the current one takes
precedence. The registry itself (names, summaries, fitters) is ingest.encoders; importing it
is cheap, and only a name that is not found needs it here.
"""

from __future__ import annotations

from pathlib import Path

from cbir.errors import CbirError
from cbir.modelfiles import ModelStore, packaged_path

DEFAULT_ENCODER = "dae-umap"


def registry() -> dict:
    from ingest.encoders import REGISTRY

    return REGISTRY


def names() -> list[str]:
    """Every registered encoder's name, in table order."""
    return list(registry())


def spec(name: str):
    """The registered encoder called name, or a CbirError listing the choices."""
    try:
        return registry()[name]
    except KeyError:
        raise CbirError(f"unknown encoder {name!r}; choose one of: {', '.join(registry())}") from None


FOLDER = "folder"  # the data set of collections made from a folder of the user's own images


def model_scope(settings) -> str:
    """Whose models: a data set's (mnist, fashion-mnist; mnist-deformed is MNIST's), or a folder collection's own."""
    from cbir.sources import models_from

    return settings.collection_name if settings.dataset == FOLDER else models_from(settings.dataset)


def resolve_model_path(settings, fallback: bool = True) -> Path:
    """The model file to use: --model / CBIR_MODEL, else the current trained one under CBIR_HOME, else the packaged one.

    A folder collection's models are its own (trained on the folder); until one is, the packaged
    MNIST model of the encoder stands in (fallback).
    """
    if settings.model is not None:
        return settings.model
    trained = ModelStore(settings.trained_model_dir).current(model_scope(settings), settings.encoder)
    if trained is not None:
        return trained
    scope = "mnist" if settings.dataset == FOLDER and fallback else model_scope(settings)
    packaged = packaged_path(scope, settings.encoder)
    if packaged.is_file():
        return packaged
    name = spec(settings.encoder).name  # an unknown name says so, listing the known ones
    raise CbirError(
        f"no {name} encoder for {settings.dataset}: none packaged and none trained under "
        f"{settings.trained_model_dir / model_scope(settings) / name}; "
        f"train one with `ingest train --encoder {name} --dataset {settings.dataset}`"
    )


def load_encoder(settings):
    """The LiteRT encoder the settings select (see resolve_model_path)."""
    from cbir.encoder import Encoder

    return Encoder(resolve_model_path(settings), name=settings.encoder)


def for_collection(settings):
    """A --collection given alone decides the rest: its record says which encoder and data set made it."""
    given = settings.given or frozenset()
    if "collection" not in given or given & {"encoder", "model", "dataset"}:
        return settings
    from cbir.store import open_backend

    try:
        backend = open_backend(settings)
        try:
            meta = backend.meta(settings.collection_name)
        finally:
            backend.close()
    except CbirError:
        return settings  # the command itself reports what is wrong with the store
    if meta is None:
        return settings
    changes = {"dataset": meta.dataset}
    if meta.source.get("kind") == "folder" and meta.source.get("root"):
        changes["images"] = meta.source["root"]
    if meta.encoder in registry():
        changes["encoder"] = meta.encoder
    return settings.but(**changes)


def with_encoder(settings):
    """(settings, encoder): the encoder that fits the settings, and the settings that fit the encoder.

    A --collection names its own encoder (its record); a --model names its encoder (its provenance),
    and so its collection: `search --model my_pca.keras` looks in cbir-DATASET-pca.
    """
    settings = for_collection(settings)
    encoder = load_encoder(settings)
    if settings.model is not None and encoder.name != settings.encoder and encoder.name in registry():
        settings = settings.but(encoder=encoder.name)
    return settings, encoder
