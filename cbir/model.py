"""Keras models: the seed's convolutional denoising autoencoder, and saving/exporting any encoder.

A saved model is either the autoencoder (its code layer is the encoder) or an encoder model
whose output is the vector. TensorFlow is imported inside the functions that need it, so
importing this module is cheap.
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


def is_autoencoder(model) -> bool:
    """Whether a Keras model is the seed's autoencoder (rather than an encoder)."""
    return any(layer.name == CODE_LAYER for layer in model.layers)


def encoder_part(model):
    """image -> vector: the autoencoder's flattened code layer, or an encoder model itself."""
    if not is_autoencoder(model):
        return model
    import keras

    code = keras.layers.Flatten(name="code")(model.get_layer(CODE_LAYER).output)
    return keras.Model(model.input, code)


def code_dim(model) -> int:
    """Length of the vectors a model's encoder produces."""
    return int(np.prod(encoder_part(model).output.shape[1:]))


def export_encoder(model, model_path: Path) -> Path:
    """Export the encoder (see encoder_part) to LiteRT beside the .keras file, for fast queries."""
    import contextlib
    import io

    lite = exported_path(model_path)
    tmp = lite.with_name(lite.stem + ".tmp.tflite")
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints "Saved artifact at ..."
        encoder_part(model).export(str(tmp), format="litert")
    tmp.replace(lite)
    return lite


def _inference_copy(model):
    """The model without optimizer state (its own or a nested model's): it would triple the file, unused."""
    import keras

    import cbir.layers  # noqa: F401  clone_model rebuilds custom layers from the registry

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def save(model, path: Path, provenance: dict) -> str:
    """Write the .keras file, its LiteRT encoder and its provenance JSON; return the model id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.keras")
    model = _inference_copy(model)
    model.save(tmp)
    lite = export_encoder(model, tmp)  # exported under the tmp name, renamed below
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
    """Load a saved .keras model safely (no arbitrary code), or raise a CbirError."""
    path = Path(path)
    if not path.is_file():
        raise CbirError(f"model file {path} does not exist; train one with `ingest train`")
    import keras

    import cbir.layers  # noqa: F401  registers the custom layers saved models may hold

    try:
        # safe_mode refuses lambda layers and other arbitrary code in a model file.
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises many types for a bad file
        raise CbirError(
            f"cannot load model {path}: {str(exc).splitlines()[0][:200]}; retrain it with `ingest train`"
        ) from exc
    return model


class KerasModel:
    """A saved model in Keras: reference vectors for tests, reconstructions for the denoising demo."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.model = load_keras(self.path)
        self.encoder = encoder_part(self.model)
        self.dim = code_dim(self.encoder)
        self.model_id = model_id_of(self.path)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Images -> vectors (N, dim) float32, computed by Keras."""
        import keras

        x = to_float(images)
        return keras.ops.convert_to_numpy(self.encoder(x, training=False)).reshape(len(x), -1)

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """Images -> the autoencoder's reconstructions, (N, 28, 28) float32."""
        import keras

        if not is_autoencoder(self.model):
            raise CbirError(f"{self.path} is an encoder, not an autoencoder; denoising needs the dae model (--encoder dae)")
        x = to_float(images)
        return keras.ops.convert_to_numpy(self.model(x, training=False)).reshape(len(x), 28, 28)
