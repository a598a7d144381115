"""`dae`: the seed, the Keras blog's convolutional denoising autoencoder; its 128-d code is the vector.

Conv2D(16)-MaxPool-Conv2D(8)-MaxPool-Conv2D(8)-MaxPool -> a 4x4x8 code (layer `encoder`) ->
Conv2D(8)-Up-Conv2D(8)-Up-Conv2D(16, valid)-Up-Conv2D(1, sigmoid), trained to map noisy inputs
(x + 0.5 N(0, 1), clipped) to clean ones with binary cross-entropy. The tutorial's
`optimizer='adadelta'` meant learning rate 1.0 in the Keras of its day (today's default, 0.001,
does not converge), so training uses Adadelta(learning_rate=1.0).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from cbir.errors import CbirError
from cbir.modelfiles import CODE_LAYER
from ingest.encoders.base import EncoderSpec, FitContext, epoch_lines, image_input, to_float


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the tutorial's training run."""

    epochs: int = 20
    batch_size: int = 128
    noise: float = 0.5
    optimizer: str = "adadelta"
    learning_rate: float = 1.0
    seed: int = 0
    train_size: int | None = None  # None = every image


def add_noise(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """The tutorial's corruption: x + factor * N(0, 1), clipped to [0, 1]."""
    noisy = x + factor * rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(noisy, 0.0, 1.0)


def build_autoencoder():
    """The tutorial's conv autoencoder: 28x28x1 -> 4x4x8 code (layer 'encoder') -> 28x28x1."""
    import keras
    from keras import layers

    inp = image_input()
    x = layers.Conv2D(16, 3, activation="relu", padding="same", name="enc_conv1")(inp)
    x = layers.MaxPooling2D(2, padding="same", name="enc_pool1")(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same", name="enc_conv2")(x)
    x = layers.MaxPooling2D(2, padding="same", name="enc_pool2")(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same", name="enc_conv3")(x)
    code = layers.MaxPooling2D(2, padding="same", name=CODE_LAYER)(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same", name="dec_conv1")(code)
    x = layers.UpSampling2D(2, name="dec_up1")(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same", name="dec_conv2")(x)
    x = layers.UpSampling2D(2, name="dec_up2")(x)
    x = layers.Conv2D(16, 3, activation="relu", name="dec_conv3")(x)  # no padding: 16 -> 14, so 28 after upsampling
    x = layers.UpSampling2D(2, name="dec_up3")(x)
    out = layers.Conv2D(1, 3, activation="sigmoid", padding="same", name="reconstruction")(x)
    return keras.Model(inp, out, name="conv_denoising_autoencoder")


def _optimizer(config: TrainConfig):
    import keras

    choices = {"adadelta": keras.optimizers.Adadelta, "adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    if config.optimizer not in choices:
        raise CbirError(f"unknown optimizer {config.optimizer!r}; choose one of: {', '.join(choices)}")
    return choices[config.optimizer](learning_rate=config.learning_rate)


def train(images: np.ndarray, validation: np.ndarray | None, config: TrainConfig, verbose: int = 1,
          log=lambda line: None):
    """Train the denoiser on noisy -> clean pairs, seeded; returns (model, loss history, seconds).

    verbose: 0 silent, 1 a line per epoch through log (stderr).
    """
    import keras

    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    x_train = to_float(images)
    noisy_train = add_noise(x_train, config.noise, rng)
    val = None
    if validation is not None and len(validation):
        x_val = to_float(validation)
        val = (add_noise(x_val, config.noise, rng), x_val)
    model = build_autoencoder()
    model.compile(optimizer=_optimizer(config), loss="binary_crossentropy")
    start = time.perf_counter()
    callbacks = [epoch_lines(log, "dae", config.epochs)] if verbose else []
    history = model.fit(noisy_train, x_train, epochs=config.epochs, batch_size=config.batch_size, shuffle=True,
                        validation_data=val, verbose=0, callbacks=callbacks)
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}, time.perf_counter() - start


def fit(images, context: FitContext):
    model, history, seconds = train(images, context.validation, context.config, verbose=context.verbose, log=context.log)
    info = {"epochs_run": len(history.get("loss", [])), "final_loss": history["loss"][-1], "history": history,
            "train_seconds": round(seconds, 1)}
    if "val_loss" in history:
        info["final_val_loss"] = history["val_loss"][-1]
    return model, info


def default(n_images: int, digits: bool) -> TrainConfig:
    """The tutorial's run for MNIST-sized data; smaller sets get more passes and smaller batches."""
    if n_images >= 40_000:
        return TrainConfig()
    return TrainConfig(epochs=30, batch_size=int(min(128, max(16, n_images // 20))))


ENCODER = EncoderSpec("dae", "the seed: the tutorial's convolutional denoising autoencoder, 128-d code", fit, TrainConfig,
                      default)
