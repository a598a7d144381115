import json

import numpy as np
import pytest

from dataclasses import replace

from cbir import modelfiles
from cbir.errors import CbirError
from cbir.settings import Settings
from ingest.encoders import dae


def _content_id(path) -> str:
    """The model id by hand: SHA-256 of the .keras archive's architecture and weights, not its save date."""
    import hashlib
    import zipfile

    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for member in ("config.json", "model.weights.h5"):
            digest.update(member.encode() + b"\0" + archive.read(member))
    return digest.hexdigest()[:16]


def test_architecture_is_the_tutorials():
    ae = dae.build_autoencoder()
    assert ae.input_shape == (None, 28, 28, 1) and ae.output_shape == (None, 28, 28, 1)
    assert ae.get_layer("encoder").output.shape[1:] == (4, 4, 8)  # the 128-d code
    convs = [layer for layer in ae.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [16, 8, 8, 8, 8, 16, 1]
    assert [c.padding for c in convs] == ["same"] * 5 + ["valid", "same"]
    assert convs[-1].activation.__name__ == "sigmoid"


def test_noise_is_the_tutorials_and_clipped():
    x = np.full((1000, 28, 28, 1), 0.5, np.float32)
    noisy = dae.add_noise(x, 0.5, np.random.default_rng(0))
    assert noisy.min() >= 0 and noisy.max() <= 1
    # 0.5 + 0.5 * z leaves [0, 1] exactly when |z| > 1: 31.7% of a normal's mass.
    clipped = float(np.mean((noisy == 0) | (noisy == 1)))
    assert clipped == pytest.approx(0.3173, abs=0.01)
    assert float(noisy.mean()) == pytest.approx(0.5, abs=0.01)


def test_saved_model_has_provenance_and_a_content_id(tiny_model):
    prov = json.loads(modelfiles.provenance_path(tiny_model).read_text())
    for key in ("created", "cbir_version", "data_md5", "config", "final_loss", "final_val_loss", "epochs_run"):
        assert key in prov
    assert prov["config"]["epochs"] == 1 and prov["train_images"] == 3000
    assert prov["model_id"] == _content_id(tiny_model) == modelfiles.model_id(tiny_model)


def test_litert_encoder_matches_keras(tiny_encoder, tiny_model, mnist_test):
    reference = modelfiles.KerasModel(tiny_model)
    images = mnist_test.images[:50]
    codes = tiny_encoder.encode(images, batch_size=16)  # uneven last batch on purpose
    assert codes.shape == (50, 128) and codes.dtype == np.float32
    assert np.max(np.abs(codes - reference.encode(images))) <= 1e-5
    # uint8 and [0, 1] floats are the same input
    np.testing.assert_allclose(tiny_encoder.encode(images[:2] / np.float32(255)), codes[:2], atol=1e-6)
    assert tiny_encoder.model_id == reference.model_id == _content_id(tiny_model)


def test_training_is_seeded(mnist_dir):
    from cbir.datasets import load_split

    images = load_split("mnist", "test", mnist_dir).images[:512]
    config = dae.TrainConfig(epochs=1, seed=3)
    a = dae.train(images, images[:128], config, verbose=0)
    b = dae.train(images, images[:128], config, verbose=0)
    assert a[1]["loss"] == pytest.approx(b[1]["loss"], rel=1e-5)


@pytest.mark.parametrize("name", ["pixels", "pca", "dae", "dae-umap"])
@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_every_packaged_encoder_loads_and_matches_its_provenance(dataset, name):
    from cbir.encoder import Encoder
    from cbir.modelfiles import exported_path, packaged_path

    path = packaged_path(dataset, name)
    assert path.is_file(), "every registered encoder ships for every data set"
    enc = Encoder(path)
    prov = json.loads(modelfiles.provenance_path(path).read_text())
    assert prov["model_id"] == enc.model_id and prov["code_dim"] == enc.dim
    assert prov["encoder_sha256"] == modelfiles.file_sha256(exported_path(path))
    assert prov["encoder"] == name and prov["dataset"] == dataset and prov["labels_used"] is False
    assert prov["train_images"] == 60000
    # Fashion's dae-umap keeps a 50-d pixel PCA beside its 16-d embedding (README, Retrieval quality).
    assert enc.dim == {"pixels": 784, "pca": 32, "dae": 128, "dae-umap": 16 if dataset == "mnist" else 66}[name]


def test_packaged_seed_model_is_the_tutorials_run():
    from cbir.modelfiles import packaged_path

    prov = json.loads(modelfiles.provenance_path(packaged_path("mnist", "dae")).read_text())
    assert prov["config"]["epochs"] == 20 and prov["config"]["optimizer"] == "adadelta"


def test_missing_and_corrupt_model_files_are_clear(tmp_path, tiny_model):
    from cbir.encoder import Encoder

    with pytest.raises(CbirError, match="does not exist"):
        Encoder(tmp_path / "nope.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(CbirError, match="cannot load model"):
        modelfiles.KerasModel(bad)
    with pytest.raises(CbirError, match="ingest export"):
        Encoder(bad)  # no .tflite beside it
    (tmp_path / "bad.tflite").write_bytes(b"garbage")
    with pytest.raises(CbirError, match="cannot load"):
        Encoder(bad)


def test_export_rewrites_the_litert_file(tmp_path, tiny_model):
    import shutil

    from cbir.encoder import Encoder
    from cbir.modelfiles import exported_path

    copy = tmp_path / "m.keras"
    shutil.copy(tiny_model, copy)
    assert modelfiles.export_model(copy) == exported_path(copy)
    assert Encoder(copy).model_id == _content_id(tiny_model)


def test_model_choice_order(tmp_path):
    from cbir.encoders import resolve_model_path
    from cbir.modelfiles import packaged_path

    settings = Settings(home=tmp_path, encoder="pca")
    assert resolve_model_path(settings) == packaged_path("mnist", "pca")
    legacy = tmp_path / "models" / "mnist" / "pca.keras"  # where cbir 0.1 trained into
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"")
    assert resolve_model_path(settings) == legacy
    version = tmp_path / "models" / "mnist" / "pca" / "0123456789abcdef" / "pca.keras"
    version.parent.mkdir(parents=True)
    version.write_bytes(b"")
    assert resolve_model_path(settings) == legacy  # a version, but not made current
    modelfiles.ModelStore(tmp_path / "models").make_current(version)
    assert resolve_model_path(settings) == version
    explicit = tmp_path / "x.keras"
    assert resolve_model_path(replace(settings, model=explicit)) == explicit


def test_unknown_encoder_names_the_choices(tmp_path):
    from cbir.encoders import resolve_model_path

    with pytest.raises(CbirError, match="unknown encoder 'umap'; choose one of: pixels, pca, dae, dae-umap"):
        resolve_model_path(Settings(home=tmp_path, encoder="umap"))
