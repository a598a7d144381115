"""While `cbir serve` holds the embedded store, the command line still works on it (real processes).

`search` and `cbir eval run` read the same store beside the server and answer as they would alone;
`ingest run` builds a new generation beside the one served, and the server serves it without a restart.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def cli(module: str, *args: str, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", f"from {module} import main; main()", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def post_image(url: str, path: Path) -> dict:
    boundary = "cbir-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture
def served(tmp_path, mnist_dir):
    """A 1000-point collection in a fresh home, and `cbir serve` on it in a subprocess: (env, url)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBIR_")}
    env.update(CBIR_HOME=str(tmp_path / "home"), CBIR_DATA_DIR=str(mnist_dir), CBIR_COLLECTION="shared")
    built = cli("ingest.cli", "run", "--limit", "1000", "--collection", "shared", env=env)
    assert built.returncode == 0, built.stderr
    out = tmp_path / "serve.out"
    with open(out, "wb") as stdout, open(tmp_path / "serve.err", "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", "from serve.cli import main; main()", "--port", "0"],
                                cwd=REPO, env=env, stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + 120
        while not (found := re.search(r"at (http://127\.0\.0\.1:\d+/)", out.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"cbir serve did not start: {(tmp_path / 'serve.err').read_text()[-2000:]}")
            time.sleep(0.1)
        yield env, found.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_search_and_eval_work_beside_the_server_and_agree_with_it(served, digit_png):
    env, url = served
    searched = cli("search.cli", str(digit_png), "--json", env=env)
    assert searched.returncode == 0, searched.stderr
    from_cli = json.loads(searched.stdout)
    from_server = post_image(url + "api/search?exact=true&top_k=10", digit_png)
    assert [r["id"] for r in from_cli["results"]] == [r["id"] for r in from_server["results"]]
    assert [r["distance"] for r in from_cli["results"]] == pytest.approx([r["distance"] for r in from_server["results"]], abs=1e-5)
    evaluated = cli("cbir.cli", "eval", "run", "--queries", "50", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "50 queries vs 1000 points" in evaluated.stdout


def test_an_ingest_beside_the_server_is_served_without_a_restart(served, digit_png):
    env, url = served
    assert get(url + "healthz")["points"] == 1000
    grown = cli("ingest.cli", "run", "--limit", "1500", "--collection", "shared", env=env)
    assert grown.returncode == 0, grown.stderr
    assert "now holds 1500 points" in grown.stdout
    deadline = time.monotonic() + 30  # the server looks for a new generation between requests
    while get(url + "api/info")["points"] != 1500:
        assert time.monotonic() < deadline, "still serving the old generation"
        time.sleep(0.5)
    assert {c["name"]: c["points"] for c in get(url + "api/collections")}["shared"] == 1500
    answer = post_image(url + "api/search?top_k=5", digit_png)
    assert len(answer["results"]) == 5
    searched = cli("search.cli", str(digit_png), "--json", "--top-k", "5", env=env)
    assert [r["id"] for r in json.loads(searched.stdout)["results"]] == [r["id"] for r in answer["results"]]
