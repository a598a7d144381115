"""The Deskew layer: the textbook moment deskew, inside Keras and inside the LiteRT export."""

import numpy as np
import pytest


def _scipy_deskew(img: np.ndarray) -> np.ndarray:
    """Reference: moments -> shear + centring by scipy.ndimage.affine_transform (bilinear)."""
    from scipy.ndimage import affine_transform

    rows, cols = np.mgrid[:28, :28]
    mass = img.sum()
    r, c = (rows * img).sum() / mass, (cols * img).sum() / mass
    shear = ((rows - r) * (cols - c) * img).sum() / ((rows - r) ** 2 * img).sum()
    affine = np.array([[1.0, 0.0], [shear, 1.0]])
    return affine_transform(img, affine, offset=np.array([r, c]) - affine @ np.array([14.0, 14.0]), order=1)


@pytest.fixture(scope="module")
def layer():
    from cbir.layers import Deskew

    return Deskew()


def _run(layer, x):
    import keras

    return keras.ops.convert_to_numpy(layer(x.astype(np.float32)[..., None]))[..., 0]


def test_matches_the_scipy_reference_on_real_digits(layer, mnist_test):
    x = mnist_test.images[:300].astype(np.float32) / 255.0
    ours = _run(layer, x)
    ref = np.stack([_scipy_deskew(img) for img in x])
    assert np.abs(ours - ref).mean() < 1e-3
    assert np.quantile(np.abs(ours - ref), 0.999) < 0.05  # border handling differs on a few pixels


def test_straightens_a_slanted_stroke(layer):
    img = np.zeros((28, 28), np.float32)
    for r in range(6, 22):  # a "/" stroke: one pixel per row, leaning right going up
        img[r, 6 + (22 - r)] = 1.0
    out = _run(layer, img[None])[0]
    rows, cols = np.nonzero(out > 0.25)
    assert np.ptp(cols) <= 2 < np.ptp(np.nonzero(img)[1])  # now (nearly) vertical
    assert abs((out.sum(1) * np.arange(28)).sum() / out.sum() - 14) < 0.6  # centred by mass


def test_blank_and_odd_images_stay_finite(layer):
    blank = np.zeros((1, 28, 28), np.float32)
    line = np.zeros((1, 28, 28), np.float32)
    line[0, 14, :] = 1.0  # one row of ink: no vertical spread, the shear is bounded
    out = _run(layer, np.concatenate([blank, line]))
    assert np.isfinite(out).all() and out[0].sum() == 0


def test_litert_export_runs_it_like_keras(tmp_path, layer, mnist_test):
    import keras

    from cbir.encoder import Encoder

    model = keras.Sequential([keras.Input((28, 28, 1)), layer, keras.layers.Flatten()])
    path = tmp_path / "deskew.keras"
    model.save(path)
    from cbir.modelfiles import export_model, load_keras

    export_model(path)
    assert load_keras(path).layers[0].__class__.__name__ == "Deskew"  # the custom layer loads in safe mode
    x = mnist_test.images[:64]
    assert np.abs(Encoder(path).encode(x) - _run(layer, x / 255.0).reshape(64, -1)).max() < 1e-4
