"""`ingest train`: fit one registered encoder on a data set and save it with its provenance."""

from __future__ import annotations

import dataclasses
import datetime as dt
import platform
from dataclasses import replace
from pathlib import Path

from cbir import __version__, datasets, encoders, model
from cbir.errors import CbirError
from cbir.settings import Settings
from ingest import fit


def _provenance(settings: Settings, name: str, n_images: int, md5: dict, config, extra: dict) -> dict:
    import keras
    import tensorflow as tf

    return {
        "encoder": name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cbir_version": __version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "python_version": platform.python_version(),
        "dataset": settings.dataset,
        "train_images": int(n_images),
        "labels_used": False,
        "data_md5": md5,
        "config": dataclasses.asdict(config) if config is not None else None,
        **extra,
    }


def _fit_dae(config: model.TrainConfig, images, test_images, verbose):
    result = model.train(images, test_images, config, verbose=verbose)
    return result.autoencoder, {
        "epochs_run": len(result.history.get("loss", [])),
        "final_loss": result.history["loss"][-1],
        "final_val_loss": result.history["val_loss"][-1],
        "history": result.history,
        "train_seconds": round(result.seconds, 1),
    }


def _fit_dae_umap(settings, config: fit.ManifoldConfig, images, verbose):
    # Built on the data set's DAE: the one trained under CBIR_HOME, else the packaged one.
    dae_path = encoders.resolve_model_path(replace(settings, encoder="dae", model=None))
    network, info = fit.fit_manifold(images, model.load_keras(dae_path), config, verbose=verbose)
    return network, {**info, "base_dae": {"file": str(dae_path), "model_id": model.model_id_of(dae_path)}}


def default_config(name: str, dataset: str):
    """The training settings an encoder uses unless told otherwise."""
    if name == "dae":
        return model.TrainConfig()
    if name == "pca":
        return fit.PcaConfig()
    if name == "dae-umap":
        digits = datasets.get_spec(dataset).digits
        # Measured choices (README, Retrieval quality): digits are deskewed; clothes are compared by
        # contrast-normalised pixels, with their PCA kept beside the embedding for the nearest neighbours.
        return fit.ManifoldConfig(deskew=digits, unit_contrast=not digits, local_weight=0.0 if digits else 0.25)
    return None


def train_and_save(settings: Settings, config=None, out: Path | None = None, verbose: int = 1) -> tuple[Path, dict]:
    """Fit settings.encoder on the data set's training split and save it; return the path and provenance."""
    name = encoders.spec(settings.encoder).name
    config = config if config is not None else default_config(name, settings.dataset)
    train_split = datasets.load(settings.dataset, "train", settings.data_dir, settings.cache_dir)
    test_split = datasets.load(settings.dataset, "test", settings.data_dir, settings.cache_dir)
    size = getattr(config, "train_size", None)
    images = train_split.images[:size] if size else train_split.images
    md5 = {**train_split.md5, **test_split.md5}
    if name == "pixels":
        network, extra = fit.fit_pixels(), {}
    elif name == "pca":
        network, extra = fit.fit_pca(images, config)
    elif name == "dae":
        network, extra = _fit_dae(config, images, test_split.images, verbose)
    else:
        network, extra = _fit_dae_umap(settings, config, images, verbose)
    provenance = _provenance(settings, name, len(images), md5, config, extra)
    provenance["code_dim"] = model.code_dim(network)
    path = out or encoders.trained_path(settings.trained_model_dir, settings.dataset, name)
    try:
        provenance["model_id"] = model.save(network, path, provenance)
    except OSError as exc:
        raise CbirError(f"cannot save the model to {path}: {exc.strerror or exc}; choose a writable --out or CBIR_HOME") from exc
    return path, provenance
