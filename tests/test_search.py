"""`search` on batches and folders, stored points as queries, and the match signal."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.cli import app as search_app
from tests.cli_helpers import invoke, one_line_error


def _copies(folder: Path, digit_png: Path, n: int, prefix: str = "q") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{prefix}{i:04d}.png"
        path.write_bytes(digit_png.read_bytes())
        paths.append(path)
    return paths


def test_one_bad_file_does_not_stop_the_batch(ingested, digit_png, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    result = invoke(search_app, [str(digit_png), str(bad), str(digit_png), "--json", "-k", "2"])
    assert result.exit_code == 1  # some failed, as grep and ls say
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["query"] for o in objects] == [str(digit_png), str(bad), str(digit_png)]  # in order, the bad one in place
    assert objects[1] == {"query": str(bad), "error": f"{bad}: not an image file (or a format Pillow cannot read)"}
    assert len(objects[0]["results"]) == len(objects[2]["results"]) == 2
    assert result.stderr.strip().splitlines() == [f"error: {bad}: not an image file (or a format Pillow cannot read)"]


def test_a_batch_where_nothing_can_be_searched_exits_2(ingested, tmp_path):
    missing = tmp_path / "a.png"
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 50), 255).save(blank)
    result = invoke(search_app, [str(missing), str(blank)])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"error: {missing}: no such file"
    assert lines[1].startswith(f"error: {blank}: no ink found")  # the blank-image error names its file


def test_folders_subfolders_and_other_files(ingested, digit_png, tmp_path):
    root = tmp_path / "queries"
    _copies(root, digit_png, 2)
    _copies(root / "sub" / "deeper", digit_png, 3, prefix="deep")
    (root / "notes.txt").write_text("not an image")
    (root / "data.csv").write_text("1,2")
    flat = invoke(search_app, [str(root), "--json", "-k", "1"])
    assert flat.exit_code == 0, flat.output
    assert len(flat.stdout.splitlines()) == 2
    assert flat.stderr.strip() == "skipped 1 subfolder (add --recursive to search it) and 2 files that are not images"
    deep = invoke(search_app, [str(root), "--json", "-k", "1", "--recursive"])
    queries = [json.loads(line)["query"] for line in deep.stdout.splitlines()]
    assert len(queries) == 5 and sum("deeper" in q for q in queries) == 3
    assert deep.stderr.strip() == "skipped 2 files that are not images"


def test_a_folder_without_images_says_so_in_one_line(ingested, tmp_path):
    folder = tmp_path / "empty"
    (folder / "sub").mkdir(parents=True)
    (folder / "readme.txt").write_text("x")
    one_line_error(invoke(search_app, [str(folder)]), "holds no image files", "1 subfolder", "1 file that is not an image")


def test_large_folders_stream_in_batches(ingested, digit_png, tmp_path):
    from cbir.settings import Settings
    from search.query import iter_search

    paths = _copies(tmp_path / "many", digit_png, 600)
    seen = []
    results = iter_search(Settings.from_env(), paths, top_k=3, batch=256, progress=seen.append)
    first = next(results)
    assert seen == []  # the first answer comes before the rest of the folder is even read
    rest = list(results)
    assert seen == [256, 256, 88] and len(rest) == 599
    assert [r.query for r in [first] + rest] == [str(p) for p in paths]
    assert all(r.hits.ids.tolist() == first.hits.ids.tolist() for r in rest)


def test_a_stored_point_as_the_query(ingested):
    result = invoke(search_app, ["--id", "1000000007", "--id", "999", "--json", "-k", "4"])
    assert result.exit_code == 1
    found, unknown = [json.loads(line) for line in result.stdout.splitlines()]
    assert found["query"] == "id 1000000007" and len(found["results"]) == 4
    assert 1000000007 not in [r["id"] for r in found["results"]]  # its neighbours, not itself
    distances = [r["distance"] for r in found["results"]]
    assert distances == sorted(distances) and distances[0] > 0
    assert unknown == {"query": "id 999", "error": "id 999: no such point in collection 'small'"}


def test_the_grid_labels_each_row_with_the_querys_file_name(ingested, digit_png, tmp_path, monkeypatch):
    from cbir import render

    rows = []
    real_grid = render.grid
    monkeypatch.setattr(render, "grid", lambda r: rows.extend(r) or real_grid(r))
    other = tmp_path / "my-three.png"
    other.write_bytes(digit_png.read_bytes())
    result = invoke(search_app, [str(digit_png), str(other), "-k", "2", "--grid", str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    captions = [row[0][1].splitlines()[0] for row in rows]
    assert captions == [digit_png.name, "my-three.png"]
    assert all(len(row) == 3 for row in rows)


@pytest.fixture
def calibrated(env, monkeypatch):
    """A collection of 5000 training images with the packaged default encoder: a real calibration."""
    from ingest.cli import app as ingest_app

    monkeypatch.setenv("CBIR_COLLECTION", "five")
    result = invoke(ingest_app, ["run", "--limit", "5000"])
    assert result.exit_code == 0, result.output
    return env


def test_the_match_signal_is_calibrated_on_held_out_queries(calibrated, mnist_test, tmp_path):
    from cbir.settings import Settings
    from cbir.store import open_backend

    reader = open_backend(Settings.from_env()).reader("five")
    calibration = reader.meta.extra["calibration"]
    reader.close()
    assert calibration["n"] == 1000 and calibration["source"] == "1000 mnist test images"
    q = calibration["quantiles"]
    assert len(q) == 201 and q == sorted(q) and q[0] > 0
    # Test digits look like the collection; noise does not.
    digits = tmp_path / "digits"
    digits.mkdir()
    for i in range(1000, 1040):  # beyond the first ones; any test digit is a fair query
        Image.fromarray(255 - mnist_test.images[i]).resize((112, 112)).save(digits / f"d{i}.png")
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)).save(noise)
    grid = tmp_path / "grid.png"
    picture = Image.new("L", (200, 200), 255)
    from PIL import ImageDraw

    for i in range(0, 200, 25):  # a lattice of lines: strokes, but nothing like a digit
        ImageDraw.Draw(picture).line((i, 0, i, 200), fill=0, width=4)
        ImageDraw.Draw(picture).line((0, i, 200, i), fill=0, width=4)
    picture.save(grid)
    result = invoke(search_app, [str(digits), str(noise), str(grid), "--json", "-k", "3"])
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    levels = [o.get("match") for o in objects]
    assert levels[-1] == "none" and objects[-1]["score"] < 0.005
    # Noise: refused outright (nothing stands out of it), or at least not taken for a good match.
    assert "no ink found" in objects[-2].get("error", "") or levels[-2] != "good"
    assert levels[:-2].count("good") >= 34 and "none" not in levels[:-2]
    table = invoke(search_app, [str(grid)]).stdout.splitlines()
    assert table[1].startswith("match: none: no close match")


def test_a_solid_shape_is_no_close_match_however_near_it_lands(calibrated, mnist_test, tmp_path):
    """An encoder trained on digits places a photographed object next to some digit; its stroke gives it away."""
    from PIL import ImageDraw

    from cbir.settings import Settings
    from cbir.store import open_backend

    reader = open_backend(Settings.from_env()).reader("five")
    calibration = reader.meta.extra["calibration"]
    reader.close()
    strokes = calibration["stroke_quantiles"]
    assert len(strokes) == 201 and 1.5 < strokes[100] < 3.5  # MNIST's median pen, in 28x28 pixels
    blobs = []
    # Filled ellipses (a stone, an egg, a coin on a table), smaller than a quarter of the picture: a
    # bigger one is taken for the paper's shading and hollowed (see cbir.preprocess.steps.remove_background).
    for i, box in enumerate([(160, 150, 240, 250), (165, 165, 235, 235), (150, 175, 250, 225)]):
        picture = Image.new("L", (400, 400), 235)
        ImageDraw.Draw(picture).ellipse(box, fill=40)
        blobs.append(tmp_path / f"blob{i}.png")
        picture.save(blobs[-1])
    digits = []
    for i in range(2000, 2010):
        digits.append(tmp_path / f"d{i}.png")
        Image.fromarray(255 - mnist_test.images[i]).resize((140, 140)).save(digits[-1])
    result = invoke(search_app, [*map(str, blobs + digits), "--json", "-k", "3"])
    assert result.exit_code == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["match"] for o in objects[:3]] == ["none"] * 3
    assert all(o["score"] < 0.005 for o in objects[:3])
    assert "none" not in [o["match"] for o in objects[3:]]


def test_the_stroke_test_follows_the_collection(mnist_test):
    """Where the collection's own images are solid (clothes), a solid query is not flagged for it."""
    from cbir import match

    blob = np.zeros((28, 28), np.float32)
    blob[6:22, 8:20] = 1.0
    thin = match.calibrate(np.linspace(1, 2, 100), "digits", mnist_test.images[:500])
    solid = np.repeat(blob[None], 50, axis=0)
    wide = match.calibrate(np.linspace(1, 2, 100), "solid things", solid)
    assert match.level(1.2, thin, blob) == "none" and match.level(1.2, thin, mnist_test.images[900]) == "good"
    assert match.level(1.2, wide, blob) == "good"
    assert match.level(1.2, {"n": 100, "source": "old", "quantiles": thin["quantiles"]}, blob) == "good"  # no strokes kept: distance only
    assert match.stroke(np.zeros((28, 28), np.float32)) == 0.0
