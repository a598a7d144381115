"""Bad input gets one clear line and a non-zero exit; faults lose nothing and duplicate nothing."""

import gzip
import json
import os
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
from cbir.store.server import Connection
from cbir.cli import app as cbir_app
from ingest.cli import app as ingest_app
from search.cli import app as search_app
from tests.cli_helpers import invoke, one_line_error, one_line_stderr, run_cli



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
    # the advised `ingest export` on a file that is no .keras at all: not Keras' own "File not found"
    line = one_line_error(invoke(ingest_app, ["export", "--model", str(bad)]), "cannot load model", "not a .keras file")
    assert "not found" not in line.lower()


@pytest.mark.parametrize("variable, what", [("CBIR_HOME", "--home / CBIR_HOME"), ("CBIR_DATA_DIR", "--data-dir / CBIR_DATA_DIR")])
def test_a_file_where_a_folder_belongs_is_named_as_such(env, digit_png, tmp_path, monkeypatch, variable, what):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    monkeypatch.setenv(variable, str(afile))
    one_line_error(invoke(search_app, [str(digit_png)]), f"{what}: {afile} is a file, not a folder")


def test_unwritable_home(env, tiny_model, monkeypatch):
    monkeypatch.setenv("CBIR_HOME", "/proc/cbir-home")  # the kernel refuses any file here, even to root
    one_line_error(invoke(ingest_app, ["run", "--limit", "100", "--model", str(tiny_model)]), "writable folder")


def test_unreachable_server_is_named_and_fails_fast(env, digit_png, tiny_model):
    proc = run_cli("search", digit_png, "--model", tiny_model,
                   env={"CBIR_QDRANT_URL": "http://127.0.0.1:9", "CBIR_QDRANT_API_KEY": "sekrit-key-123"})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # A key over plain http gets one warning line; then the one error line.
    assert lines[0].startswith("warning: the API key") and "unencrypted" in lines[0] and "https://" in lines[0]
    assert proc.returncode == 2 and len(lines) == 2 and lines[1].startswith("error: ")
    assert "http://127.0.0.1:9" in lines[1] and "is the server up" in lines[1]
    assert "sekrit" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("args", [["ingest", "run", "--limit", "10"], ["ingest", "run", "--limit", "10", "--wait", "0"],
                                  ["cbir", "collections", "list"]])
def test_every_command_fails_fast_on_an_unreachable_server(env, tiny_model, args):
    """Writers too: taking the server's write lock must not retry forever when the server is not there."""
    model = ["--model", tiny_model] if args[0] == "ingest" else []
    proc = run_cli(args[0], *args[1:], *model, env={"CBIR_QDRANT_URL": "http://127.0.0.1:9"}, timeout=120)
    one_line_stderr(proc, "http://127.0.0.1:9")
    assert proc.returncode == 2 and "is the server up" in proc.stderr


def test_credentials_in_the_url_are_never_printed(env, digit_png, tiny_model):
    proc = run_cli("search", digit_png, "--model", tiny_model, env={"CBIR_QDRANT_URL": "http://alice:pa55word@127.0.0.1:9"})
    line = one_line_stderr(proc, "http://***@127.0.0.1:9")
    assert "pa55word" not in proc.stderr + proc.stdout and "alice" not in line


@pytest.mark.parametrize("url, fragment", [
    ("ftp://127.0.0.1:6333", "is not an http:// or https:// URL"),
    ("http://127.0.0.1:99999", "bad port"),
    ("http://127.0.0.1:port", "bad port"),
    ("http://local host:6333", "holds blanks"),
    (" http://127.0.0.1:6333", "holds blanks"),
    ("http://", "names no host"),
    ("http://[::1", "bad port"),
])
def test_bad_server_urls_are_one_line(env, digit_png, url, fragment, monkeypatch):
    monkeypatch.setenv("CBIR_QDRANT_URL", url)
    one_line_error(invoke(search_app, [str(digit_png)]), "CBIR_QDRANT_URL", fragment)


