"""The README's example session, with the packaged default encoder (dae-umap) on the full MNIST training set."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cbir.cli import app

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture(scope="module")
def full_home(tmp_path_factory, mnist_dir):
    home = tmp_path_factory.mktemp("readme-home")
    env = {"CBIR_HOME": str(home), "CBIR_DATA_DIR": str(mnist_dir), "CBIR_MODEL": None, "CBIR_QDRANT_URL": None,
           "CBIR_ENCODER": None, "CBIR_COLLECTION": None, "CBIR_DATASET": None}
    result = runner.invoke(app, ["ingest", "run"], env=env)
    assert result.exit_code == 0, result.output
    assert re.match(r"ingested 60000 points in [\d.]+ s \(\d+ points/s; encode [\d.]+ s, upsert [\d.]+ s, index [\d.]+ s\): "
                    r"added 60000, updated 0, removed 0, unchanged 0; collection 'cbir-mnist-dae-umap' now holds 60000 points",
                    result.output), result.output
    return env


def test_the_drawn_three_finds_threes(full_home):
    result = runner.invoke(app, ["search", str(REPO / "examples" / "digit.png"), "--json"], env=full_home)
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)["results"]
    assert len(hits) == 10 and all(h["label"] == 3 for h in hits)
    # The README shows this exact answer for the packaged default encoder.
    assert hits[0]["id"] == 1000050213 and hits[0]["distance"] == pytest.approx(0.0683, abs=1e-3)


def test_the_transparent_seven_finds_sevens(full_home):
    result = runner.invoke(app, ["search", str(REPO / "examples" / "seven-transparent.png"), "--json", "-k", "5"], env=full_home)
    assert all(h["label"] == 7 for h in json.loads(result.output)["results"])


def test_eval_on_a_sample_is_in_the_default_encoders_range(full_home):
    result = runner.invoke(app, ["eval", "run", "--queries", "100", "--json"], env=full_home)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["database_size"] == 60000 and summary["n_queries"] == 100
    # All 10,000 queries give LRAP 0.973 and P@10 0.979 (README); 100 of them stay close.
    assert summary["lrap"] > 0.93 and summary["p@10"] > 0.95
