"""Bad input gets one clear line and a non-zero exit; faults lose nothing and duplicate nothing."""

import gzip
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cbir.settings import Settings
from cbir.store import EdgeStore, ServerStore
from ingest.cli import app as ingest_app
from search.cli import app as search_app
from tests.cli_helpers import invoke, one_line_error



def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _draw_digit(size=(300, 300), mode="L", bg=255, ink=0) -> Image.Image:
    img = Image.new(mode, size, bg)
    w, h = size
    ImageDraw.Draw(img).line((w * 0.3, h * 0.2, w * 0.7, h * 0.2, w * 0.4, h * 0.85), fill=ink, width=max(3, w // 15))
    return img


# --- bad query images: each a file a user could hand to `search` ---------------------------------

def make_bad(kind: str, path: Path) -> Path:
    if kind == "missing":
        return path
    if kind == "folder without images":
        path.mkdir()
        (path / "notes.txt").write_text("no images here")
        return path
    if kind == "empty file":
        path.write_bytes(b"")
    elif kind == "text named .png":
        path.write_text("this is not a picture")
    elif kind == "truncated png":
        _draw_digit().save(path)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "png with corrupt crc":
        _draw_digit().save(path)
        raw = bytearray(path.read_bytes())
        raw[29] ^= 0xFF  # inside IHDR's CRC
        path.write_bytes(bytes(raw))
    elif kind == "decompression bomb":
        # A valid PNG header claiming 30000x30000 pixels: Pillow refuses it before decoding.
        ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
        idat = zlib.compress(b"\x00" * 100)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))
    elif kind == "blank white":
        Image.new("L", (200, 200), 255).save(path)
    elif kind == "one pixel":
        Image.new("L", (1, 1), 0).save(path)
    return path


BAD_IMAGES = {
    "missing": "no such file",
    "folder without images": "holds no image files",
    "empty file": "not an image file",
    "text named .png": "not an image file",
    "truncated png": "corrupt or truncated",
    "png with corrupt crc": "corrupt or truncated",
    "decompression bomb": "too large to be decoded safely",
    "blank white": "no ink found",
    "one pixel": "no ink found",
}


@pytest.mark.parametrize("kind", BAD_IMAGES)
def test_bad_query_image_gets_one_clear_line(ingested, tmp_path, kind):
    path = make_bad(kind, tmp_path / ("q" if kind.startswith("folder") else "q.png"))
    line = one_line_error(invoke(search_app, [str(path)]), BAD_IMAGES[kind])
    assert str(path) in line or kind in ("blank white", "one pixel")


# --- unusual but legal images: must work ---------------------------------------------------------

def make_good(kind: str, path: Path) -> Path:
    if kind == "huge":
        _draw_digit((6000, 4500)).save(path)
    elif kind == "animated gif":
        first = _draw_digit((100, 100), "L", bg=0, ink=255).convert("P")
        second = Image.new("L", (100, 100), 0).convert("P")  # a blank second frame: only the first is used
        first.save(path, save_all=True, append_images=[second], duration=100, loop=0)
    elif kind == "16-bit png":
        arr = np.asarray(_draw_digit((120, 120)), dtype=np.uint16) * 257
        Image.fromarray(arr).save(path)
    elif kind == "rgba transparent":
        img = Image.new("RGBA", (150, 150), (0, 0, 0, 0))
        img.paste(_draw_digit((150, 150), "RGBA", bg=(0, 0, 0, 0), ink=(30, 30, 30, 255)))
        img.save(path)
    elif kind == "cmyk jpeg":
        _draw_digit((200, 200)).convert("CMYK").save(path, quality=95)
    return path


@pytest.mark.parametrize("kind, suffix", [("huge", ".png"), ("animated gif", ".gif"), ("16-bit png", ".png"),
                                          ("rgba transparent", ".png"), ("cmyk jpeg", ".jpg")])
def test_unusual_images_work(ingested, tmp_path, kind, suffix):
    from cbir import preprocess

    path = make_good(kind, tmp_path / f"q{suffix}")
    digit = preprocess.load_digit(path)
    assert digit.shape == (28, 28) and 0.9 <= digit.max() <= 1.0 and digit[0].max() < 0.05
    result = invoke(search_app, [str(path), "--json", "-k", "3"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["results"]) == 3


# --- bad options and bad state -------------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["--top-k", "0"], "--top-k must be at least 1"),
    (["--top-k", "-3"], "--top-k must be at least 1"),
    (["--top-k", "5000"], "larger than the collection (2000 points)"),
    (["--label", "12"], "unknown --label 12"),
    (["--label", "-1"], "unknown --label -1"),
])
def test_bad_search_options(ingested, digit_png, args, fragment):
    one_line_error(invoke(search_app, [str(digit_png), *args]), fragment)