def test_a_server_that_trickles_bytes_cannot_hang_a_command(tiny_model):
    """The client's read timeout restarts with each byte; the request's own deadline does not."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            try:
                listener.settimeout(0.2)
                conn, _ = listener.accept()
            except OSError:
                continue
            def feed(c=conn):
                try:
                    c.recv(65536)
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
                    while not stop.is_set():
                        c.sendall(b" ")  # one byte every 0.3 s: never silent long enough for a read timeout
                        time.sleep(0.3)
                except OSError:
                    pass
                finally:
                    c.close()
            threading.Thread(target=feed, daemon=True).start()

    threading.Thread(target=trickle, daemon=True).start()
    try:
        from cbir.store.server import ServerBackend

        backend = ServerBackend(Connection.open(f"http://127.0.0.1:{port}", None, timeout=2))
        start = time.monotonic()
        with pytest.raises(Exception) as caught:
            backend.reader("x")
        assert time.monotonic() - start < 15, "the trickle held the command"
        assert type(caught.value).__name__ == "ServerError" and f"127.0.0.1:{port}" in str(caught.value)
    finally:
        stop.set()
        listener.close()


def test_a_server_that_never_answers_times_out(tiny_model):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections into the backlog, never replies
    port = listener.getsockname()[1]
    try:
        from cbir.store.server import ServerBackend

        backend = ServerBackend(Connection.open(f"http://127.0.0.1:{port}", "sekrit-key-123", timeout=1))
        start = time.monotonic()
        with pytest.raises(Exception) as caught:
            backend.reader("x")
        assert time.monotonic() - start < 10, "no answer and no timeout: the client hangs"
        assert type(caught.value).__name__ == "ServerError"
        assert f"127.0.0.1:{port}" in str(caught.value) and "sekrit" not in str(caught.value)
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
        monkeypatch.setattr("cbir.store.files.shutil.disk_usage", lambda p: usage(80 * 2**20, 0, 66 * 2**20))
        assert real_shutil.disk_usage(tmp_path).free > 2**30
    yield mnt
    if mounted:
        subprocess.run(["umount", str(mnt)], check=True)


def test_full_disk_stops_ingest_with_one_line_and_no_crash(env, small_disk, tiny_model, monkeypatch):
    # Engine files are memory-mapped: without the free-space check a full disk kills the process (SIGBUS).
    monkeypatch.setenv("CBIR_HOME", str(small_disk / "home"))
    result = invoke(ingest_app, ["run", "--model", str(tiny_model)])
    one_line_error(result, "not enough free space", "CBIR_HOME")


# --- one line, never a traceback: every case that once printed one --------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["run", "--limit", "0"], "Invalid value for '--limit'"),
    (["run", "--batch-size", "-5"], "Invalid value for '--batch-size'"),
    (["train", "--seed", "-1"], "Invalid value for '--seed'"),
    (["run", "--no-such-flag"], "No such option"),
    (["nosuchcommand"], "No such command"),
])
def test_usage_errors_are_one_line_not_a_box(env, args, fragment):
    line = one_line_error(invoke(ingest_app, args), fragment)
    assert "--help" in line  # and where to look next


def test_training_an_unknown_dataset_is_one_line(env):
    one_line_error(invoke(ingest_app, ["train", "--dataset", "cifar"]), "unknown dataset 'cifar'", "mnist, fashion-mnist")


@pytest.mark.parametrize("name, fragment", [
    ("x" * 300, "300 bytes long"), ("../escape", "contains '/'"), ("/tmp/abs", "contains '/'"), ("..", "not a collection name"),
    (".", "not a collection name"), ("a\\b", "contains '\\\\'"), ("tab\there", "control character"), (" lead", "blank"),
])
def test_bad_collection_names_are_one_line_naming_the_rule(env, digit_png, name, fragment, monkeypatch):
    one_line_error(invoke(search_app, [str(digit_png), "--collection", name]), "collection name", fragment)
    monkeypatch.setenv("CBIR_COLLECTION", name)  # the same from the environment
    one_line_error(invoke(search_app, [str(digit_png)]), "CBIR_COLLECTION", fragment)


def test_eval_queries_beyond_the_test_split_is_an_error(ingested):
    one_line_error(invoke(cbir_app, ["eval", "run", "--queries", "10001"]), "--queries 10001 is more than the 10000 test images")


@pytest.mark.parametrize("n", ["2", "3"])
def test_eval_report_with_two_or_three_queries(ingested, tmp_path, n):
    out = tmp_path / "r"
    result = invoke(cbir_app, ["eval", "run", "--queries", n, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["n_queries"] + json.loads(
        result.output.strip().splitlines()[-1])["n_skipped"] == int(n)
    assert (out / "embedding_map.png").is_file() and (out / "eval.md").is_file()


@pytest.mark.parametrize("content", ["[1, 2]", '"a string"', "null", "{not json"])
def test_a_mangled_collection_record_is_damage_with_the_command_that_rebuilds(ingested, digit_png, env, content):
    folder = env / "home" / "qdrant" / "small"
    gen = json.loads((folder / "CURRENT").read_text())["generation"]
    (folder / gen / "collection.json").write_text(content)
    line = one_line_error(invoke(search_app, [str(digit_png)]), "collection 'small'", "ingest run --recreate")
    assert "--collection small" in line


def test_stdout_to_a_full_device_is_one_line(ingested, digit_png):
    with open("/dev/full", "w") as full:
        proc = run_cli("search", digit_png, stdout=full, stderr=subprocess.PIPE) if False else subprocess.run(
            [sys.executable, "-c", "from search.cli import main; main()", str(digit_png)],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, env=os.environ.copy())
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the output"), proc.stderr


def test_a_grid_too_large_to_draw_is_refused_before_searching(ingested, digit_png, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(25):
        (folder / f"q{i}.png").write_bytes(digit_png.read_bytes())
    one_line_error(invoke(search_app, [str(folder), "-k", "100", "--grid", str(tmp_path / "g.png")]),
                   "--grid would draw 25 rows of 101 pictures")
    # one query, but a row wider than viewers open (2001 cells were a 236124 px wide picture)
    one_line_error(invoke(search_app, [str(digit_png), "-k", "1000", "--grid", str(tmp_path / "g.png")]),
                   "--grid draws at most 100 results a query")
    assert not (tmp_path / "g.png").exists()


def test_a_fifo_is_refused_not_waited_on(ingested, tmp_path):
    fifo = tmp_path / "q.png"
    os.mkfifo(fifo)
    proc = run_cli("search", fifo, timeout=60)
    one_line_stderr(proc, "not a regular file")


def test_a_gzip_bomb_in_the_data_dir_is_refused(env, tmp_path, mnist_dir, monkeypatch, tiny_model):
    data = tmp_path / "data"
    data.mkdir()
    for f in mnist_dir.glob("*-ubyte.gz"):
        (data / f.name).write_bytes(f.read_bytes())
    header = struct.pack(">HBBIII", 0, 8, 3, 60000, 28, 28)
    with gzip.open(data / "train-images-idx3-ubyte.gz", "wb") as fh:  # 60000 images announced, 400 MB inside
        fh.write(header)
        for _ in range(400):
            fh.write(b"\0" * 2**20)
    monkeypatch.setenv("CBIR_DATA_DIR", str(data))
    one_line_error(invoke(ingest_app, ["run", "--model", str(tiny_model)]), "expands to more than", "train-images")


def _keras_model(tmp_path, name, build):
    """A saved .keras model with its .tflite, as `ingest train` writes them."""
    import keras

    from cbir.modelfiles import export_encoder

    path = tmp_path / f"{name}.keras"
    model = build(keras)
    model.save(path)
    export_encoder(model, path)
    return path


@pytest.mark.parametrize("kind, fragment", [
    ("input 32x32", "takes inputs of shape (32, 32, 1)"),
    ("4-D output", "outputs arrays of shape"),
])
def test_a_model_of_the_wrong_shape_is_refused_at_ingest(env, tmp_path, kind, fragment):
    def build(keras):
        if kind == "input 32x32":
            inp = keras.Input((32, 32, 1))
            return keras.Model(inp, keras.layers.Flatten()(inp))
        inp = keras.Input((28, 28, 1))
        return keras.Model(inp, keras.layers.Conv2D(2, 3, padding="same")(inp))

    path = _keras_model(tmp_path, kind.replace(" ", "_"), build)
    one_line_error(invoke(ingest_app, ["run", "--limit", "10", "--model", str(path)]), fragment)


def test_tensorflows_start_up_lines_do_not_reach_the_user(env, tmp_path):
    proc = run_cli("ingest", "train", "--encoder", "pca", "--train-size", "300", "--out", tmp_path / "p.keras",
                   env={"CBIR_HOME": str(tmp_path / "home")}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    noise = [line for line in proc.stderr.splitlines() if line.strip()]
    assert noise == [], noise  # no oneDNN / CUDA / absl lines: only what cbir itself says
    assert proc.stdout.startswith(f"saved {tmp_path / 'p.keras'} (pca encoder")


def test_cbir_debug_shows_the_traceback_to_a_maintainer(env, tmp_path, digit_png):
    quiet = run_cli("search", digit_png, "--collection", "../x")
    one_line_stderr(quiet, "collection name")
    loud = run_cli("search", digit_png, "--collection", "../x", env={"CBIR_DEBUG": "1"})
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "BadName" in loud.stderr


def test_a_home_with_a_tilde_is_the_users_home(env, monkeypatch):
    monkeypatch.setenv("CBIR_HOME", "~/cbir-x")
    assert Settings.from_env().home == Path.home() / "cbir-x"
    monkeypatch.setenv("CBIR_MODEL", "~/m.keras")
    assert Settings.from_env(home=Path("~/y")).model == Path.home() / "m.keras"
    assert Settings.from_env(home=Path("~/y")).home == Path.home() / "y"


def test_relative_paths_are_shown_resolved(env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CBIR_DATA_DIR", "../no-such-data")
    line = one_line_error(invoke(ingest_app, ["run", "--limit", "5"]), "does not exist")
    assert str(tmp_path.parent / "no-such-data") in line


def test_a_file_name_with_a_newline_stays_one_line(ingested, tmp_path, digit_png):
    import shutil

    odd = tmp_path / "a\nb.png"
    line = one_line_error(invoke(search_app, [str(odd)]), "no such file")
    assert "a\\nb.png" in line
    shutil.copy(digit_png, odd)  # and in the table's header, when it is answered
    result = invoke(search_app, [str(odd), "-k", "1"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == f"query: {tmp_path}/a\\nb.png"


@pytest.mark.parametrize("args, fragment", [
    (["--dataset", "../../x"], "--dataset / CBIR_DATASET: '../../x' is not a name"),
    (["--encoder", "../pca"], "--encoder / CBIR_ENCODER: '../pca' is not a name"),
    (["--wait", "1000000"], "between 0 and 999999 seconds"),
    (["--home", ""], "'--home': an empty path"),  # not the current folder in silence
    (["--data-dir", " "], "'--data-dir': an empty path"),
])
def test_names_and_numbers_that_cannot_be_right(env, digit_png, args, fragment):
    one_line_error(invoke(search_app, [str(digit_png), *args]), fragment)


@pytest.mark.parametrize("point_id, fragment", [
    ("nope", "--id 'nope' is not a point id"),
    ("-5", "--id '-5' is not a point id"),
    ("999", "id 999: no such point in collection 'small'"),
    ("00000000-0000-0000-0000-000000000000", "no such point"),
])
def test_an_id_that_names_no_point_is_one_line_not_damage(ingested, point_id, fragment):
    """A wrong --id is the user's mistake: never an internal error, never "the collection is damaged"."""
    line = one_line_error(invoke(search_app, ["--id", point_id]), fragment)
    assert "damaged" not in line


def test_search_without_a_query_says_what_to_give(ingested):
    one_line_error(invoke(search_app, []), "no query given: name image files or folders")


def test_a_closed_stdout_is_an_error_not_silence(ingested, digit_png):
    proc = subprocess.run([sys.executable, "-c", "from search.cli import main; main()", str(digit_png)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
                          env=os.environ.copy(), preexec_fn=lambda: os.close(1))
    assert proc.returncode == 2 and "standard output is closed" in proc.stderr
