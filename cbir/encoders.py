"""The encoder registry: which encoders exist, what each is, and where its model file lives.

Every encoder is a Keras model saved as `<name>.keras` with its LiteRT export `<name>.tflite`
beside it, one per data set (a PCA fitted on digits means nothing for clothes). The package
ships them under `cbir/models/<dataset>/`; `ingest train --encoder NAME` writes new ones under
CBIR_HOME/models/<dataset>/, which then take precedence. Nothing here imports Keras.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cbir.errors import CbirError

PACKAGED_DIR = Path(__file__).parent / "models"


@dataclass(frozen=True)
class EncoderSpec:
    """One registered encoder."""

    name: str
    summary: str


ENCODERS = {
    spec.name: spec
    for spec in (
        EncoderSpec("pixels", "the 784 raw pixels in [0, 1]: the baseline"),
        EncoderSpec("pca", "PCA of the pixels to 32 dimensions (fitted on the training split)"),
        EncoderSpec("dae", "the seed: the tutorial's convolutional denoising autoencoder, 128-d code"),
        EncoderSpec("dae-umap", "the DAE's conv encoder plus a dense head, trained to reproduce a 16-d UMAP "
                                "embedding of the training images (no labels); deskews digits first"),
    )
}
DEFAULT_ENCODER = "dae-umap"


def spec(name: str) -> EncoderSpec:
    """The registered encoder called name, or a CbirError listing the choices."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise CbirError(f"unknown encoder {name!r}; choose one of: {', '.join(ENCODERS)}") from None


def packaged_path(dataset: str, name: str) -> Path:
    """Where the package ships the encoder for a data set."""
    return PACKAGED_DIR / dataset / f"{name}.keras"


def trained_path(trained_dir: Path, dataset: str, name: str) -> Path:
    """Where `ingest train` writes the encoder for a data set."""
    return trained_dir / dataset / f"{name}.keras"


def resolve_model_path(settings) -> Path:
    """The model file to use: --model / CBIR_MODEL, else one trained under CBIR_HOME, else the packaged one."""
    if settings.model is not None:
        return settings.model
    name = spec(settings.encoder).name
    trained = trained_path(settings.trained_model_dir, settings.dataset, name)
    if trained.is_file():
        return trained
    packaged = packaged_path(settings.dataset, name)
    if packaged.is_file():
        return packaged
    raise CbirError(
        f"no {name} encoder for {settings.dataset}: none packaged and none under {trained.parent}; "
        f"train one with `ingest train --encoder {name} --dataset {settings.dataset}`"
    )


def load_encoder(settings):
    """The LiteRT encoder the settings select (see resolve_model_path)."""
    from cbir.encoder import Encoder

    return Encoder(resolve_model_path(settings), name=settings.encoder)


def with_encoder(settings):
    """(settings, encoder): a --model names its encoder (from its provenance), and so its collection.

    `search --model my_pca.keras` then looks in cbir-DATASET-pca, not in the default encoder's collection.
    """
    encoder = load_encoder(settings)
    if settings.model is not None and encoder.name in ENCODERS and encoder.name != settings.encoder:
        settings = settings.but(encoder=encoder.name)
    return settings, encoder
