import functools
import gzip
import http.server
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cbir import datasets
from cbir.errors import CbirError
from tests.conftest import require_optional
from tests.test_idx import idx_bytes

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_real_mnist_loads_with_the_published_checksums(mnist_dir):
    train = datasets.load_split("mnist", "train", mnist_dir)
    test = datasets.load_split("mnist", "test", mnist_dir)
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 28, 28)
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]  # MNIST's well-known first labels
    assert test.labels[:3].tolist() == [7, 2, 1]
    assert {**train.md5, **test.md5} == datasets.DATASETS["mnist"].md5


def test_uncompressed_files_work_too(tmp_path, mnist_dir):
    for f in mnist_dir.glob("*-ubyte.gz"):
        (tmp_path / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
    split = datasets.load("mnist", "test", tmp_path, tmp_path / "cache")
    assert len(split) == 10000


def test_data_dir_may_hold_one_subfolder_per_dataset(tmp_path, mnist_dir):
    shutil.copytree(mnist_dir, tmp_path / "mnist")
    assert datasets.locate("mnist", tmp_path, tmp_path / "cache") == tmp_path / "mnist"


def test_missing_data_dir_and_missing_files_are_clear(tmp_path):
    with pytest.raises(CbirError, match="does not exist"):
        datasets.locate("mnist", tmp_path / "nowhere", tmp_path)
    with pytest.raises(CbirError, match="lacks train-images"):
        datasets.locate("mnist", tmp_path, tmp_path / "cache")


def test_wrong_count_is_refused(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((5, 28, 28), np.uint8)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(CbirError, match="has 5 items, expected 10000"):
        datasets.load_split("mnist", "test", tmp_path)


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    with pytest.raises(CbirError, match="mnist, fashion-mnist"):
        datasets.locate("cifar", None, tmp_path)


def test_offline_without_data_dir_says_how_to_point_at_files(tmp_path, monkeypatch):
    # Port 9 (discard) on loopback refuses the connection: a machine without the internet.
    spec = replace(datasets.DATASETS["mnist"], mirrors=("http://127.0.0.1:9/",))
    monkeypatch.setitem(datasets.DATASETS, "mnist", spec)
    with pytest.raises(CbirError, match="--data-dir DIR or set CBIR_DATA_DIR"):
        datasets.load("mnist", "test", None, tmp_path)


@pytest.fixture
def mirror(mnist_dir):
    """A real HTTP server on loopback serving the MNIST files, as the public mirrors do."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mnist_dir))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_verifies_checksums_and_caches(tmp_path, monkeypatch, mirror):
    spec = replace(datasets.DATASETS["mnist"], mirrors=("http://127.0.0.1:9/", mirror))
    monkeypatch.setitem(datasets.DATASETS, "mnist", spec)
    split = datasets.load("mnist", "test", None, tmp_path)
    assert len(split) == 10000
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(
        f"{stem}.gz" for stem in spec.md5
    )


def test_download_with_wrong_checksum_is_refused(tmp_path, monkeypatch, mirror):
    bad = dict(datasets.DATASETS["mnist"].md5, **{"train-images-idx3-ubyte": "0" * 32})
    spec = replace(datasets.DATASETS["mnist"], mirrors=(mirror,), md5=bad)
    monkeypatch.setitem(datasets.DATASETS, "mnist", spec)
    with pytest.raises(CbirError, match="md5"):
        datasets.load("mnist", "train", None, tmp_path)
    assert not (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").exists()


def test_fashion_mnist_found_where_debian_installs_it(tmp_path):
    require_optional(FASHION.is_dir(), "Fashion-MNIST not found: install Debian's dataset-fashion-mnist (.ci/run does)")
    split = datasets.load("fashion-mnist", "test", None, tmp_path)
    assert len(split) == 10000 and split.md5 == {
        k: v for k, v in datasets.DATASETS["fashion-mnist"].md5.items() if k.startswith("t10k")
    }


def test_a_data_dir_holding_mnist_is_not_taken_for_fashion_mnist(tmp_path, mnist_dir):
    """CBIR_DATA_DIR=.../mnist with --dataset fashion-mnist once trained on MNIST, silently."""
    require_optional(FASHION.is_dir(), "Fashion-MNIST not found: install Debian's dataset-fashion-mnist (.ci/run does)")
    assert datasets.identify(mnist_dir) == "mnist"
    assert datasets.locate("mnist", mnist_dir, tmp_path) == mnist_dir
    folder = datasets.locate("fashion-mnist", mnist_dir, tmp_path, download=False)
    assert folder == FASHION and datasets.identify(folder) == "fashion-mnist"
    split = datasets.load("fashion-mnist", "test", mnist_dir, tmp_path)
    assert split.md5["t10k-labels-idx1-ubyte"] == datasets.DATASETS["fashion-mnist"].md5["t10k-labels-idx1-ubyte"]


def test_a_data_dir_of_ones_own_idx_files_is_used_as_given(tmp_path):
    images = np.zeros((60000, 28, 28), np.uint8)
    for stem, arr in {"train-images-idx3-ubyte": images, "train-labels-idx1-ubyte": np.zeros(60000, np.uint8),
                      "t10k-images-idx3-ubyte": images[:10000], "t10k-labels-idx1-ubyte": np.zeros(10000, np.uint8)}.items():
        (tmp_path / stem).write_bytes(idx_bytes(arr))
    assert datasets.identify(tmp_path) is None
    assert datasets.locate("fashion-mnist", tmp_path, tmp_path / "cache") == tmp_path
