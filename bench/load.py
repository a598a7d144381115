"""`cbir serve` under load: N concurrent clients posting real PNG digits to /api/search, on loopback.

    python bench/load.py                          # builds the 60,000-point default collection in a temporary CBIR_HOME
    python bench/load.py --home DIR --seconds 20 --clients 1,4,16,64

Starts `cbir serve` as its own process, then for each client count runs that many keep-alive HTTP/1.1
connections (asyncio, one event loop: a light generator, so most of the 2 cores go to the server)
for --seconds each, every client posting a PNG of an MNIST test digit as fast as answers come: the data
set's own 28x28 image (--size 28, the default), or drawn dark on light at --size px, which the
preprocessing must find and clean (about 4.5 ms of one core at 140 px). Reports requests/s, p50/p95/p99 latency and errors, and beside it the same
queries through the Python API in one process (preprocess + encode + HNSW query, batched): the ceiling.
Writes bench/load.json and bench/load.md (bench/load-<size>px.* for other sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from run import machine, script  # noqa: E402

BOUNDARY = b"cbirloadbench"


def digit_pngs(n: int = 64, size: int = 28) -> list[bytes]:
    """MNIST test digits as PNG files: 28 = the data set's own images; larger = drawn dark on light, resized."""
    from PIL import Image

    from cbir import datasets
    from cbir.settings import Settings

    settings = Settings.from_env()
    test = datasets.load("mnist", "test", settings.data_dir, settings.cache_dir)
    out = []
    for i in range(n):
        buf = io.BytesIO()
        image = Image.fromarray(test.images[i]) if size == 28 else Image.fromarray(255 - test.images[i]).resize((size, size))
        image.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def request_bytes(png: bytes, port: int, top_k: int = 10) -> bytes:
    body = (b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data; name=\"image\"; filename=\"d.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--" + BOUNDARY + b"--\r\n")
    head = (f"POST /api/search?top_k={top_k} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY.decode()}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def client(port: int, requests: list[bytes], stop: float, latencies: list, errors: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.perf_counter() < stop:
            req = requests[i % len(requests)]
            i += 1
            t0 = time.perf_counter()
            writer.write(req)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if status != 200 or b'"results"' not in body:
                errors.append(status)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        errors.append(repr(exc))
    finally:
        writer.close()


async def level(port: int, requests: list[bytes], clients: int, seconds: float) -> dict:
    latencies: list = []
    errors: list = []
    start = time.perf_counter()
    stop = start + seconds
    await asyncio.gather(*(client(port, requests, stop, latencies, errors) for _ in range(clients)))
    wall = time.perf_counter() - start
    lat = np.asarray(latencies) * 1e3
    return {"clients": clients, "seconds": round(wall, 1), "requests": len(latencies),
            "requests_per_second": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "p95_ms": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
            "errors": len(errors), "error_examples": [str(e) for e in errors[:3]]}


def ceiling(pngs: list[bytes], seconds: float = 10.0, batch: int = 16) -> dict:
    """The same work in one process through the Python API, batched as the server batches: the upper bound."""
    from cbir import preprocess
    from cbir.encoders import with_encoder
    from cbir.settings import Settings
    from cbir.store import reading

    settings, encoder = with_encoder(Settings.from_env())
    with reading(settings, encoder.expected()) as reader:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            digits = np.stack([preprocess.load_digit_bytes(pngs[(done + j) % len(pngs)], "q.png") for j in range(batch)])
            reader.query_batch(encoder.encode(digits), 10, exact=False)
            done += batch
        wall = time.perf_counter() - start
    return {"batch": batch, "searches_per_second": round(done / wall, 1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path)
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", type=int, default=28, help="28: MNIST's own PNGs (light preprocessing); e.g. 140: drawings to find and clean")
    parser.add_argument("--out", type=Path, default=REPO / "bench")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="cbir-load-"))
    os.environ["CBIR_HOME"] = str(home)
    for name in ("CBIR_MODEL", "CBIR_QDRANT_URL", "CBIR_ENCODER", "CBIR_COLLECTION", "CBIR_DATASET"):
        os.environ.pop(name, None)
    env = dict(os.environ)
    server = None
    try:
        built = subprocess.run(script("ingest") + ["run"], env=env, capture_output=True, text=True)
        if built.returncode:
            raise SystemExit(built.stderr)
        pngs = digit_pngs(size=args.size)
        port = free_port()
        log = home / "serve-bench.log"  # the server's own log (uvicorn's access log goes to stdout), as a service keeps it
        with open(log, "w") as out:
            server = subprocess.Popen(script("cbir") + ["serve", "--port", str(port)], env=env,
                                      stdout=out, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while "serving collection" not in log.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"cbir serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        requests = [request_bytes(p, port) for p in pngs]
        asyncio.run(level(port, requests, 4, 2.0))  # warm-up
        rows = [asyncio.run(level(port, requests, int(n), args.seconds)) for n in args.clients.split(",")]
        server.terminate()
        server.wait(timeout=30)
        server = None
        top = ceiling(pngs)
    finally:
        if server is not None:
            server.kill()
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "size": args.size, "rows": rows, "ceiling": top}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "load" if args.size == 28 else f"load-{args.size}px"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    m, top = r["machine"], r["ceiling"]
    size = r.get("size", 28)
    desc = "MNIST's own 28x28" if size == 28 else f"{size}x{size} drawn"
    lines = [f"Measured {r['date']} on {m['cpu']}, {m['cores']} cores (`python bench/load.py{' --size ' + str(size) if size != 28 else ''}`): `cbir serve` on the "
             f"60,000-point default collection, clients on loopback posting {desc} PNG digits, top 10, HNSW.", "",
             "| clients | requests/s | p50 ms | p95 ms | p99 ms | errors | share of the in-process ceiling |",
             "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        share = row["requests_per_second"] / top["searches_per_second"] if top["searches_per_second"] else 0
        lines.append(f"| {row['clients']} | {row['requests_per_second']} | {row['p50_ms']} | {row['p95_ms']} | "
                     f"{row['p99_ms']} | {row['errors']} | {share:.0%} |")
    lines += ["", f"In-process ceiling (the same preprocessing, encoding and HNSW queries through the Python API, batches of "
              f"{top['batch']}, one process): {top['searches_per_second']} searches/s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
