"""Fit the registered encoders on a training split. Labels are never read here.

pixels and pca are closed-form; dae is the seed's training (cbir.model.train); dae-umap learns a
neighbour-graph embedding of the training images with UMAP, then trains a network built on the
DAE's conv encoder to reproduce it, so a query is one forward pass (no per-query optimisation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from cbir.encoder import to_float


@dataclass(frozen=True)
class PcaConfig:
    """PCA encoder settings."""

    dims: int = 32
    seed: int = 0


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


def _inputs(name: str):
    import keras

    return keras.Input(shape=(28, 28, 1), name=name)


def fit_pixels() -> object:
    """The identity encoder: 784 pixels in [0, 1]."""
    import keras

    inp = _inputs("image")
    return keras.Model(inp, keras.layers.Flatten(name="pixels")(inp), name="pixels")


def _frozen_pca(pixels: np.ndarray, dims: int, seed: int, name: str):
    """A Dense layer computing (x - mean) @ components.T, fitted on (N, 784) pixels."""
    import keras
    from sklearn.decomposition import PCA

    pca = PCA(dims, random_state=seed).fit(pixels)
    dense = keras.layers.Dense(dims, name=name, trainable=False)
    dense.build((None, pixels.shape[1]))
    comps = pca.components_.astype(np.float32)
    dense.set_weights([comps.T, (-pca.mean_ @ comps.T).astype(np.float32)])
    return dense, pca


def fit_pca(images: np.ndarray, config: PcaConfig = PcaConfig()) -> tuple[object, dict]:
    """PCA of the pixels, as a Keras model (Flatten -> frozen Dense)."""
    import keras

    x = to_float(images).reshape(len(images), -1)
    dense, pca = _frozen_pca(x, config.dims, config.seed, "pca")
    inp = _inputs("image")
    model = keras.Model(inp, dense(keras.layers.Flatten()(inp)), name="pca")
    return model, {"explained_variance": round(float(pca.explained_variance_ratio_.sum()), 4)}


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


def graph_features(x: np.ndarray, config: ManifoldConfig) -> np.ndarray:
    """What UMAP's neighbour graph is built on: (deskewed, unit-contrast) pixels, flat."""
    return unit_contrast(x) if config.unit_contrast else x.reshape(len(x), -1)


def umap_targets(flat: np.ndarray, config: ManifoldConfig, verbose: bool = False) -> np.ndarray:
    """The UMAP embedding of (N, D) features via PCA, centred, scaled to unit RMS over all axes."""
    import warnings

    from sklearn.decomposition import PCA
    import umap

    warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)  # seeded UMAP runs on one thread
    reduced = PCA(config.graph_pca_dims, random_state=config.seed).fit_transform(flat)
    embedding = umap.UMAP(n_components=config.dims, n_neighbors=config.n_neighbors, min_dist=config.min_dist,
                          random_state=config.seed, verbose=verbose).fit_transform(reduced)
    # One scale for all axes keeps the embedding's geometry (and so its rankings) intact.
    centred = embedding - embedding.mean(0)
    return (centred / np.sqrt((centred**2).mean())).astype(np.float32)


def build_manifold_network(dae, config: ManifoldConfig):
    """image -> [Deskew] -> the DAE's conv encoder (its weights, fine-tuned) -> dense head -> embedding."""
    import keras

    from cbir.layers import Deskew
    from cbir.model import CODE_LAYER

    trunk = keras.Model(dae.input, dae.get_layer(CODE_LAYER).output, name="dae_encoder")
    inp = _inputs("image")
    x = Deskew(name="deskew")(inp) if config.deskew else inp
    x = keras.layers.Flatten()(trunk(x))
    x = keras.layers.Dense(config.hidden, activation="relu")(x)
    x = keras.layers.Dense(config.hidden, activation="relu")(x)
    out = keras.layers.Dense(config.dims, name="embedding")(x)
    return keras.Model(inp, out, name="dae_umap")


def with_local_part(network, x: np.ndarray, config: ManifoldConfig):
    """network's embedding, then local_weight x the graph features' PCA (frozen, scaled to the embedding's RMS norm)."""
    import keras

    from cbir.layers import Deskew, UnitContrast

    inp = _inputs("image")
    y = Deskew()(inp) if config.deskew else inp
    y = UnitContrast()(y) if config.unit_contrast else keras.layers.Flatten()(y)
    features = graph_features(deskewed(x) if config.deskew else x, config)
    dense, pca = _frozen_pca(features, config.graph_pca_dims, config.seed, "local_pca")
    projected = pca.transform(features[:5000])  # a sample sets the scale
    scale = config.local_weight * np.sqrt(config.dims) / np.sqrt((projected**2).sum(1).mean())
    local = keras.layers.Rescaling(float(scale), name="local")(dense(y))
    out = keras.layers.Concatenate(name="embedding_and_local")([network(inp), local])
    return keras.Model(inp, out, name="dae_umap_local")


def fit_manifold(images: np.ndarray, dae, config: ManifoldConfig, verbose: int = 1) -> tuple[object, dict]:
    """Fit dae-umap on unlabelled images, starting from a trained DAE; returns the model and what happened."""
    import keras

    keras.utils.set_random_seed(config.seed)
    x = to_float(images)
    t0 = time.perf_counter()
    targets = umap_targets(graph_features(deskewed(images) if config.deskew else x, config), config, verbose=verbose == 1)
    umap_s = time.perf_counter() - t0
    network = build_manifold_network(dae, config)
    network.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse")
    t1 = time.perf_counter()
    history = network.fit(x, targets, epochs=config.epochs, batch_size=config.batch_size, shuffle=True, verbose=verbose)
    if config.local_weight > 0:
        network = with_local_part(network, x, config)
    return network, {
        "umap_seconds": round(umap_s, 1),
        "head_seconds": round(time.perf_counter() - t1, 1),
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "final_loss": float(history.history["loss"][-1]),
    }
