"""What a newcomer trips over in the first hour: hints that work when pasted, writes only where asked,
collections and models managed by commands, versions, progress, honest timings, readable charts."""

import hashlib
import json
import os
import pty
import re
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cbir.cli import app as cbir_app
from ingest.cli import app as ingest_app
from search.cli import app as search_app
from tests.cli_helpers import invoke, one_line_error, run_cli

REPO = Path(__file__).resolve().parent.parent


def pasted(line: str) -> list[str]:
    """The command a message advises, as the user would paste it (the last one in backquotes)."""
    return shlex.split(re.findall(r"`([^`]+)`", line)[-1])


def run_pasted(argv: list[str]):
    app = {"ingest": ingest_app, "search": search_app, "cbir": cbir_app}[argv[0]]
    return invoke(app, argv[1:])


# --- advice that works when followed literally ----------------------------------------------------

def test_a_model_mismatch_on_another_encoder_advises_a_command_that_fixes_it(env, digit_png):
    assert invoke(ingest_app, ["run", "-e", "pca", "--limit", "400"]).exit_code == 0
    trained = invoke(ingest_app, ["train", "-e", "pca", "--train-size", "1500"])
    assert trained.exit_code == 0, trained.output
    # Training said what to run next, with the user's flags.
    advice = trained.stdout.strip().splitlines()[-1]
    argv = pasted(advice)
    assert "was built by the previous model" in advice
    assert argv[argv.index("--encoder") + 1] == "pca" and argv[argv.index("--limit") + 1] == "400"
    collection = "cbir-mnist-pca-first400"
    line = one_line_error(invoke(search_app, [str(digit_png), "-e", "pca", "--collection", collection]), "was built by model")
    rebuild = [a for a in re.findall(r"`([^`]+)`", line) if a.startswith("ingest run")][0]
    use_old = [a for a in re.findall(r"`([^`]+)`", line) if a.startswith("--model")][0]
    # The other way out first: the model that built it, which is kept.
    assert invoke(search_app, [str(digit_png), "-e", "pca", "--collection", collection, *shlex.split(use_old)]).exit_code == 0
    fixed = run_pasted(shlex.split(rebuild))
    assert fixed.exit_code == 0, fixed.output
    assert f"collection '{collection}' now holds 400 points" in fixed.stdout
    assert invoke(search_app, [str(digit_png), "-e", "pca", "--collection", collection]).exit_code == 0


def test_a_missing_collection_advises_the_build_that_makes_it(env, digit_png):
    line = one_line_error(invoke(search_app, [str(digit_png), "-e", "pixels", "--collection", "mine"]), "does not exist yet")
    argv = pasted(line)
    assert argv[:2] == ["ingest", "run"] and "--encoder" in argv and "--collection" in argv and "--home" in argv
    assert run_pasted(argv + ["--limit", "200"]).exit_code == 0
    assert invoke(search_app, [str(digit_png), "-e", "pixels", "--collection", "mine"]).exit_code == 0


def test_a_model_names_its_encoder_and_so_its_collection(env, digit_png, tmp_path):
    trained = invoke(ingest_app, ["train", "-e", "pca", "--train-size", "1200", "--out", str(tmp_path / "my_pca.keras")])
    assert trained.exit_code == 0, trained.output
    line = one_line_error(invoke(search_app, [str(digit_png), "--model", str(tmp_path / "my_pca.keras")]), "does not exist yet")
    assert "'cbir-mnist-pca'" in line and "--encoder pca" in line  # not the default encoder's collection
    assert run_pasted(pasted(line) + ["--limit", "300"]).exit_code == 0
    assert invoke(search_app, [str(digit_png), "--model", str(tmp_path / "my_pca.keras"), "--collection",
                               "cbir-mnist-pca-first300"]).exit_code == 0


