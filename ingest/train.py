"""`ingest train`: fit one registered encoder on a source's images and keep it with its provenance."""

from __future__ import annotations

import dataclasses
import datetime as dt
import platform
from pathlib import Path

import numpy as np

from cbir import __version__, datasets, encoders
from cbir.errors import CbirError
from cbir.modelfiles import ModelStore, code_dim, read_provenance, save_as
from cbir.settings import Settings
from ingest.encoders import FitContext


def config_for(settings: Settings, source=None, **flags):
    """The encoder's settings for this source (adapted to its size), with the flags given on top; checked first."""
    spec = encoders.spec(settings.encoder)
    if source is None:
        n, digits = datasets.SPLIT_SIZES["train"], datasets.get_spec(settings.dataset).digits
    else:
        n, digits = len(source), source.digits
    size = flags.get("train_size")
    return spec.config_with(min(n, size) if size else n, digits, **flags)


def _images(source, config) -> tuple[np.ndarray, dict]:
    """The images to fit on (the first --train-size of them), and what the provenance says of them."""
    size = getattr(config, "train_size", None)
    if source.kind == "folder":
        ids = source.point_ids()[:size] if size else source.point_ids()
        images, payloads = source.load(ids)
        if not len(images):
            raise CbirError(f"--images {source.root}: none of its files could be read")
        return images, {"images_folder": str(source.root), "files": len(images), "files_unreadable": len(source.failed),
                        "listing_sha256": source.listing_sha256()}
    train = source.data
    images = train.images[:size] if size else train.images
    test = datasets.load(source.dataset, "test", source.data_dir, source.cache_dir)
    return images, {"data_md5": {**train.md5, **test.md5}}


def train_and_save(settings: Settings, config=None, out: Path | None = None, verbose: int = 1,
                   make_current: bool = True, source=None, log=lambda line: None) -> tuple[Path, dict]:
    """Fit settings.encoder on the source's images (default: the data set's training split) and keep it.

    Without --out the model becomes a new version under CBIR_HOME/models/<scope>/<encoder>/ (scope:
    the data set, or a folder collection), made current at once, or (make_current=False, for
    `ingest run --train`) once the caller says so.
    """
    from cbir.sources import source_for

    spec = encoders.spec(settings.encoder)
    source = source or source_for(settings)
    if config is None:
        config = config_for(settings, source)
    images, about = _images(source, config)
    if config is not None and source.kind == "folder":
        chosen = ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(config).items() if k in ADAPTED)
        log(f"training {spec.name} on {len(images)} images from {source.root}" + (f": {chosen} (chosen for its size)" if chosen else ""))
    validation = None
    if source.kind != "folder":
        validation = datasets.load(source.dataset, "test", source.data_dir, source.cache_dir).images
    scope = source.models_from
    context = FitContext(
        config=config,
        digits=source.digits,
        validation=validation,
        base_model=lambda name: encoders.resolve_model_path(settings.but(encoder=name, model=None), fallback=True),
        verbose=verbose,
        log=log,
    )
    network, extra = spec.fit(images, context)
    provenance = {
        "encoder": spec.name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cbir_version": __version__,
        "python_version": platform.python_version(),
        **_framework_versions(),
        "dataset": source.name,
        "scope": scope,
        "train_images": int(len(images)),
        "labels_used": False,
        **about,
        "config": dataclasses.asdict(config) if config is not None else None,
        **extra,
        "code_dim": code_dim(network),
    }
    try:
        if out is not None:
            path = save_as(network, out, provenance)
        else:
            store = ModelStore(settings.trained_model_dir)
            path = store.add(network, scope, spec.name, provenance)
            if make_current:
                store.make_current(path)
    except OSError as exc:
        where = out or settings.trained_model_dir
        raise CbirError(f"cannot save the model to {where}: {exc.strerror or exc}; choose a writable --out or CBIR_HOME") from exc
    return path, read_provenance(path) or provenance


ADAPTED = ("epochs", "batch_size", "n_neighbors", "dims", "graph_pca_dims")  # what a folder's size decides


def _framework_versions() -> dict:
    import keras
    import tensorflow as tf

    return {"tensorflow_version": tf.__version__, "keras_version": keras.__version__}
