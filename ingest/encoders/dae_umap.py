"""`dae-umap` (the default): the seed DAE's conv encoder plus a dense head, trained to reproduce a UMAP
embedding of the training images, so a query is one forward pass.

UMAP's neighbour graph is built on (deskewed, or contrast-normalised) pixels reduced by PCA; the
network starts from the DAE's conv weights and learns to put each image where UMAP put it. No
label is read. On clothes, a scaled PCA of the pixels is appended to keep pixel-level neighbours.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from ingest.encoders.base import EncoderSpec, FitContext, epoch_lines, fitted_pca, frozen_dense, image_input, to_float


@dataclass(frozen=True)
class ManifoldConfig:
    """dae-umap settings; the defaults are the measured choice (see README, Retrieval quality)."""

    deskew: bool = True
    unit_contrast: bool = False  # build the graph on per-image centred, L2-normalised pixels
    graph_pca_dims: int = 50  # UMAP's neighbour graph is built on this PCA of the (deskewed) pixels
    # > 0: append that PCA, scaled to this fraction of the embedding's norm, to the output, so that
    # within a cluster the nearest neighbours are still the nearest in pixel space (keeps P@10 up).
    local_weight: float = 0.0
    dims: int = 16
    n_neighbors: int = 15
    min_dist: float = 0.0  # tight clusters: full-ranking LRAP rewards whole classes pulled apart
    hidden: int = 512
    epochs: int = 15
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0
    train_size: int | None = None


def deskewed(images: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Images -> deskewed float32 (N, 28, 28, 1), by the same layer the encoder runs."""
    import keras

    from cbir.layers import Deskew

    layer = Deskew()
    x = to_float(images)
    return np.concatenate([keras.ops.convert_to_numpy(layer(x[i : i + batch_size])) for i in range(0, len(x), batch_size)])


def unit_contrast(x: np.ndarray) -> np.ndarray:
    """(N, 28, 28, 1) images -> (N, 784), by the same layer the encoder runs."""
    import keras

    from cbir.layers import UnitContrast

    return keras.ops.convert_to_numpy(UnitContrast()(x))


def graph_features(images: np.ndarray, config: ManifoldConfig) -> np.ndarray:
    """What UMAP's neighbour graph is built on: the (deskewed, unit-contrast) pixels, flat (N, 784)."""
    x = deskewed(images) if config.deskew else to_float(images)
    return unit_contrast(x) if config.unit_contrast else x.reshape(len(x), -1)


def graph_pca(features: np.ndarray, config: ManifoldConfig):
    """The PCA the graph is built on (and the local part, if any, appends)."""
    return fitted_pca(features, config.graph_pca_dims, config.seed)


def umap_targets(reduced: np.ndarray, config: ManifoldConfig, verbose: bool = False) -> np.ndarray:
    """The UMAP embedding of (N, D) PCA-reduced features, centred, scaled to unit RMS over all axes."""
    import warnings

    import umap

    warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)  # seeded UMAP runs on one thread
    import contextlib
    import sys

    # UMAP says how its graph and its layout progress with print(): to stderr, where progress goes.
    with contextlib.redirect_stdout(sys.stderr):
        embedding = umap.UMAP(n_components=config.dims, n_neighbors=config.n_neighbors, min_dist=config.min_dist,
                              random_state=config.seed, verbose=verbose).fit_transform(reduced)
    # One scale for all axes keeps the embedding's geometry (and so its rankings) intact.
    centred = embedding - embedding.mean(0)
    return (centred / np.sqrt((centred**2).mean())).astype(np.float32)


def build_manifold_network(dae, config: ManifoldConfig):
    """image -> [Deskew] -> the DAE's conv encoder (its weights, fine-tuned) -> dense head -> embedding."""
    import keras

    from cbir.layers import Deskew
    from cbir.modelfiles import CODE_LAYER

    trunk = keras.Model(dae.input, dae.get_layer(CODE_LAYER).output, name="dae_encoder")
    inp = image_input("image")
    x = Deskew(name="deskew")(inp) if config.deskew else inp
    x = keras.layers.Flatten(name="code")(trunk(x))
    x = keras.layers.Dense(config.hidden, activation="relu", name="hidden1")(x)
    x = keras.layers.Dense(config.hidden, activation="relu", name="hidden2")(x)
    out = keras.layers.Dense(config.dims, name="embedding")(x)
    return keras.Model(inp, out, name="dae_umap")