@pytest.mark.parametrize("encoder, extra", [("pixels", []), ("pca", ["--seed", "3", "--train-size", "1000"])])
def test_refitting_a_deterministic_encoder_gives_the_same_model_id(env, encoder, extra):
    ids = []
    for _ in range(2):
        result = invoke(ingest_app, ["train", "-e", encoder, *extra])
        assert result.exit_code == 0, result.output
        ids.append(re.search(r"model ([0-9a-f]{16})", result.stdout).group(1))
    assert ids[0] == ids[1]


# --- writes only where the user says ---------------------------------------------------------------

def _tree_state(root: Path) -> dict:
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def test_nothing_the_commands_do_writes_into_the_package_or_source_tree(env, digit_png, tmp_path):
    import cbir

    package = Path(cbir.__file__).parent
    before = {**_tree_state(package), **_tree_state(REPO / "search"), **_tree_state(REPO / "ingest")}
    assert run_cli("ingest", "run", "-e", "pca", "--limit", "300", "--collection", "w").returncode == 0
    assert run_cli("search", digit_png, "-e", "pca", "--collection", "w").returncode == 0
    exported = run_cli("ingest", "export", "-e", "pca")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip() == f"wrote {env / 'home' / 'exports' / 'mnist' / 'pca.tflite'}"
    assert (env / "home" / "exports" / "mnist" / "pca.tflite").is_file()
    out = tmp_path / "given" / "pca.tflite"
    assert run_cli("ingest", "export", "-e", "pca", "--out", out).returncode == 0 and out.is_file()
    after = {**_tree_state(package), **_tree_state(REPO / "search"), **_tree_state(REPO / "ingest")}
    assert before == after


# --- managing collections and models ---------------------------------------------------------------

@pytest.mark.parametrize("server", [False, True])
def test_collections_list_info_and_drop(env, monkeypatch, server):
    if server:
        monkeypatch.setenv("CBIR_QDRANT_URL", ":memory:")  # qdrant-client's engine, one per process
    assert invoke(ingest_app, ["run", "-e", "pca", "--limit", "300", "--collection", "one"]).exit_code == 0
    assert invoke(ingest_app, ["run", "-e", "pixels", "--limit", "200", "--collection", "two"]).exit_code == 0
    listed = json.loads(invoke(cbir_app, ["collections", "list", "--json"]).stdout)
    rows = {r["name"]: r for r in listed}
    assert set(rows) >= {"one", "two"}
    assert (rows["one"]["points"], rows["one"]["encoder"], rows["one"]["dataset"], rows["one"]["complete"]) == (300, "pca", "mnist", True)
    assert len(rows["one"]["model_id"]) == 16
    assert (rows["one"]["size_bytes"] or 0) > 0 if not server else rows["one"]["size_bytes"] is None
    table = invoke(cbir_app, ["collections", "list"]).stdout
    assert re.search(r"^one\s+300\s+pca\s+mnist\s+[0-9a-f]{16}\s+yes", table, re.M), table
    info = invoke(cbir_app, ["collections", "info", "two"])
    assert info.exit_code == 0 and "points       200" in info.stdout and "match signal calibrated on 1000 mnist test images" in info.stdout
    one_line_error(invoke(cbir_app, ["collections", "info", "three"]), "does not exist")
    # Without a terminal to ask on, a drop needs --yes; with it, the collection is gone.
    one_line_error(invoke(cbir_app, ["collections", "drop", "two"]), "add --yes")
    dropped = invoke(cbir_app, ["collections", "drop", "two", "--yes"])
    assert dropped.exit_code == 0 and dropped.stdout.strip() == "dropped collection 'two'"
    assert "two" not in {r["name"] for r in json.loads(invoke(cbir_app, ["collections", "list", "--json"]).stdout)}


