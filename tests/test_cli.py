"""The commands as a user types them, through Typer's CliRunner."""

import json
import re

import pytest
from PIL import Image

from cbir.cli import app as cbir_app
from ingest.cli import app as ingest_app
from search.cli import app as search_app
from tests.cli_helpers import invoke, one_line_error

ENV_VARS = ("CBIR_HOME", "CBIR_DATA_DIR", "CBIR_QDRANT_URL", "CBIR_QDRANT_API_KEY", "CBIR_COLLECTION", "CBIR_ENCODER")


@pytest.mark.parametrize(
    "app, args, env_vars",
    [
        (ingest_app, ["run", "--help"], ENV_VARS),
        (ingest_app, ["train", "--help"], ("CBIR_HOME", "CBIR_DATA_DIR", "CBIR_ENCODER")),
        (cbir_app, ["eval", "compare", "--help"], ("CBIR_HOME", "CBIR_DATA_DIR", "CBIR_DATASET", "CBIR_QDRANT_URL")),
        (ingest_app, ["denoise", "--help"], ("CBIR_HOME", "CBIR_MODEL")),
        (search_app, ["--help"], ENV_VARS),
        (cbir_app, ["search", "--help"], ENV_VARS),
        (cbir_app, ["eval", "run", "--help"], ENV_VARS),
        (cbir_app, ["ingest", "run", "--help"], ENV_VARS),
    ],
)
def test_help_shows_the_settings_env_vars(app, args, env_vars):
    result = invoke(app, args)
    assert result.exit_code == 0, result.output
    for var in env_vars:
        assert var in result.output


def test_ingest_run_prints_one_summary_line(ingested):
    line = ingested.output.strip().splitlines()[-1]
    assert line.startswith("ingested 2000 points in ") and "points/s" in line
    assert "now holds 2000 points in embedded Qdrant Edge at" in line


def test_ingest_rerun_overwrites_instead_of_duplicating(ingested):
    again = invoke(ingest_app, ["run", "--limit", "2000"])
    assert again.exit_code == 0 and "'small' is up to date: 2000 points, unchanged 2000" in again.output
    more = invoke(ingest_app, ["run", "--limit", "2500"])
    assert "added 500, updated 0, removed 0, unchanged 2000" in more.output and "now holds 2500 points" in more.output


