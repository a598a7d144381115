"""The seed model: the Keras blog's convolutional denoising autoencoder, and its encoder.

TensorFlow is imported inside the functions that need it, so importing this module is cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cbir.encoder import exported_path, file_sha256, model_id_of, to_float
from cbir.errors import CbirError

CODE_LAYER = "encoder"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the tutorial's training run."""

    epochs: int = 20
    batch_size: int = 128
    noise: float = 0.5
    # The tutorial's optimizer='adadelta' meant lr=1.0 in its Keras; today's default (1e-3) stalls.
    optimizer: str = "adadelta"
    learning_rate: float = 1.0
    seed: int = 0
    train_size: int | None = None  # None = the whole training split


@dataclass
class TrainResult:
    """A trained autoencoder plus what happened while training it."""

    autoencoder: object
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


def add_noise(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """The tutorial's corruption: x + factor * N(0, 1), clipped to [0, 1]."""
    noisy = x + factor * rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(noisy, 0.0, 1.0)


def build_autoencoder():
    """The tutorial's conv autoencoder: 28x28x1 -> 4x4x8 code (layer 'encoder') -> 28x28x1."""
    import keras
    from keras import layers

    inp = keras.Input(shape=(28, 28, 1), name="image")
    x = layers.Conv2D(16, 3, activation="relu", padding="same")(inp)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    code = layers.MaxPooling2D(2, padding="same", name=CODE_LAYER)(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same")(code)
    x = layers.UpSampling2D(2)(x)
    x = layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    x = layers.UpSampling2D(2)(x)
    x = layers.Conv2D(16, 3, activation="relu")(x)  # no padding: 16 -> 14, so 28 after upsampling
    x = layers.UpSampling2D(2)(x)
    out = layers.Conv2D(1, 3, activation="sigmoid", padding="same", name="reconstruction")(x)
    return keras.Model(inp, out, name="conv_denoising_autoencoder")


def _optimizer(config: TrainConfig):
    import keras

    choices = {
        "adadelta": keras.optimizers.Adadelta,
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
    }
    if config.optimizer not in choices:
        raise CbirError(f"unknown optimizer {config.optimizer!r}; choose one of: {', '.join(choices)}")
    return choices[config.optimizer](learning_rate=config.learning_rate)


def train(train_images: np.ndarray, val_images: np.ndarray, config: TrainConfig, verbose: int = 1) -> TrainResult:
    """Train the denoiser on noisy -> clean pairs, seeded, validating on noisy test images."""
    import time

    import keras

    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    x_train = to_float(train_images)
    x_val = to_float(val_images)
    noisy_train = add_noise(x_train, config.noise, rng)
    noisy_val = add_noise(x_val, config.noise, rng)

    model = build_autoencoder()
    model.compile(optimizer=_optimizer(config), loss="binary_crossentropy")
    start = time.perf_counter()
    history = model.fit(
        noisy_train,
        x_train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        shuffle=True,
        validation_data=(noisy_val, x_val),
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    return TrainResult(model, {k: [float(v) for v in vals] for k, vals in history.history.items()}, seconds)


def provenance_path(model_path: Path) -> Path:
    """The provenance JSON that sits beside a .keras file."""
    return model_path.with_suffix(".json")


def export_encoder(autoencoder, model_path: Path) -> Path:
    """Export the code layer (flattened to 128-d) to LiteRT beside the .keras file, for fast queries."""
    import contextlib
    import io

    import keras

    code = keras.layers.Flatten(name="code")(autoencoder.get_layer(CODE_LAYER).output)
    lite = exported_path(model_path)
    tmp = lite.with_name(lite.stem + ".tmp.tflite")
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints "Saved artifact at ..."
        keras.Model(autoencoder.input, code).export(str(tmp), format="litert")
    tmp.replace(lite)
    return lite


def save(autoencoder, path: Path, provenance: dict) -> str:
    """Write the .keras file, its LiteRT encoder and its provenance JSON; return the model id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.keras")
    autoencoder.save(tmp)
    lite = export_encoder(autoencoder, tmp)  # exported under the tmp name, renamed below
    tmp.replace(path)
    lite.replace(exported_path(path))
    model_id = model_id_of(path)
    record = {**provenance, "model_id": model_id, "file": path.name, "encoder_file": exported_path(path).name,
              "encoder_sha256": file_sha256(exported_path(path))}
    prov = provenance_path(path)
    prov_tmp = prov.with_suffix(".json.tmp")
    prov_tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    prov_tmp.replace(prov)
    return model_id


def export_model(path: Path) -> Path:
    """Re-export a saved model's encoder to LiteRT and note it in the provenance JSON, if any."""
    lite = export_encoder(load_keras(path), path)
    prov = provenance_path(path)
    if prov.is_file():
        record = json.loads(prov.read_text())
        record.update(encoder_file=lite.name, encoder_sha256=file_sha256(lite))
        prov.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return lite


def load_keras(path: Path):
    """Load a .keras autoencoder safely (no arbitrary code), or raise a CbirError."""
    path = Path(path)
    if not path.is_file():
        raise CbirError(f"model file {path} does not exist; train one with `ingest train`")
    import keras

    try:
        # safe_mode refuses lambda layers and other arbitrary code in a model file.
        model = keras.models.load_model(path, compile=False, safe_mode=True)
        model.get_layer(CODE_LAYER)
    except Exception as exc:  # keras raises many types for a bad file
        raise CbirError(
            f"cannot load model {path}: {str(exc).splitlines()[0][:200]}; retrain it with `ingest train`"
        ) from None
    return model


class KerasModel:
    """The trained autoencoder in Keras: reconstructions for the demo, reference codes for tests."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.autoencoder = load_keras(self.path)
        import keras

        code = self.autoencoder.get_layer(CODE_LAYER).output
        self.code_model = keras.Model(self.autoencoder.input, code)
        self.dim = int(np.prod(code.shape[1:]))
        self.model_id = model_id_of(self.path)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Images -> codes (N, dim) float32, computed by Keras."""
        import keras

        x = to_float(images)
        return keras.ops.convert_to_numpy(self.code_model(x, training=False)).reshape(len(x), -1)

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """Images -> the autoencoder's reconstructions, (N, 28, 28) float32."""
        import keras

        x = to_float(images)
        return keras.ops.convert_to_numpy(self.autoencoder(x, training=False)).reshape(len(x), 28, 28)
