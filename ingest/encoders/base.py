"""What every encoder is: a name, a summary, its settings, and one way to fit it on images.

    fit(images, context) -> (Keras model, info for the provenance)

The images are uint8 (N, 28, 28); no label ever reaches a fitter. The context carries the
settings (a dataclass, or None when there is nothing to set), what kind of images these are,
held-out images for a validation loss, and how to reach another encoder's model (dae-umap
starts from the seed DAE's weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cbir.encoder import to_float  # the same scaling as queries get

__all__ = ["EncoderSpec", "FitContext", "fitted_pca", "frozen_dense", "image_input", "to_float"]


@dataclass(frozen=True)
class FitContext:
    config: Any  # the encoder's settings dataclass (None for an encoder with nothing to fit)
    digits: bool = True  # handwriting: deskewing is safe (a slanted 1 is still a 1; a slanted shoe is not a shoe)
    validation: np.ndarray | None = None  # held-out images, for a validation loss where the fitter reports one
    base_model: Callable[[str], Path] | None = None  # encoder name -> its current model file
    verbose: int = 1
    log: Callable[[str], None] = field(default=lambda line: None)


@dataclass(frozen=True)
class EncoderSpec:
    """One registered encoder."""

    name: str
    summary: str
    fit: Callable[[np.ndarray, FitContext], tuple[Any, dict]]
    config: type | None = None  # its settings dataclass; None: nothing to fit (and nothing to set)
    # n_images, digits -> the settings to use unless told otherwise (adapting to the size of the data)
    default: Callable[[int, bool], Any] | None = None

    def default_config(self, n_images: int, digits: bool):
        if self.config is None:
            return None
        return self.default(n_images, digits) if self.default else self.config()

    def config_with(self, n_images: int, digits: bool, **given):
        """The defaults with the given settings on top; a setting this encoder does not have is an error."""
        from cbir.errors import CbirError

        given = {k: v for k, v in given.items() if v is not None}
        config = self.default_config(n_images, digits)
        if config is None:
            if given:
                raise CbirError(f"the {self.name} encoder has nothing to train; drop --{next(iter(given)).replace('_', '-')}")
            return None
        names = {f.name for f in fields(config)}
        for key in given:
            if key not in names:
                raise CbirError(f"--{key.replace('_', '-')} does not apply to the {self.name} encoder")
        return replace(config, **given)


def epoch_lines(log, what: str, epochs: int):
    """A Keras callback that says, on stderr (through log), how each epoch went: progress for a long fit."""
    import time

    import keras

    class EpochLines(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            losses = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if "loss" in k)
            log(f"{what}: epoch {epoch + 1}/{epochs}, {losses} ({time.perf_counter() - self.started:.0f} s)")

    return EpochLines()


def image_input(name: str = "image"):
    import keras

    return keras.Input(shape=(28, 28, 1), name=name)


def fitted_pca(features: np.ndarray, dims: int, seed: int):
    from sklearn.decomposition import PCA

    return PCA(min(dims, len(features), features.shape[1]), random_state=seed).fit(features)


def frozen_dense(pca, name: str):
    """A frozen Dense layer computing a fitted PCA's (x - mean) @ components.T."""
    import keras

    comps = pca.components_.astype(np.float32)
    dense = keras.layers.Dense(len(comps), name=name, trainable=False)
    dense.build((None, comps.shape[1]))
    dense.set_weights([comps.T, (-pca.mean_ @ comps.T).astype(np.float32)])
    return dense