def _in_terminal(argv: list[str], answer: bytes | None, timeout: float = 120) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as its stdin/stdout/stderr (it sees a person), answering a prompt."""
    import fcntl
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.execvp(argv[0], argv)
    # A new pty is 0 columns wide, where progress bars draw nothing: give it a real terminal's size.
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    output, deadline, answered = b"", time.monotonic() + timeout, answer is None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            if not answered and b"?" in output:
                os.write(fd, answer)
                answered = True
        elif os.waitpid(pid, os.WNOHANG) != (0, 0):
            break
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def _cli(tool: str) -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.argv[0] = {tool!r}; from cbir.entry import {tool} as m; m()"]


def test_drop_asks_a_person_first(env):
    assert run_cli("ingest", "run", "-e", "pixels", "--limit", "100", "--collection", "asked").returncode == 0
    code, shown = _in_terminal(_cli("cbir") + ["collections", "drop", "asked"], b"n\n")
    assert code == 1 and "drop collection 'asked' (100 points)?" in shown and "nothing was dropped" in shown
    code, shown = _in_terminal(_cli("cbir") + ["collections", "drop", "asked"], b"y\n")
    assert code == 0 and "dropped collection 'asked'" in shown


def test_models_list_and_a_way_back_to_the_packaged_model(env):
    assert invoke(ingest_app, ["train", "-e", "pca", "--train-size", "1000"]).exit_code == 0
    assert invoke(ingest_app, ["run", "-e", "pca", "--limit", "100", "--collection", "c"]).exit_code == 0
    rows = json.loads(invoke(cbir_app, ["models", "list", "--json"]).stdout)
    trained = [r for r in rows if r["scope"] == "mnist" and r["encoder"] == "pca" and not r["packaged"]]
    packaged = [r for r in rows if r["scope"] == "mnist" and r["encoder"] == "pca" and r["packaged"]]
    assert len(trained) == 1 and trained[0]["current"] and trained[0]["built"] == ["c"] and trained[0]["created"]
    assert len(packaged) == 1 and not packaged[0]["current"]
    assert any(r["scope"] == "fashion-mnist" and r["encoder"] == "dae-umap" and r["packaged"] for r in rows)
    removed = invoke(cbir_app, ["models", "remove", "-e", "pca"])
    assert removed.exit_code == 0 and "packaged one again" in removed.stdout
    after = json.loads(invoke(cbir_app, ["models", "list", "--json"]).stdout)
    assert [r["current"] for r in after if r["scope"] == "mnist" and r["encoder"] == "pca"] == [True]
    one_line_error(invoke(cbir_app, ["models", "remove", "-e", "pca"]), "no trained pca model")


@pytest.mark.parametrize("tool", ["cbir", "ingest", "search"])
def test_version(tool):
    from cbir import __version__

    result = run_cli(tool, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"cbir {__version__}"


def test_the_version_is_in_every_provenance_and_report(ingested, env, tmp_path):
    from cbir import __version__

    assert invoke(ingest_app, ["train", "-e", "pca", "--train-size", "900", "--out", str(tmp_path / "p.keras")]).exit_code == 0
    assert json.loads((tmp_path / "p.json").read_text())["cbir_version"] == __version__
    result = invoke(cbir_app, ["eval", "run", "--queries", "20", "--json"])
    assert json.loads(result.stdout.strip().splitlines()[-1])["cbir_version"] == __version__


# --- progress and honest timings -------------------------------------------------------------------

def test_training_shows_progress_to_a_person_and_quiet_silences_it(env):
    code, shown = _in_terminal(_cli("ingest") + ["train", "-e", "dae", "--epochs", "2", "--train-size", "600",
                                                 "--out", str(env / "d.keras")], None, timeout=300)
    assert code == 0, shown
    assert "dae: epoch 1/2" in shown and "dae: epoch 2/2" in shown
    code, shown = _in_terminal(_cli("ingest") + ["train", "-e", "dae", "--epochs", "2", "--train-size", "600",
                                                 "--out", str(env / "d2.keras"), "--quiet"], None, timeout=300)
    assert code == 0 and "epoch" not in shown and shown.strip().startswith("saved ")


@pytest.mark.parametrize("argv", [["ingest", "run", "--limit", "3000", "--collection", "q3000"],
                                  ["cbir", "eval", "compare", "--encoders", "pixels", "--limit", "1500", "--queries", "20"]])
def test_ingest_and_compare_show_progress_and_quiet_silences_it(env, tiny_model, argv):
    code, shown = _in_terminal(_cli(argv[0]) + argv[1:], None, timeout=300)
    assert code == 0, shown
    assert "it/s" in shown or "img/s" in shown or "points/s]" in shown, shown  # a progress bar, drawn on the terminal
    code, quiet = _in_terminal(_cli(argv[0]) + argv[1:] + ["--quiet"], None, timeout=300)
    assert code == 0, quiet
    assert "it/s" not in quiet and "/s]" not in quiet and "%|" not in quiet, quiet


def test_eval_reports_the_time_the_user_waited_and_shows_the_pictures_progress(ingested, env, tmp_path):
    started = time.monotonic()
    code, shown = _in_terminal(_cli("cbir") + ["eval", "run", "--queries", "60", "--out", str(tmp_path / "r")], None, timeout=300)
    waited = time.monotonic() - started
    assert code == 0, shown
    assert "picture 1/5" in shown and "picture 5/5" in shown
    summary = json.loads((tmp_path / "r" / "eval.json").read_text())
    # The total covers loading, ranking and the pictures: all but the interpreter's own start-up.
    assert summary["seconds"] <= summary["total_seconds"] <= waited and summary["total_seconds"] >= waited - 10
    assert f"{summary['total_seconds']} s in all" in shown


# --- output and pictures ---------------------------------------------------------------------------

def test_chart_axes_show_the_variation():
    from eval.figures import _ylim

    lo, hi = _ylim([0.962, 0.97, 0.981])
    assert 0.9 < lo < 0.962 and 0.981 < hi < 1.01  # not 0 to 1, where the curve would be flat
    assert _ylim([0.3, 0.9])[0] < 0.3


def test_the_lrap_by_size_chart_has_the_seed_and_pixels_beside_the_default(env, tmp_path):
    for encoder in ("dae-umap", "dae", "pixels"):
        assert invoke(ingest_app, ["run", "-e", encoder, "--limit", "500", "--collection", f"cbir-mnist-{encoder}"]).exit_code == 0
    from cbir.encoders import with_encoder
    from cbir.settings import Settings
    from eval.cli import other_curves
    from eval.runner import evaluate

    settings, encoder = with_encoder(Settings.from_env())
    report = evaluate(settings, encoder, 50, 0, progress=False)
    curves = other_curves(settings, report, 0, lambda line: None)
    assert set(curves) == {"dae", "pixels"} and all(500 in c for c in curves.values())
    assert curves["pixels"][500] < report.size_curve[500]  # the comparison the tutorial's figure makes


def test_installing_prints_no_setuptools_warnings_about_the_model_folders(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(REPO)],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and "Could not find a version" in result.stdout + result.stderr:
        pytest.skip("no package index to fetch setuptools from")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cbir.models" not in result.stdout + result.stderr and "Package would be ignored" not in result.stdout + result.stderr


def test_the_editable_install_make_runs_prints_no_setuptools_warning(tmp_path):
    """`make install` is `pip install -e`: with the packages side by side in the root it is one quiet .pth file."""
    target = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True, timeout=120)
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install", "--no-deps",
                             "-e", str(REPO)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and "Could not find a version" in result.stdout + result.stderr:
        pytest.skip("no package index to fetch setuptools from")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-2000:]
    assert "Warning" not in output and "Please be careful" not in output, output[-2000:]
    pth = list((target / "lib").glob("python*/site-packages/__editable__.cbir-*.pth"))
    assert len(pth) == 1 and pth[0].read_text().strip() == str(REPO)
