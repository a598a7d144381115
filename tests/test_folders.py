"""A folder of the user's own images: index it, train on it, search it, evaluate it, keep it up to date.

The folder is written here from scikit-learn's UCI handwritten digits (8x8, real data nobody here
made), one subfolder per class, with train/ and test/ beside each other.
"""

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cbir.cli import app as cbir_app
from ingest.cli import app as ingest_app
from search.cli import app as search_app
from tests.cli_helpers import invoke, one_line_error


def write_uci_digits(root: Path, per_class: int | None = None) -> tuple[Path, Path]:
    """scikit-learn's 1797 UCI digits as PNG files: root/train/<digit>/NNNN.png and a fifth in root/test/."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    counts: dict = {}
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        counts[label] = counts.get(label, 0) + 1
        if per_class is not None and counts[label] > per_class:
            continue
        split = "test" if i % 5 == 0 else "train"
        folder = root / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 16).clip(0, 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    return root / "train", root / "test"


@pytest.fixture
def glyphs(env, tmp_path):
    train, test = write_uci_digits(tmp_path / "glyphs", per_class=40)
    return train, test


def _summary(result) -> str:
    return result.stdout.strip().splitlines()[-1]


def test_the_whole_user_story_on_a_folder(glyphs, env):
    train, test = glyphs
    n = sum(1 for _ in train.rglob("*.png"))
    # Fit the default encoder on the folder: no labels are read, and it says what it chose for the folder's size.
    fitted = invoke(ingest_app, ["train", "--images", str(train), "--collection", "glyphs", "--epochs", "3"])
    assert fitted.exit_code == 0, fitted.output
    models = env / "home" / "models" / "glyphs" / "dae-umap"
    current = json.loads((models / "CURRENT").read_text())["model_id"]
    provenance = json.loads((models / current / "dae-umap.json").read_text())
    assert provenance["labels_used"] is False and provenance["images_folder"] == str(train) and provenance["files"] == n
    assert len(provenance["listing_sha256"]) == 64 and "chosen for its size" in fitted.stderr

    # Index every image under the folder.
    built = invoke(ingest_app, ["run", "--images", str(train), "--collection", "glyphs"])
    assert built.exit_code == 0, built.output
    assert f"added {n}, updated 0, removed 0, unchanged 0; collection 'glyphs' now holds {n} points" in _summary(built)

    # Search with only --collection: the collection knows its encoder and its folder; results show path and label.
    query = next((test / "3").glob("*.png"))
    found = invoke(search_app, [str(query), "--collection", "glyphs", "--json", "-k", "5"])
    assert found.exit_code == 0, found.output
    results = json.loads(found.stdout)["results"]
    assert all(set(r) >= {"rank", "id", "label", "distance", "path"} for r in results)
    assert [r["label"] for r in results].count("3") >= 3 and all(r["path"].startswith(r["label"] + "/") for r in results)
    table = invoke(search_app, [str(query), "--collection", "glyphs", "-k", "2"]).stdout.splitlines()
    assert table[2].split()[-1] == "path" and table[3].split()[-1].startswith(results[0]["label"] + "/")
    grid = invoke(search_app, [str(query), "--collection", "glyphs", "-k", "3", "--grid", str(env / "g.png")])
    assert grid.exit_code == 0, grid.output  # the stored images, read back from their files
    # A label filter names the folder's labels as they are stored (text): never an empty answer with success.
    only = json.loads(invoke(search_app, [str(query), "--collection", "glyphs", "--json", "-k", "4", "--label", "5"]).stdout)
    assert len(only["results"]) == 4 and {r["label"] for r in only["results"]} == {"5"}
    one_line_error(invoke(search_app, [str(query), "--collection", "glyphs", "--label", "12"]), "unknown --label 12", "holds the labels 0, 1")
    # A stored point as the query, drawn from its file in the grid.
    by_id = invoke(search_app, ["--id", results[0]["id"], "--collection", "glyphs", "-k", "3", "--grid", str(env / "g2.png")])
    assert by_id.exit_code == 0, by_id.output

    # Evaluate with the folder's labels: a labelled folder of queries, or a held-out fifth.
    report = invoke(cbir_app, ["eval", "run", "--collection", "glyphs", "--queries-dir", str(test), "--json", "--out",
                               str(env / "report")])
    assert report.exit_code == 0, report.output
    summary = json.loads(report.stdout.strip().splitlines()[-1])
    assert summary["database_size"] == n and summary["n_queries"] == sum(1 for _ in test.rglob("*.png"))
    assert set(summary["per_class_lrap"]) == {str(d) for d in range(10)} and summary["lrap"] > 0.3
    held = json.loads(invoke(cbir_app, ["eval", "run", "--collection", "glyphs", "--holdout", "0.2", "--json"]).stdout)
    assert held["database_size"] + held["n_queries"] == n and abs(held["n_queries"] - 0.2 * n) <= 10

    # Again later: only what changed is re-encoded.
    again = invoke(ingest_app, ["run", "--images", str(train), "--collection", "glyphs"])
    assert again.exit_code == 0 and f"is up to date: {n} points, unchanged {n}" in _summary(again)
    edited = next((train / "7").glob("*.png"))
    Image.fromarray(np.full((8, 8), 255, np.uint8)[:, ::-1] * np.eye(8, dtype=np.uint8)).save(edited)  # new content
    added = train / "7" / "new.png"
    shutil.copy(query, added)
    removed = next((train / "1").glob("*.png"))
    removed.unlink()
    touched = next((train / "2").glob("*.png"))
    os.utime(touched, (time.time() + 100, time.time() + 100))  # a new time, the same bytes: not re-encoded
    changed = invoke(ingest_app, ["run", "--images", str(train), "--collection", "glyphs"])
    assert changed.exit_code == 0, changed.output
    assert f"added 1, updated 1, removed 1, unchanged {n - 2}; collection 'glyphs' now holds {n} points" in _summary(changed)
    for _ in range(3):  # every reader finds the generation as it was published (a first open must not change it)
        result = invoke(search_app, [str(added), "--collection", "glyphs", "--json", "-k", "1"])
        assert result.exit_code == 0, result.output
        hits = json.loads(result.stdout)["results"]
        assert hits[0]["path"] == "7/new.png" and hits[0]["distance"] == pytest.approx(0, abs=1e-5)


def test_unreadable_files_are_skipped_and_counted_or_stop_with_strict(glyphs, env):
    train, _ = glyphs
    (train / "5" / "broken.png").write_text("not an image")
    (train / "notes.txt").write_text("not an image either, and not an image name")
    n = sum(1 for _ in train.rglob("*.png")) - 1
    result = invoke(ingest_app, ["run", "--images", str(train), "--collection", "g"])
    assert result.exit_code == 0, result.output
    assert f"now holds {n} points" in _summary(result)
    assert "skipped 1 file that could not be read" in result.stderr and "broken.png" in result.stderr
    strict = invoke(ingest_app, ["run", "--images", str(train), "--collection", "g2", "--strict"])
    assert strict.exit_code == 2 and "Traceback" not in strict.output
    last = strict.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "broken.png" in last and "--strict" in last


def test_ids_are_stable_uuids_of_the_collection_and_path():
    from cbir.sources.folder import point_id

    assert point_id("glyphs", "3/0001.png") == point_id("glyphs", "3/0001.png")
    assert point_id("glyphs", "3/0001.png") != point_id("other", "3/0001.png") != point_id("glyphs", "3/0002.png")
    import uuid

    assert uuid.UUID(point_id("glyphs", "3/0001.png")).version == 5


def test_labels_come_from_the_first_subfolder(tmp_path):
    from cbir.sources.folder import scan

    for rel in ("cats/a.png", "cats/deep/b.jpg", "dogs/c.webp", "root.png", "cats/readme.txt"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    entries, others = scan(tmp_path)
    assert [(e.rel, e.label) for e in entries] == [("cats/a.png", "cats"), ("cats/deep/b.jpg", "cats"),
                                                   ("dogs/c.webp", "dogs"), ("root.png", None)]
    assert others == 1


def test_folder_commands_need_a_collection_and_a_folder(env, tmp_path):
    one_line_error(invoke(ingest_app, ["run", "--images", str(tmp_path)]), "--images needs --collection")
    one_line_error(invoke(ingest_app, ["run", "--images", str(tmp_path / "none"), "--collection", "x"]), "no such folder")
    (tmp_path / "empty").mkdir()
    one_line_error(invoke(ingest_app, ["run", "--images", str(tmp_path / "empty"), "--collection", "x"]), "holds no image files")


def test_compare_encoders_on_a_folder(glyphs, env):
    train, test = glyphs
    assert invoke(ingest_app, ["run", "--images", str(train), "--collection", "glyphs"]).exit_code == 0
    result = invoke(cbir_app, ["eval", "compare", "--collection", "glyphs", "--encoders", "pixels,pca",
                               "--queries-dir", str(test), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert [r["encoder"] for r in rows] == ["pixels", "pca"] and all(0 < r["lrap"] <= 1 for r in rows)
    assert [r["collection"] for r in rows] == ["glyphs-pixels", "glyphs-pca"]


def test_a_folder_says_when_its_encoder_is_untrained_but_not_for_pixels(glyphs, env):
    train, _ = glyphs
    untrained = invoke(ingest_app, ["run", "--images", str(train), "--collection", "dflt"])
    assert untrained.exit_code == 0 and "no dae-umap encoder trained on this folder yet" in untrained.stderr
    pixels = invoke(ingest_app, ["run", "--images", str(train), "--collection", "px", "--encoder", "pixels"])
    assert pixels.exit_code == 0 and "trained on this folder" not in pixels.stderr  # pixels has nothing to learn
