"""A store that is safe to share: real processes on a real store, killed, raced and attacked.

Nothing is written or deleted outside CBIR_HOME (canary folders beside it prove it); a rebuild
killed at any moment leaves the old collection answering with all its points; any number of
readers run at once, writers take turns, and whoever waits too long is told who holds the store.
"""

import hashlib
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cbir.settings import Settings
from cbir.store import open_backend
from tests.cli_helpers import one_line_stderr, run_cli, start_cli

N = 2000


@pytest.fixture
def world(tmp_path, mnist_dir, tiny_model):
    """A CBIR_HOME with collection 'c' (the first 2000 images, tiny model), and canary folders beside it."""
    home = tmp_path / "home"
    env = {"CBIR_HOME": str(home), "CBIR_DATA_DIR": str(mnist_dir), "CBIR_MODEL": str(tiny_model),
           "CBIR_ENCODER": "dae", "CBIR_COLLECTION": "c", "CBIR_QDRANT_URL": "", "CBIR_DATASET": "", "CBIR_WAIT": ""}
    for name in ("canary", "qdrant-canary"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "keep.txt").write_text("do not touch")
    (tmp_path / "canary" / "shard").mkdir()  # looks like a store's folder: a careless delete would take it
    built = run_cli("ingest", "run", "--limit", N, env=env)
    assert built.returncode == 0, built.stderr
    return {"home": home, "env": env, "root": tmp_path, "tiny_model": tiny_model}


def outside_home(world) -> dict:
    """Every file beside CBIR_HOME, with a hash of its contents."""
    out = {}
    for path in sorted(world["root"].rglob("*")):
        if world["home"] in path.parents or path == world["home"] or not path.is_file() or path.is_symlink():
            continue
        out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def collection_dir(world, name="c") -> Path:
    return world["home"] / "qdrant" / name


def current_generation(world, name="c") -> str:
    return json.loads((collection_dir(world, name) / "CURRENT").read_text())["generation"]


def generations(world, name="c") -> list[str]:
    folder = collection_dir(world, name)
    return sorted(p.name for p in folder.iterdir() if re.match(r"^g-[0-9a-f-]+$", p.name)) if folder.is_dir() else []


def count_points(world, name="c") -> tuple[int, str]:
    backend = open_backend(Settings(home=world["home"], wait=30))
    reader = backend.reader(name)
    try:
        return reader.count(), reader.generation
    finally:
        reader.close()


def search_ok(world, digit_png, *extra) -> dict:
    proc = run_cli("search", digit_png, "--json", "-k", "5", *extra, env=world["env"])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[0])


def points_of(world) -> int:
    proc = run_cli("cbir", "collections", "info", "c", "--json", env=world["env"])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["points"]


def advised(line: str) -> list[str]:
    """The command a message advises, as argv (`ingest run --recreate ...`)."""
    command = re.findall(r"`([^`]+)`", line)[-1]
    return shlex.split(command)


# --- 1. names and paths -------------------------------------------------------------------------