def test_search_prints_a_table_of_neighbours(ingested, digit_png):
    result = invoke(search_app, [str(digit_png), "--top-k", "5"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == f"query: {digit_png}"
    assert re.match(r"match: (good|weak|none)\b.*\(score [01]\.\d\d\)$", lines[1]), lines[1]
    assert lines[2].split() == ["rank", "id", "label", "distance"]
    rows = [line.split() for line in lines[3:]]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    distances = [float(r[3]) for r in rows]
    assert distances == sorted(distances)
    assert sum(r[2] == "7" for r in rows) >= 3  # a "7" finds mostly sevens, even with a weak model


def test_search_json_and_label_filter(ingested, digit_png, tmp_path):
    other = tmp_path / "other.png"
    digit_png.rename(other)
    result = invoke(cbir_app, ["search", str(other), str(other), "--json", "--label", "4", "-k", "3"])
    assert result.exit_code == 0, result.output
    objects = [json.loads(line) for line in result.output.strip().splitlines()]
    assert len(objects) == 2 and objects[0]["query"] == str(other)
    assert [r["rank"] for r in objects[0]["results"]] == [1, 2, 3]
    assert all(r["label"] == 4 and set(r) == {"rank", "id", "label", "distance"} for r in objects[0]["results"])
    assert objects[0]["match"] is None  # a filtered search has no match signal: its nearest is not any nearest


def test_search_grid_writes_a_picture(ingested, digit_png, tmp_path):
    out = tmp_path / "grid.png"
    result = invoke(search_app, [str(digit_png), "-k", "4", "--grid", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        assert img.width > img.height > 100  # one row: the query plus four results


def test_search_accepts_a_folder(ingested, digit_png):
    result = invoke(search_app, [str(digit_png.parent), "--json", "-k", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["query"] == str(digit_png)
    assert result.stderr.strip() == "skipped 1 subfolder (add --recursive to search it)"  # the test's CBIR_HOME


def test_eval_run_writes_json_and_markdown(ingested, tmp_path):
    out = tmp_path / "report"
    result = invoke(cbir_app, ["eval", "run", "--queries", "40", "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert {"lrap", "p@10", "map@100", "n_queries", "per_class_lrap"} <= set(summary)
    assert summary["n_queries"] == 40 and summary["database_size"] == 2000
    assert 0 < summary["lrap"] < 1
    assert json.loads((out / "eval.json").read_text())["lrap"] == summary["lrap"]
    md = (out / "eval.md").read_text()
    assert "| LRAP |" in md
    sizes = summary["lrap_by_database_size"]
    assert list(sizes) == ["10", "30", "100", "300", "1000", "2000"] and sizes["2000"] == pytest.approx(summary["lrap"], abs=1e-4)
    pictures = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", md)
    assert sorted(pictures) == ["embedding_map.png", "lrap_by_database_size.png", "per_class_lrap.png",
                                "precision_at_k.png", "top10_results.png"]
    for name in pictures:
        with Image.open(out / name) as img:
            img.verify()  # a real PNG a person can open
            assert img.format == "PNG" and img.width > 200


def test_denoise_writes_three_panels(env, tiny_model, digit_png, tmp_path):
    out = tmp_path / "fig.png"
    result = invoke(ingest_app, ["denoise", str(digit_png), "--out", str(out), "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        assert img.width > 3 * 100


def test_search_before_ingest_says_to_ingest(env, tiny_model, digit_png):
    result = invoke(search_app, [str(digit_png), "--model", str(tiny_model)])
    one_line_error(result, "does not exist yet", "ingest run")


def test_search_with_another_model_is_refused(ingested, digit_png, monkeypatch):
    monkeypatch.delenv("CBIR_MODEL")  # the packaged default, not the model that built the collection
    result = invoke(search_app, [str(digit_png)])
    one_line_error(result, "was built by model")


@pytest.mark.parametrize("name, content", [("missing.png", None), ("text.png", b"just text")])
def test_bad_query_files_get_one_line(env, tmp_path, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = invoke(search_app, [str(path)])
    one_line_error(result, str(path))


@pytest.mark.parametrize("value, fragment", [("many", "takes a number or 'all'"), ("0", "at least 1")])
def test_bad_eval_queries_value(env, value, fragment):
    one_line_error(invoke(cbir_app, ["eval", "run", "--queries", value]), "--queries", fragment)


def test_train_then_run_with_recreate(env, tiny_model, monkeypatch):
    monkeypatch.setenv("CBIR_ENCODER", "dae")
    monkeypatch.setenv("CBIR_MODEL", str(tiny_model))
    assert invoke(ingest_app, ["run", "--limit", "500"]).exit_code == 0
    monkeypatch.delenv("CBIR_MODEL")
    trained = invoke(ingest_app, ["train", "--epochs", "1", "--train-size", "1000"])
    assert trained.exit_code == 0, trained.output
    saved = trained.output.strip().splitlines()[-1]
    versions = env / "home" / "models" / "mnist" / "dae"
    assert re.match(rf"saved {versions}/([0-9a-f]{{16}})/dae.keras \(dae encoder, model \1, 128-d", saved), saved
    # The new model (now the default under CBIR_HOME) did not build the collection: refused...
    refused = invoke(ingest_app, ["run", "--limit", "500"])
    one_line_error(refused, "was built by model", "--recreate")
    # ...until the collection is rebuilt with it.
    rebuilt = invoke(ingest_app, ["run", "--limit", "500", "--recreate"])
    assert rebuilt.exit_code == 0 and "collection 'cbir-mnist-dae-first500' now holds 500 points" in rebuilt.output


def test_run_with_train_first_rebuilds_the_collection(ingested, env, tiny_model, digit_png, monkeypatch):
    before = tiny_model.read_bytes()
    result = invoke(ingest_app, ["run", "--train", "--epochs", "1", "--train-size", "500", "--limit", "200"])
    assert result.exit_code == 0, result.output
    versions = env / "home" / "models" / "mnist" / "dae"
    assert f"saved {versions}/" in result.output and "now holds 200 points" in result.output
    current = json.loads((versions / "CURRENT").read_text())["model_id"]  # made current once the collection was published
    assert f"saved {versions / current / 'dae.keras'}" in result.output
    assert tiny_model.read_bytes() == before  # --model / CBIR_MODEL is never overwritten
    monkeypatch.delenv("CBIR_MODEL")  # the model trained under CBIR_HOME is now the default
    assert invoke(search_app, [str(digit_png), "-k", "3"]).exit_code == 0


def test_search_never_imports_tensorflow_or_qdrant_client(ingested, digit_png, tiny_model):
    """Nor UMAP, numba, scikit-learn, matplotlib or the web stack: training, report and serving tools stay off the query path."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from search.cli import main\n"
        f"sys.argv = ['search', {str(digit_png)!r}, '-k', '3']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'qdrant_client', 'umap', 'numba', 'sklearn', 'matplotlib', 'fastapi', 'starlette', 'uvicorn'))\n"
        "print('HEAVY', heavy)\n"
    )
    env = {**os.environ, "CBIR_MODEL": str(tiny_model)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "rank" in out.stdout and "HEAVY []" in out.stdout
