"""Shared fixtures: the real MNIST files, a tiny really-trained model, isolated settings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cbir import datasets
from cbir.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def require_optional(available: bool, reason: str) -> None:
    """Skip a test that needs an optional system piece, unless CBIR_REQUIRE_OPTIONAL=1 (CI) makes it a failure."""
    if available:
        return
    if os.environ.get("CBIR_REQUIRE_OPTIONAL", "").strip() not in ("", "0"):
        pytest.fail(f"{reason} (CBIR_REQUIRE_OPTIONAL=1: optional pieces are required here)")
    pytest.skip(reason)


def _mnist_dir() -> Path:
    env = os.environ.get("CBIR_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data" / "mnist"
    if not (path / "train-images-idx3-ubyte.gz").exists() and not (path / "train-images-idx3-ubyte").exists():
        pytest.fail(f"MNIST IDX files not found in {path}; set CBIR_DATA_DIR to the folder that holds them")
    return path.resolve()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder with the four real MNIST IDX files."""
    return _mnist_dir()


@pytest.fixture(scope="session")
def mnist_test(mnist_dir) -> datasets.Split:
    return datasets.load_split("mnist", "test", mnist_dir)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, mnist_dir) -> Path:
    """A real training run, kept small: 1 epoch on 3000 MNIST images."""
    from ingest.encoders.dae import TrainConfig
    from ingest.train import train_and_save

    home = tmp_path_factory.mktemp("model-home")
    settings = Settings(home=home, data_dir=mnist_dir, encoder="dae")
    path, _ = train_and_save(settings, TrainConfig(epochs=1, train_size=3000), verbose=0)
    return path


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model):
    from cbir.encoder import Encoder

    return Encoder(tiny_model)


@pytest.fixture
def env(monkeypatch, tmp_path, mnist_dir):
    """A clean CBIR_* environment pointing at a fresh home and the real MNIST files."""
    for name in list(os.environ):
        if name.startswith("CBIR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CBIR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CBIR_DATA_DIR", str(mnist_dir))
    return tmp_path


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def digit_png(tmp_path, mnist_test):
    """A test-set "7", drawn dark on light and enlarged, as a person would save it."""
    path = tmp_path / "seven.png"
    Image.fromarray(255 - mnist_test.images[0]).resize((140, 140)).save(path)
    return path


@pytest.fixture
def ingested(env, tiny_model, monkeypatch):
    """An embedded collection ('small') of the first 2000 training images, built by the tiny model."""
    monkeypatch.setenv("CBIR_ENCODER", "dae")
    monkeypatch.setenv("CBIR_MODEL", str(tiny_model))
    monkeypatch.setenv("CBIR_COLLECTION", "small")
    from ingest.cli import app as ingest_app
    from tests.cli_helpers import invoke

    result = invoke(ingest_app, ["run", "--limit", "2000"])
    assert result.exit_code == 0, result.output
    return result