def with_local_part(network, pca, reduced: np.ndarray, config: ManifoldConfig):
    """network's embedding, then local_weight x the graph PCA (frozen, scaled to the embedding's RMS norm).

    reduced: training features through that PCA; their RMS norm sets the scale.
    """
    import keras

    from cbir.layers import Deskew, UnitContrast

    inp = image_input("image")
    y = Deskew(name="deskew_local")(inp) if config.deskew else inp
    y = UnitContrast(name="unit_contrast")(y) if config.unit_contrast else keras.layers.Flatten(name="flat")(y)
    scale = config.local_weight * np.sqrt(config.dims) / np.sqrt((reduced**2).sum(1).mean())
    local = keras.layers.Rescaling(float(scale), name="local")(frozen_dense(pca, "local_pca")(y))
    out = keras.layers.Concatenate(name="embedding_and_local")([network(inp), local])
    return keras.Model(inp, out, name="dae_umap_local")


def fit_manifold(images: np.ndarray, dae, config: ManifoldConfig, verbose: int = 1,
                 log=lambda line: None) -> tuple[object, dict]:
    """Fit dae-umap on unlabelled images, starting from a trained DAE; returns the model and what happened."""
    import keras

    keras.utils.set_random_seed(config.seed)
    t0 = time.perf_counter()
    features = graph_features(images, config)
    pca = graph_pca(features, config)
    reduced = pca.transform(features)
    if verbose:
        log(f"dae-umap: UMAP of {len(images)} images (the neighbour graph, then its layout) ...")
    targets = umap_targets(reduced, config, verbose=verbose == 1)
    umap_s = time.perf_counter() - t0
    network = build_manifold_network(dae, config)
    network.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse")
    t1 = time.perf_counter()
    if verbose:
        log(f"dae-umap: training the network to reproduce the embedding ({config.epochs} epochs)")
    callbacks = [epoch_lines(log, "dae-umap", config.epochs)] if verbose else []
    history = network.fit(to_float(images), targets, epochs=config.epochs, batch_size=config.batch_size,
                          shuffle=True, verbose=0, callbacks=callbacks)
    if config.local_weight > 0:
        network = with_local_part(network, pca, reduced, config)
    return network, {
        "umap_seconds": round(umap_s, 1),
        "head_seconds": round(time.perf_counter() - t1, 1),
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "final_loss": float(history.history["loss"][-1]),
    }


def default(n_images: int, digits: bool) -> ManifoldConfig:
    """Measured choices (README, Retrieval quality): digits are deskewed; other pictures are compared by
    contrast-normalised pixels, with their PCA kept beside the embedding for the nearest neighbours.

    Smaller sets (a user's folder) get a neighbourhood and a PCA their size allows, and enough passes
    of smaller batches for the head to see about as many batches as on MNIST (within a time budget).
    """
    config = ManifoldConfig(deskew=digits, unit_contrast=not digits, local_weight=0.0 if digits else 0.25)
    if n_images >= 40_000:
        return config
    batch = int(min(256, max(32, n_images // 16)))
    steps_per_epoch = max(1, -(-n_images // batch))
    epochs = int(np.clip(round(1000 / steps_per_epoch), 15, 100))
    return replace(config, n_neighbors=int(min(15, max(2, n_images // 10))), graph_pca_dims=int(min(50, max(2, n_images // 4))),
                   dims=int(min(16, max(2, n_images // 20))), batch_size=batch, epochs=epochs)


def fit(images, context: FitContext):
    from cbir.modelfiles import load_keras, model_id

    dae_path = context.base_model("dae")
    network, info = fit_manifold(images, load_keras(dae_path), context.config, verbose=context.verbose, log=context.log)
    return network, {**info, "base_dae": {"file": str(dae_path), "model_id": model_id(dae_path)}}


ENCODER = EncoderSpec(
    "dae-umap",
    "the DAE's conv encoder plus a dense head, trained to reproduce a 16-d UMAP embedding of the training images "
    "(no labels); deskews digits first",
    fit, ManifoldConfig, default,
)
