"""Fitting the registered encoders: closed forms checked against scikit-learn, dae-umap end to end."""

import json
from pathlib import Path

import numpy as np
import pytest

from cbir.encoder import Encoder
from eval import metrics
from ingest.cli import app as ingest_app
from tests.cli_helpers import invoke, one_line_error


def _keras_encode(model, images):
    import keras

    return keras.ops.convert_to_numpy(model(images.astype(np.float32)[..., None] / 255.0))


def test_pixels_is_the_identity(mnist_test):
    from ingest.encoders import FitContext
    from ingest.encoders.pixels import fit as fit_pixels

    x = mnist_test.images[:5]
    assert np.allclose(_keras_encode(fit_pixels(x, FitContext(None))[0], x), x.reshape(5, -1) / 255.0)


def test_pca_matches_scikit_learn(mnist_test):
    from sklearn.decomposition import PCA

    from ingest.encoders import FitContext
    from ingest.encoders.pca import PcaConfig, fit as fit_pca

    x = mnist_test.images[:2000]
    model, info = fit_pca(x, FitContext(PcaConfig(dims=8)))
    ref = PCA(8, random_state=0).fit(x.reshape(2000, -1) / 255.0)
    assert np.allclose(_keras_encode(model, x[:50]), ref.transform(x[:50].reshape(50, -1) / 255.0), atol=1e-4)
    assert info["explained_variance"] == pytest.approx(ref.explained_variance_ratio_.sum(), abs=1e-4)


def test_manifold_targets_are_centred_and_unit_scale(mnist_test):
    from ingest.encoders.dae_umap import ManifoldConfig, graph_features, graph_pca, umap_targets

    config = ManifoldConfig(dims=3, graph_pca_dims=10)
    features = graph_features(mnist_test.images[:600], config)
    y = umap_targets(graph_pca(features, config).transform(features), config)
    assert y.shape == (600, 3) and np.allclose(y.mean(0), 0, atol=1e-5) and y.std() == pytest.approx(1, abs=1e-5)


def test_train_dae_umap_from_the_cli_without_labels(env, tiny_model, monkeypatch, mnist_test):
    import shutil

    # Built on the data set's DAE: put the tiny one where `ingest train --encoder dae` would.
    dae = env / "home" / "models" / "mnist" / "dae.keras"
    dae.parent.mkdir(parents=True)
    for suffix in (".keras", ".tflite"):
        shutil.copy(tiny_model.with_suffix(suffix), dae.with_suffix(suffix))
    result = invoke(ingest_app, ["train", "--encoder", "dae-umap", "--train-size", "1500", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    path = Path(last.split()[1])  # a new version under CBIR_HOME/models/mnist/dae-umap/<model id>/, made current
    assert path.parent.parent == env / "home" / "models" / "mnist" / "dae-umap" and path.name == "dae-umap.keras"
    assert last.startswith(f"saved {path} (dae-umap encoder, model {path.parent.name}")
    prov = json.loads(path.with_suffix(".json").read_text())
    assert prov["labels_used"] is False and prov["base_dae"]["file"] == str(dae)
    assert prov["config"]["deskew"] is True and prov["train_images"] == 1500
    enc = Encoder(path)
    assert enc.dim == 16
    # The LiteRT export (what queries run) agrees with Keras, Deskew layer included.
    from cbir.modelfiles import KerasModel

    x = mnist_test.images[:32]
    assert np.abs(enc.encode(x) - KerasModel(path).encode(x)).max() < 1e-3


def test_train_flags_that_do_not_apply_are_refused(env):
    one_line_error(invoke(ingest_app, ["train", "--encoder", "pixels", "--epochs", "3"]), "nothing to train")
    one_line_error(invoke(ingest_app, ["train", "--encoder", "pca", "--optimizer", "adam"]), "--optimizer", "pca")
    one_line_error(invoke(ingest_app, ["train", "--encoder", "umap"]), "unknown encoder 'umap'")


def test_packaged_default_encoder_beats_pixels_on_held_out_digits(mnist_test):
    """The point of dae-umap: whole classes pulled apart. Test images only, so training never saw them."""
    from cbir.encoders import packaged_path

    x, y = mnist_test.images[:3000], mnist_test.labels[:3000]

    def lrap(vectors):
        v = vectors.astype(np.float64)
        q, db = v[:300], v[300:]
        d = (q**2).sum(1)[:, None] + (db**2).sum(1)[None, :] - 2 * q @ db.T
        return metrics.lrap(-d, y[:300, None] == y[None, 300:])

    pixels = lrap(x.reshape(len(x), -1) / 255.0)
    learned = lrap(Encoder(packaged_path("mnist", "dae-umap")).encode(x))
    assert learned > 0.9 and learned > pixels + 0.3, (learned, pixels)


def test_local_part_appends_the_scaled_pixel_pca(mnist_test):
    import keras

    from ingest.encoders.dae import build_autoencoder
    from ingest.encoders.dae_umap import ManifoldConfig, build_manifold_network, graph_features, graph_pca, with_local_part

    config = ManifoldConfig(deskew=False, unit_contrast=True, local_weight=0.5, dims=4, graph_pca_dims=6, hidden=8)
    x = mnist_test.images[:800].astype(np.float32)[..., None] / 255.0
    network = build_manifold_network(build_autoencoder(), config)
    features = graph_features(x, config)
    pca = graph_pca(features, config)
    model = with_local_part(network, pca, pca.transform(features), config)
    out = keras.ops.convert_to_numpy(model(x))
    assert out.shape == (800, 10)
    assert np.allclose(out[:, :4], keras.ops.convert_to_numpy(network(x)), atol=1e-5)
    # The local part: unit-contrast pixels' PCA, at local_weight x the embedding's RMS norm (sqrt(dims)).
    assert np.sqrt((out[:, 4:] ** 2).sum(1).mean()) == pytest.approx(0.5 * 2, rel=0.05)
