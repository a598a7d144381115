"""`cbir eval compare`: one collection per encoder, one table, re-runs reuse what is built."""

import json

import pytest

from cbir.cli import app as cbir_app
from ingest.cli import app as ingest_app
from tests.cli_helpers import invoke, one_line_error


def test_compare_builds_a_collection_per_encoder_and_one_table(env, tmp_path):
    out = tmp_path / "cmp"
    args = ["eval", "compare", "--encoders", "pixels,pca", "--queries", "30", "--limit", "1500", "--out", str(out)]
    first = invoke(cbir_app, args)
    assert first.exit_code == 0, first.output
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["encoder"] for r in rows] == ["pixels", "pca"]
    # a part (--limit) has collections of its own: it never replaces a full one
    assert [r["collection"] for r in rows] == ["cbir-mnist-pixels-first1500", "cbir-mnist-pca-first1500"]
    assert [r["dim"] for r in rows] == [784, 32] and [r["vector_bytes"] for r in rows] == [3136, 128]
    for r in rows:
        assert r["database_size"] == 1500 and r["n_queries"] == 30 and r["ingested_now"]
        assert 0 < r["lrap"] < 1 and 0 < r["p_at_10"] <= 1 and r["query_p50_ms"] > 0 and r["encode_us_per_image"] > 0
    table = (out / "compare.md").read_text()
    assert "| encoder | LRAP | P@10 | mAP@100 | encode µs/image | query p50 ms | vector |" in table
    assert f"| pixels | {rows[0]['lrap']:.4f} |" in table and table in first.output + "\n"
    # Same scores as evaluating one encoder by hand.
    single = invoke(cbir_app, ["eval", "run", "--encoder", "pca", "--queries", "30", "--json",
                               "--collection", "cbir-mnist-pca-first1500"])
    assert json.loads(single.output.strip().splitlines()[-1])["lrap"] == rows[1]["lrap"]
    # A second run reuses the collections.
    again = invoke(cbir_app, args + ["--json"])
    assert again.exit_code == 0, again.output
    rerun = json.loads(again.output.strip().splitlines()[-1])
    assert [r["ingested_now"] for r in rerun] == [False, False]
    assert [r["lrap"] for r in rerun] == [r["lrap"] for r in rows]


def test_compare_refuses_an_unknown_encoder(env):
    one_line_error(invoke(cbir_app, ["eval", "compare", "--queries", "5", "--encoders", "pixels,umap"]), "unknown encoder 'umap'")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_compare_on_a_collection_needs_one_built_from_a_folder(env, monkeypatch, how):
    """--collection (or CBIR_COLLECTION) compares the encoders on a folder; a data set's collection or none is refused."""
    assert invoke(ingest_app, ["run", "-e", "pixels", "--limit", "200", "--collection", "mine"]).exit_code == 0
    for name in ("mine", "absent"):
        argv = ["eval", "compare", "--encoders", "pixels", "--queries", "5"]
        if how == "flag":
            argv += ["--collection", name]
        else:
            monkeypatch.setenv("CBIR_COLLECTION", name)
        one_line_error(invoke(cbir_app, argv), "needs a collection built from a folder", f"'{name}'", "ingest run --images")