@pytest.mark.parametrize("damage, fragment", [
    (lambda raw: b"\x00\x00\x0c\x03" + raw[4:], "bad IDX magic number"),
    (lambda raw: raw[: len(raw) // 2], "truncated or corrupt"),
])
def test_bad_idx_file_stops_ingest(env, tmp_path, mnist_dir, damage, fragment, monkeypatch, tiny_model):
    data = tmp_path / "data"
    data.mkdir()
    for f in mnist_dir.glob("*-ubyte.gz"):
        raw = gzip.decompress(f.read_bytes())
        (data / f.stem).write_bytes(damage(raw) if f.name.startswith("train-images") else raw)
    monkeypatch.setenv("CBIR_DATA_DIR", str(data))
    one_line_error(invoke(ingest_app, ["run", "--model", str(tiny_model)]), fragment, "train-images")


def test_missing_and_corrupt_model(ingested, digit_png, tmp_path):
    one_line_error(invoke(search_app, [str(digit_png), "--model", str(tmp_path / "none.keras")]), "does not exist")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK\x03\x04 not really")
    bad.with_suffix(".tflite").write_bytes(os.urandom(256))
    one_line_error(invoke(search_app, [str(digit_png), "--model", str(bad)]), "cannot load")


def test_unwritable_home(env, tiny_model, monkeypatch):
    monkeypatch.setenv("CBIR_HOME", "/proc/cbir-home")  # the kernel refuses any file here, even to root
    one_line_error(invoke(ingest_app, ["run", "--limit", "100", "--model", str(tiny_model)]), "writable folder")


# --- faults --------------------------------------------------------------------------------------

def _ingest_process(env_home: Path, tiny_model: Path, mnist_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "CBIR_HOME": str(env_home), "CBIR_DATA_DIR": str(mnist_dir), "CBIR_MODEL": str(tiny_model),
           "CBIR_ENCODER": "dae"}
    code = "from ingest.cli import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, "run", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_start(home: Path, proc: subprocess.Popen) -> None:
    """Until the collection's metadata exists: the ingest has begun writing."""
    meta = home / "qdrant" / "cbir-mnist-dae" / "collection.json"
    for _ in range(600):
        if meta.exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()


def _check_collection(home: Path, mnist_dir: Path, n: int) -> None:
    from cbir.datasets import load_split

    store = EdgeStore(home / "qdrant", "cbir-mnist-dae")
    try:
        ids, labels = store.labels()
        assert store.count() == n and len(np.unique(ids)) == n
        assert ids.tolist() == list(range(1_000_000_000, 1_000_000_000 + n))
        assert labels.tolist() == load_split("mnist", "train", mnist_dir).labels[:n].tolist()
        assert store.metadata()["complete"] is True
    finally:
        store.close()


def test_sigkill_mid_ingest_then_rerun_gives_exactly_every_point_once(tmp_path, tiny_model, mnist_dir):
    home, n = tmp_path / "home", 60000
    proc = _ingest_process(home, tiny_model, mnist_dir, "--limit", str(n), "--batch-size", "50")
    _wait_for_start(home, proc)
    time.sleep(0.2)  # 1200 small batches take seconds: this lands part-way
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # Killed part-way: the store opens, says it is incomplete, and search refuses it.
    store = EdgeStore(home / "qdrant", "cbir-mnist-dae")
    partial = store.count()
    assert store.metadata()["complete"] is False
    store.close()
    assert partial < n
    again = _ingest_process(home, tiny_model, mnist_dir, "--limit", str(n))
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"now holds {n} points" in out
    _check_collection(home, mnist_dir, n)


def test_search_refuses_an_incomplete_collection(ingested, digit_png, env):
    store = EdgeStore(env / "home" / "qdrant", "cbir-mnist-dae")
    store.set_metadata({**store.metadata(), "complete": False})
    store.close()
    one_line_error(invoke(search_app, [str(digit_png)]), "incomplete", "ingest run")


def test_ctrl_c_stops_cleanly_and_says_how_far(tmp_path, tiny_model, mnist_dir):
    home, n = tmp_path / "home", 60000
    proc = _ingest_process(home, tiny_model, mnist_dir, "--limit", str(n), "--batch-size", "50")
    _wait_for_start(home, proc)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted after" in lines[0] and f"of {n} points" in lines[0]
    store = EdgeStore(home / "qdrant", "cbir-mnist-dae")  # opens fine afterwards
    written = int(lines[0].split("interrupted after ")[1].split()[0])
    assert store.count() >= written
    store.close()
    rerun = _ingest_process(home, tiny_model, mnist_dir, "--limit", str(n))
    assert rerun.wait(timeout=300) == 0
    _check_collection(home, mnist_dir, n)


def test_search_while_another_process_holds_the_store(ingested, digit_png, env):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from cbir.store import EdgeStore; "
         f"s = EdgeStore({str(env / 'home' / 'qdrant')!r}, 'cbir-mnist-dae'); print('open', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        one_line_error(invoke(search_app, [str(digit_png)]), "is busy", "try again")
    finally:
        holder.kill()
        holder.wait()
    assert invoke(search_app, [str(digit_png)]).exit_code == 0  # and works once it is free


def test_unreachable_server_is_named_and_fails_fast(env, digit_png, tiny_model, monkeypatch):
    monkeypatch.setenv("CBIR_QDRANT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CBIR_QDRANT_API_KEY", "sekrit-key-123")
    result = invoke(search_app, [str(digit_png), "--model", str(tiny_model)])
    line = one_line_error(result, "http://127.0.0.1:9", "is the server up")
    assert "sekrit-key-123" not in result.output and "sekrit" not in line


def test_a_server_that_never_answers_times_out(tiny_model):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections into the backlog, never replies
    port = listener.getsockname()[1]
    try:
        store = ServerStore.connect(f"http://127.0.0.1:{port}", "sekrit-key-123", "x", timeout=1)
        done = threading.Event()
        errors = []

        def call():
            try:
                store.metadata()
            except Exception as exc:  # noqa: BLE001 - the test inspects what came out
                errors.append(exc)
            done.set()

        threading.Thread(target=call, daemon=True).start()
        assert done.wait(30), "no answer and no timeout: the client hangs"
        assert type(errors[0]).__name__ == "CbirError"
        assert f"127.0.0.1:{port}" in str(errors[0]) and "sekrit" not in str(errors[0])
    finally:
        listener.close()


def test_https_url_with_key_gives_a_clear_error(env, digit_png, tiny_model, monkeypatch):
    monkeypatch.setenv("CBIR_QDRANT_URL", "https://127.0.0.1:9")
    monkeypatch.setenv("CBIR_QDRANT_API_KEY", "sekrit-key-123")
    result = invoke(search_app, [str(digit_png), "--model", str(tiny_model)])
    one_line_error(result, "https://127.0.0.1:9")
    assert "sekrit" not in result.output


def test_settings_never_show_the_api_key_in_help(monkeypatch):
    monkeypatch.setenv("CBIR_QDRANT_API_KEY", "sekrit-key-123")
    assert "sekrit" not in invoke(search_app, ["--help"]).output
    assert "sekrit" not in repr(Settings.from_env())


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """An 80 MiB file system that really fills up (tmpfs; root can mount one here).

    Where mounting is not allowed, the free-space reading is replaced instead, which exercises
    the same check but not a real full disk.
    """
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(mnt)],
                             capture_output=True).returncode == 0
    if not mounted:
        import shutil as real_shutil
        from collections import namedtuple

        usage = namedtuple("usage", "total used free")
        monkeypatch.setattr("cbir.store.shutil.disk_usage", lambda p: usage(80 * 2**20, 0, 66 * 2**20))
        assert real_shutil.disk_usage(tmp_path).free > 2**30
    yield mnt
    if mounted:
        subprocess.run(["umount", str(mnt)], check=True)


def test_full_disk_stops_ingest_with_one_line_and_no_crash(env, small_disk, tiny_model, monkeypatch):
    # Engine files are memory-mapped: without the free-space check a full disk kills the process (SIGBUS).
    monkeypatch.setenv("CBIR_HOME", str(small_disk / "home"))
    result = invoke(ingest_app, ["run", "--model", str(tiny_model)])
    one_line_error(result, "not enough free space", "CBIR_HOME")
