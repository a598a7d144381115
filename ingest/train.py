"""`ingest train`: fit one registered encoder on a data set's training images and keep it with its provenance."""

from __future__ import annotations

import dataclasses
import datetime as dt
import platform
from pathlib import Path

from cbir import __version__, datasets, encoders
from cbir.errors import CbirError
from cbir.modelfiles import ModelStore, code_dim, save_as
from cbir.settings import Settings
from ingest.encoders import FitContext


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


def config_for(settings: Settings, **flags):
    """The encoder's settings for this data set, with the flags that were given on top (checked before any work)."""
    spec = encoders.spec(settings.encoder)
    digits = datasets.get_spec(settings.dataset).digits
    return spec.config_with(datasets.SPLIT_SIZES["train"], digits, **flags)


def train_and_save(settings: Settings, config=None, out: Path | None = None, verbose: int = 1,
                   make_current: bool = True) -> tuple[Path, dict]:
    """Fit settings.encoder on the data set's training split and keep it; return its path and provenance.

    Without --out the model becomes a new version under CBIR_HOME/models/<dataset>/<encoder>/, made
    current at once, or (make_current=False, for `ingest run --train`) once the caller says so.
    """
    spec = encoders.spec(settings.encoder)
    if config is None:
        config = config_for(settings)
    train_split = datasets.load(settings.dataset, "train", settings.data_dir, settings.cache_dir)
    test_split = datasets.load(settings.dataset, "test", settings.data_dir, settings.cache_dir)
    size = getattr(config, "train_size", None)
    images = train_split.images[:size] if size else train_split.images
    context = FitContext(
        config=config,
        digits=datasets.get_spec(settings.dataset).digits,
        validation=test_split.images,
        base_model=lambda name: encoders.resolve_model_path(settings.but(encoder=name, model=None)),
        verbose=verbose,
    )
    network, extra = spec.fit(images, context)
    provenance = _provenance(settings, spec.name, len(images), {**train_split.md5, **test_split.md5}, config, extra)
    provenance["code_dim"] = code_dim(network)
    try:
        if out is not None:
            path = save_as(network, out, provenance)
        else:
            store = ModelStore(settings.trained_model_dir)
            path = store.add(network, encoders.model_scope(settings), spec.name, provenance)
            if make_current:
                store.make_current(path)
    except OSError as exc:
        where = out or settings.trained_model_dir
        raise CbirError(f"cannot save the model to {where}: {exc.strerror or exc}; choose a writable --out or CBIR_HOME") from exc
    from cbir.modelfiles import read_provenance

    return path, read_provenance(path) or provenance