BAD_NAMES = ["../canary", "../../canary", "..", ".", "a/b", "canary/../..", "/tmp/abs-collection", "x" * 256, "c\x01"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_could_leave_the_store_are_refused_everywhere(world, digit_png, name):
    before = outside_home(world)
    listing = sorted(os.listdir(world["home"] / "qdrant"))
    for tool, args in (("ingest", ["run", "--recreate", "--limit", "50", "--collection", name]),
                       ("search", [digit_png, "--collection", name]),
                       ("cbir", ["eval", "run", "--queries", "5", "--collection", name])):
        proc = run_cli(tool, *args, env=world["env"])
        one_line_stderr(proc, "collection name")
    env = {**world["env"], "CBIR_COLLECTION": name}  # the same names from the environment
    one_line_stderr(run_cli("ingest", "run", "--recreate", "--limit", "50", env=env), "CBIR_COLLECTION")
    assert outside_home(world) == before
    assert sorted(os.listdir(world["home"] / "qdrant")) == listing


def test_a_collection_folder_that_is_a_link_is_refused_not_followed(world, digit_png):
    link = collection_dir(world, "linked")
    link.symlink_to(world["root"] / "canary", target_is_directory=True)
    before = outside_home(world)
    for args in (["run", "--recreate", "--limit", "50", "--collection", "linked"], ["run", "--collection", "linked", "--limit", "50"]):
        one_line_stderr(run_cli("ingest", *args, env=world["env"]), "is a symbolic link")
    one_line_stderr(run_cli("search", digit_png, "--collection", "linked", env=world["env"]), "is a symbolic link")
    assert outside_home(world) == before and (world["root"] / "canary" / "shard").is_dir()
    assert link.is_symlink()  # not half-deleted either


def test_links_planted_inside_a_collection_are_removed_never_followed(world):
    folder = collection_dir(world)
    (folder / "g-00000000000000aa-00000000").symlink_to(world["root"] / "canary", target_is_directory=True)
    (folder / "g-00000000000000bb-00000000.lock").symlink_to(world["root"] / "canary" / "keep.txt")
    before = outside_home(world)
    proc = run_cli("ingest", "run", "--recreate", "--limit", N, env=world["env"])
    assert proc.returncode == 0, proc.stderr
    assert outside_home(world) == before
    assert not (folder / "g-00000000000000aa-00000000").exists() and not (folder / "g-00000000000000bb-00000000.lock").is_symlink()


# --- 2. rebuilds lose nothing -------------------------------------------------------------------

def _wait_for_new_build(world, proc, known: set[str], name="c") -> None:
    """Until the writer has started a new generation beside the old one."""
    for _ in range(600):
        if set(generations(world, name)) - known or proc.poll() is not None:
            return
        time.sleep(0.02)


def test_a_rebuild_killed_at_any_moment_leaves_the_old_collection_answering(world, digit_png):
    old_gen = current_generation(world)
    rng = random.Random(7)
    killed = 0
    for attempt in range(5):
        # A bigger rebuild in small batches: several seconds of encoding and upserting to land in.
        proc = start_cli("ingest", "run", "--recreate", "--limit", 10 * N, "--batch-size", "5", env=world["env"])
        _wait_for_new_build(world, proc, {old_gen})
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, "the rebuild finished before the kill: make it slower"
        killed += 1
        n, gen = count_points(world)
        assert (n, gen) == (N, old_gen), f"attempt {attempt}: the old collection must answer whole"
        assert search_ok(world, digit_png)["results"]
    # The next run removes what the killed ones left, and builds the new collection.
    done = run_cli("ingest", "run", "--recreate", "--limit", N, env=world["env"])
    assert done.returncode == 0, done.stderr
    assert f"now holds {N} points" in done.stdout and "removed" in done.stderr
    assert generations(world) == [current_generation(world)] != [old_gen]


def test_ctrl_c_during_a_rebuild_changes_nothing_and_says_so(world):
    old_gen = current_generation(world)
    proc = start_cli("ingest", "run", "--recreate", "--limit", 10 * N, "--batch-size", "5", env=world["env"])
    _wait_for_new_build(world, proc, {old_gen})
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert "nothing was changed" in lines[0] and f"still holds its {N} points" in lines[0]
    assert count_points(world) == (N, old_gen) and generations(world) == [old_gen]
    # The advice finishes what was asked, a rebuild of 10N: pasted as it is, not "up to date".
    assert advised(lines[0])[:3] == ["ingest", "run", "--recreate"] and f"--limit {10 * N}" in lines[0]
    assert run_cli(*advised(lines[0]), env=world["env"]).returncode == 0
    assert count_points(world)[0] == 10 * N


def test_a_first_build_killed_then_run_again_has_every_point_once(world, digit_png, mnist_dir):
    env = {**world["env"], "CBIR_COLLECTION": "fresh"}
    proc = start_cli("ingest", "run", "--limit", 5000, "--batch-size", "2", env=env)
    _wait_for_new_build(world, proc, set(), "fresh")
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    missing = run_cli("search", digit_png, env=env)
    one_line_stderr(missing, "does not exist yet", "interrupted", "ingest run")
    again = run_cli("ingest", "run", "--limit", 5000, env=env)
    assert again.returncode == 0, again.stderr
    assert "removed 1 unfinished" in again.stderr and "now holds 5000 points" in again.stdout
    backend = open_backend(Settings(home=world["home"]))
    reader = backend.reader("fresh")
    try:
        points = reader.points(with_vectors=False, fields=("label",))
    finally:
        reader.close()
    from cbir.datasets import load_split

    assert points.ids.tolist() == list(range(1_000_000_000, 1_000_005_000))
    assert points.payloads["label"] == load_split("mnist", "train", mnist_dir).labels[:5000].tolist()
    assert len(generations(world, "fresh")) == 1


def test_a_store_that_cannot_be_opened_is_rebuilt_by_the_advised_command(world, digit_png):
    (collection_dir(world) / "CURRENT").write_text("garbage{")
    line = one_line_stderr(run_cli("search", digit_png, env=world["env"]), "is damaged", "--recreate")
    argv = advised(line)
    assert argv[:3] == ["ingest", "run", "--recreate"]
    assert run_cli(*argv, "--limit", N, env=world["env"]).returncode == 0  # the hint, as pasted (plus the size)
    assert search_ok(world, digit_png)["results"]


def test_a_partial_ingest_never_replaces_or_shrinks_a_full_collection(tmp_path, mnist_dir, tiny_model, digit_png):
    env = {"CBIR_HOME": str(tmp_path / "home"), "CBIR_DATA_DIR": str(mnist_dir), "CBIR_MODEL": str(tiny_model),
           "CBIR_ENCODER": "dae", "CBIR_COLLECTION": "", "CBIR_QDRANT_URL": ""}
    full = run_cli("ingest", "run", env=env)
    assert full.returncode == 0 and "collection 'cbir-mnist-dae' now holds 60000 points" in full.stdout, full.stderr
    one_line_stderr(run_cli("ingest", "run", "--limit", 100, "--collection", "cbir-mnist-dae", env=env), "would shrink it")
    one_line_stderr(run_cli("ingest", "run", "--limit", 100, "--recreate", "--collection", "cbir-mnist-dae", env=env),
                    "would shrink it")
    part = run_cli("ingest", "run", "--limit", 100, env=env)
    assert part.returncode == 0 and "collection 'cbir-mnist-dae-first100' now holds 100 points" in part.stdout
    proc = run_cli("search", digit_png, "--json", "-k", "1000", env=env)
    assert proc.returncode == 0 and len(json.loads(proc.stdout)["results"]) == 1000  # the full one, untouched


# --- 3. many readers, one writer ----------------------------------------------------------------

def test_eight_searches_at_once_all_answer(world, digit_png):
    procs = [start_cli("search", digit_png, "--json", "-k", "3", env=world["env"]) for _ in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in outs]
    assert all(len(json.loads(out)["results"]) == 3 for out, _ in outs)


def test_searches_answer_while_a_rebuild_runs(world, digit_png):
    rebuild = start_cli("ingest", "run", "--recreate", "--limit", 10 * N, "--batch-size", "5", env=world["env"])
    try:
        _wait_for_new_build(world, rebuild, set(generations(world)))
        for _ in range(3):
            assert search_ok(world, digit_png)["results"]
    finally:
        out, err = rebuild.communicate(timeout=300)
    assert rebuild.returncode == 0, err


HOLDER = """
import sys, time
from cbir.store.locks import FileLock
lock = FileLock(sys.argv[1], "test").acquire(exclusive=True, wait=5)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _hold(path: Path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds), "--holder-of-the-lock"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_reader_waits_for_the_store_then_answers_or_names_who_holds_it(world, digit_png):
    lock = collection_dir(world) / f"{current_generation(world)}.lock"
    holder = _hold(lock, 3)
    try:
        start = time.monotonic()
        at_once = run_cli("search", digit_png, "--wait", "0", env=world["env"])
        line = one_line_stderr(at_once, "is busy", f"pid {holder.pid} (`-c import sys, time", "--wait")
        assert "at once" in line and time.monotonic() - start < 20
        waited = run_cli("search", digit_png, "--json", env=world["env"])  # the default wait outlasts the holder
        assert waited.returncode == 0, waited.stderr
        assert time.monotonic() - start >= 2.5
    finally:
        holder.kill()
        holder.wait()


def test_cbir_wait_bounds_the_wait(world, digit_png):
    lock = collection_dir(world) / f"{current_generation(world)}.lock"
    holder = _hold(lock, 30)
    try:
        start = time.monotonic()
        proc = run_cli("search", digit_png, env={**world["env"], "CBIR_WAIT": "1.5"})
        elapsed = time.monotonic() - start
        one_line_stderr(proc, "is busy", "after waiting 1.5 s")
        assert 1.5 <= elapsed < 25
    finally:
        holder.kill()
        holder.wait()


def test_writers_take_turns(world):
    first = start_cli("ingest", "run", "--recreate", "--limit", 10 * N, "--batch-size", "5", env=world["env"])
    try:
        _wait_for_new_build(world, first, set(generations(world)))
        refused = run_cli("ingest", "run", "--recreate", "--limit", N, "--wait", "0", env=world["env"])
        one_line_stderr(refused, "is busy", f"pid {first.pid}", "ingest")
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err


def test_two_rebuilds_started_together_both_finish_and_the_store_opens(world, digit_png):
    procs = [start_cli("ingest", "run", "--recreate", "--limit", N, env=world["env"]) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and "Traceback" not in err, err
    assert count_points(world)[0] == N and len(generations(world)) == 1
    assert search_ok(world, digit_png)["results"]


# --- 4. integrity: a wrong answer is worse than an error -----------------------------------------

def _shard_files(world) -> list[Path]:
    shard = collection_dir(world) / current_generation(world) / "shard"
    return sorted(p for p in shard.rglob("*") if p.is_file() and p.stat().st_size > 1000)


@pytest.mark.parametrize("damage", ["delete a segment", "truncate a file", "delete a file"])
def test_a_store_that_lost_points_is_reported_damaged_and_the_advice_repairs_it(world, digit_png, damage):
    import shutil

    shard = collection_dir(world) / current_generation(world) / "shard"
    if damage == "delete a segment":
        biggest = max((p for p in (shard / "segments").iterdir()), key=lambda p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()))
        shutil.rmtree(biggest)
    elif damage == "truncate a file":
        target = max(_shard_files(world), key=lambda p: p.stat().st_size)
        os.truncate(target, target.stat().st_size // 2)
    else:
        _shard_files(world)[0].unlink()
    line = one_line_stderr(run_cli("search", digit_png, env=world["env"]), "collection 'c' is damaged", "--recreate")
    one_line_stderr(run_cli("cbir", "eval", "run", "--queries", "5", env=world["env"]), "is damaged")
    assert f"--limit {N}" in line  # the collection holds the first N images: the advice rebuilds just those
    assert run_cli(*advised(line), env=world["env"]).returncode == 0  # pasted as it is
    assert search_ok(world, digit_png)["results"]
    assert points_of(world) == N


def test_a_replaced_tflite_is_caught_by_its_checksum(world, digit_png, tmp_path):
    import shutil

    model = tmp_path / "copy.keras"
    shutil.copy(world["tiny_model"], model)
    shutil.copy(world["tiny_model"].with_suffix(".tflite"), model.with_suffix(".tflite"))
    shutil.copy(world["tiny_model"].with_suffix(".json"), model.with_suffix(".json"))
    env = {**world["env"], "CBIR_MODEL": str(model)}
    assert search_ok({**world, "env": env}, digit_png)["results"]  # the same bytes: the same model
    with open(model.with_suffix(".tflite"), "ab") as fh:
        fh.write(b"\0" * 16)  # still loads, but is not the file that encoded the collection
    line = one_line_stderr(run_cli("search", digit_png, env=env), ".tflite file with SHA-256", "--recreate")
    assert run_cli(*advised(line), env=env).returncode == 0  # pasted as it is: it carries --limit
    assert points_of(world) == N
    assert search_ok({**world, "env": env}, digit_png)["results"]


# --- 5. disks that fill up ----------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root); tests/test_reliability.py checks the message instead")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_rebuild_that_cannot_fit_is_refused_before_anything_is_touched(small_disk, mnist_dir, tiny_model, digit_png):
    env = {"CBIR_HOME": str(small_disk / "home"), "CBIR_DATA_DIR": str(mnist_dir), "CBIR_MODEL": str(tiny_model),
           "CBIR_ENCODER": "dae", "CBIR_COLLECTION": "c", "CBIR_QDRANT_URL": ""}
    assert run_cli("ingest", "run", "--limit", N, env=env).returncode == 0
    world = {"home": small_disk / "home", "env": env}
    gen = current_generation(world)
    refused = run_cli("ingest", "run", "--recreate", env=env)  # all 60,000: more than the disk holds
    one_line_stderr(refused, "not enough free space", "nothing was changed")
    assert count_points(world) == (N, gen) and generations(world) == [gen]
    # A nearly full disk: a plain re-run has nothing to write and leaves the collection as it is.
    import shutil

    filler = small_disk / "filler"
    with open(filler, "wb") as fh:
        while shutil.disk_usage(small_disk).free > 8 * 2**20:
            fh.write(b"\1" * 2**20)
            fh.flush()
    again = run_cli("ingest", "run", "--limit", N, env=env)
    assert again.returncode == 0 and "is up to date" in again.stdout, again.stderr
    more = run_cli("ingest", "run", "--limit", N + 500, env=env)
    one_line_stderr(more, "not enough free space", "nothing was changed")
    assert search_ok(world, digit_png)["results"]
    # Full to the brim: even opening a shard needs a few bytes; the message says so, and nothing is lost.
    with open(filler, "ab") as fh:
        try:
            while True:
                fh.write(b"\1" * 2**16)
                fh.flush()
        except OSError:
            pass
    one_line_stderr(run_cli("search", digit_png, env=env), "not enough free space", "intact")
    one_line_stderr(run_cli("ingest", "run", "--limit", N, env=env), "not enough free space", "intact")
    filler.unlink()  # room again: nothing was lost
    assert count_points(world) == (N, gen) and generations(world) == [gen]
    assert search_ok(world, digit_png)["results"]


def test_a_store_of_an_older_cbir_is_refused_with_advice_that_rebuilds_it(world, digit_png):
    import qdrant_edge as qe

    folder = collection_dir(world, "old")
    folder.mkdir()
    shard = qe.EdgeShard.create(str(folder / "shard"), qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=128, distance=qe.Distance.Euclid)))
    shard.close()
    (folder / "collection.json").write_text(json.dumps({"model_id": "0123456789abcdef", "dim": 128, "complete": True}))
    env = {**world["env"], "CBIR_COLLECTION": "old"}
    line = one_line_stderr(run_cli("search", digit_png, env=env), "older cbir", "--recreate")
    assert run_cli(*advised(line), "--limit", 100, env=env).returncode == 0
    assert search_ok({**world, "env": env}, digit_png)["results"]
    assert not (folder / "shard").exists() and not (folder / "collection.json").exists()  # the old layout is gone


def test_searching_a_missing_collection_points_at_the_partial_one(world, digit_png):
    env = {**world["env"], "CBIR_COLLECTION": ""}
    assert run_cli("ingest", "run", "--limit", 300, env=env).returncode == 0
    one_line_stderr(run_cli("search", digit_png, env=env), "does not exist yet", "--collection cbir-mnist-dae-first300")


# --- what a hostile user tried next ---------------------------------------------------------------

def test_ctrl_c_just_after_the_switch_keeps_the_new_collection(world, digit_png):
    """Interrupting the clean-up that follows the switch must not undo the switch."""
    old_gen = current_generation(world)
    holder = _hold_shared(collection_dir(world) / f"{old_gen}.lock")  # a reader of the old generation delays its removal
    try:
        proc = start_cli("ingest", "run", "--recreate", "--limit", N, env=world["env"])
        for _ in range(3000):
            if current_generation(world) != old_gen or proc.poll() is not None:
                break
            time.sleep(0.01)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        holder.kill()
        holder.wait()
    new_gen = current_generation(world)
    assert new_gen != old_gen and count_points(world) == (N, new_gen)
    assert search_ok(world, digit_png)["results"]


SHARED_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_SH)
print("held", flush=True)
time.sleep(60)
"""


def _hold_shared(path: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", SHARED_HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_train_killed_before_its_collection_is_published_changes_no_model(world, digit_png):
    env = {**world["env"], "CBIR_MODEL": "", "CBIR_ENCODER": "pca", "CBIR_COLLECTION": "cp"}
    assert run_cli("ingest", "run", "--limit", N, env=env).returncode == 0  # the packaged pca
    proc = start_cli("ingest", "run", "--train", "--train-size", "3000", "--limit", 3 * N, "--batch-size", "5", env=env)
    saved = proc.stdout.readline()
    assert saved.startswith("saved "), proc.communicate()
    proc.send_signal(signal.SIGKILL)  # trained, and ingesting with the new model: killed
    proc.wait(timeout=30)
    assert not (world["home"] / "models" / "mnist" / "pca" / "CURRENT").exists()  # the new model never became current
    assert search_ok({**world, "env": env}, digit_png)["results"]  # the old collection answers, with the old model


def test_trainings_at_once_each_write_whole_models(world):
    env = {**world["env"], "CBIR_MODEL": "", "CBIR_ENCODER": "pca"}
    procs = [start_cli("ingest", "train", "--train-size", str(size), env=env) for size in (2000, 2500, 3000)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outs]
    from cbir.encoder import Encoder
    from cbir.modelfiles import KerasModel, ModelStore, read_provenance

    versions = ModelStore(world["home"] / "models").versions("mnist", "pca")
    assert len(versions) == 3
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    for path in versions:  # each version's .keras, .tflite and provenance belong together
        assert read_provenance(path)["model_id"] == path.parent.name
        assert np.abs(Encoder(path).encode(images) - KerasModel(path).encode(images)).max() < 1e-4
    assert not list((world["home"] / "models" / "mnist" / "pca").glob(".*"))  # no temporary files left


@pytest.mark.parametrize("damage", ["zero the vectors", "empty the file list"])
def test_damage_that_keeps_file_sizes_is_caught(world, digit_png, damage):
    gdir = collection_dir(world) / current_generation(world)
    if damage == "zero the vectors":
        for matrix in (gdir / "shard").rglob("vector_storage/*"):
            if matrix.is_file() and matrix.stat().st_size > 10_000:
                data = bytearray(matrix.read_bytes())
                data[8:] = bytes(len(data) - 8)
                matrix.write_bytes(bytes(data))
    else:
        (gdir / "files.json").write_text("{}")
    one_line_stderr(run_cli("search", digit_png, env=world["env"]), "is damaged", "--recreate")
    one_line_stderr(run_cli("ingest", "run", "--limit", N, env=world["env"]), "is damaged")  # never "up to date"


def test_a_shard_that_is_a_link_is_not_followed(world, digit_png):
    import shutil

    gdir = collection_dir(world) / current_generation(world)
    outside = world["root"] / "canary" / "moved-shard"
    shutil.move(str(gdir / "shard"), outside)
    (gdir / "shard").symlink_to(outside, target_is_directory=True)
    before = outside_home(world)
    one_line_stderr(run_cli("search", digit_png, env=world["env"]), "symbolic link")
    assert outside_home(world) == before


@pytest.mark.parametrize("where", ["CURRENT", "collection.json", "files.json"])
def test_a_fifo_inside_the_store_is_refused_not_waited_on(world, digit_png, where):
    folder = collection_dir(world)
    path = folder / where if where == "CURRENT" else folder / current_generation(world) / where
    path.unlink()
    os.mkfifo(path)
    proc = run_cli("search", digit_png, env=world["env"], timeout=60)
    one_line_stderr(proc, "collection 'c'")


@pytest.mark.parametrize("content", ["[" * 200_000, '{"generation": "g-\\u0000"}', "\udcff"])
def test_a_hostile_current_file_is_one_line_and_the_advice_repairs_it(world, digit_png, content):
    (collection_dir(world) / "CURRENT").write_bytes(content.encode("utf-8", "surrogateescape"))
    line = one_line_stderr(run_cli("search", digit_png, env=world["env"]), "collection 'c'")
    if "--recreate" in line:
        assert run_cli(*advised(line), "--limit", N, env=world["env"]).returncode == 0
        assert search_ok(world, digit_png)["results"]


def test_the_api_key_never_lands_in_lock_files(world):
    proc = start_cli("ingest", "run", "--recreate", "--limit", 10 * N, "--batch-size", "5", "--qdrant-api-key", "S3CRET-KEY",
                     env=world["env"])
    try:
        _wait_for_new_build(world, proc, set(generations(world)))
        text = (collection_dir(world) / "write.lock").read_text()
        assert "S3CRET" not in text and "--qdrant-api-key ***" in text
    finally:
        proc.kill()
        proc.wait()


def test_the_advice_after_an_interruption_keeps_the_part(world):
    env = {**world["env"], "CBIR_COLLECTION": ""}
    proc = start_cli("ingest", "run", "--limit", 20000, "--batch-size", "5", env=env)
    _wait_for_new_build(world, proc, set(), "cbir-mnist-dae-first20000")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    argv = advised(err.strip())
    assert argv[:2] == ["ingest", "run"] and argv[argv.index("--limit") + 1] == "20000"
