"""`ingest train`: train the seed model on a data set and save it with its provenance."""

from __future__ import annotations

import dataclasses
import datetime as dt
import platform
from pathlib import Path

import numpy as np

from cbir import __version__, datasets, model
from cbir.errors import CbirError
from cbir.settings import Settings


def train_and_save(settings: Settings, config: model.TrainConfig, out: Path | None = None, verbose: int = 1) -> tuple[Path, dict]:
    """Train on the data set's training split (validating on its test split); return the path and provenance."""
    train_split = datasets.load(settings.dataset, "train", settings.data_dir, settings.cache_dir)
    test_split = datasets.load(settings.dataset, "test", settings.data_dir, settings.cache_dir)
    images = train_split.images[: config.train_size] if config.train_size else train_split.images
    result = model.train(images, test_split.images, config, verbose=verbose)

    import keras
    import tensorflow as tf

    provenance = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cbir_version": __version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "python_version": platform.python_version(),
        "dataset": settings.dataset,
        "train_images": int(len(images)),
        "data_md5": {**train_split.md5, **test_split.md5},
        "config": dataclasses.asdict(config),
        "epochs_run": len(result.history.get("loss", [])),
        "final_loss": result.history["loss"][-1],
        "final_val_loss": result.history["val_loss"][-1],
        "history": result.history,
        "train_seconds": round(result.seconds, 1),
        "code_dim": int(np.prod(result.autoencoder.get_layer(model.CODE_LAYER).output.shape[1:])),
    }
    path = out or settings.trained_model_dir / "dae.keras"
    try:
        provenance["model_id"] = model.save(result.autoencoder, path, provenance)
    except OSError as exc:
        raise CbirError(f"cannot save the model to {path}: {exc.strerror or exc}; choose a writable --out or CBIR_HOME") from None
    return path, provenance
