"""`pca`: PCA of the pixels (fitted on the training images), as a frozen Dense layer."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.encoders.base import EncoderSpec, FitContext, fitted_pca, frozen_dense, image_input, to_float


@dataclass(frozen=True)
class PcaConfig:
    dims: int = 32
    seed: int = 0
    train_size: int | None = None  # None = every image


def fit(images, context: FitContext):
    import keras

    config = context.config
    pca = fitted_pca(to_float(images).reshape(len(images), -1), config.dims, config.seed)
    inp = image_input()
    model = keras.Model(inp, frozen_dense(pca, "pca")(keras.layers.Flatten(name="flat")(inp)), name="pca")
    return model, {"explained_variance": round(float(pca.explained_variance_ratio_.sum()), 4)}


def default(n_images: int, digits: bool) -> PcaConfig:
    return PcaConfig(dims=int(min(32, max(1, n_images - 1))))


ENCODER = EncoderSpec("pca", "PCA of the pixels to 32 dimensions (fitted on the training images)", fit, PcaConfig, default)
