"""`cbir serve`'s JSON API, through FastAPI's TestClient, on a real small collection.

The collection: the first 2000 MNIST training images, encoded by the packaged default encoder
(dae-umap) into an embedded Qdrant Edge store under a temporary CBIR_HOME.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from cbir import preprocess
from cbir.settings import Settings

if os.environ.get("CBIR_REQUIRE_OPTIONAL") != "1":
    pytest.importorskip("fastapi", reason="FastAPI not installed: pip install fastapi uvicorn python-multipart httpx")
    pytest.importorskip("httpx", reason="httpx not installed (FastAPI's TestClient needs it)")

with warnings.catch_warnings():  # newer Starlette prefers httpx2; httpx is what FastAPI's docs use
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from serve.app import MAX_BODY_BYTES, create_app
from serve.service import SearchService

N_POINTS = 2000
QUERIES = 6  # the first MNIST test images: labels 7 2 1 0 4 1


def settings_for(home, data_dir) -> Settings:
    return Settings(home=home, data_dir=data_dir)  # everything else default: mnist, dae-umap, embedded Edge


@pytest.fixture(scope="module")
def collection(tmp_path_factory, mnist_dir):
    """A real embedded collection, built the way `ingest run --limit 2000` builds one."""
    from cbir.encoders import load_encoder
    from cbir.sources import source_for
    from ingest.pipeline import ingest

    settings = settings_for(tmp_path_factory.mktemp("serve-api-home"), mnist_dir)
    report = ingest(settings, load_encoder(settings), source_for(settings, first=N_POINTS), progress=False)
    assert report.total == N_POINTS
    return settings


@pytest.fixture(scope="module")
def queries(tmp_path_factory, mnist_test):
    """Test-set digits drawn dark on light and enlarged, as a person would save them: (path, label)."""
    folder = tmp_path_factory.mktemp("serve-queries")
    out = []
    for i in range(QUERIES):
        path = folder / f"test{i}.png"
        Image.fromarray(255 - mnist_test.images[i]).resize((140, 140)).save(path)
        out.append((path, int(mnist_test.labels[i])))
    return out


@pytest.fixture(scope="module")
def cli_answers(collection, queries):
    """What `search --json -k 10` prints for each query (run before the app holds the store open)."""
    from typer.testing import CliRunner

    from search.cli import app as search_app

    env = {name: None for name in os.environ if name.startswith("CBIR_")}
    env.update(CBIR_HOME=str(collection.home), CBIR_DATA_DIR=str(collection.data_dir), COLUMNS="200", NO_COLOR="1")
    result = CliRunner().invoke(search_app, [str(p) for p, _ in queries] + ["--json", "-k", "10"], env=env)
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.output.strip().splitlines()]
    assert len(answers) == len(queries)
    return answers


@pytest.fixture(scope="module")
def client(collection, cli_answers):
    with TestClient(create_app(service=SearchService(collection))) as c:
        yield c


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def png_of(path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "image/png")


def one_line_error(response, status: int, *fragments: str) -> str:
    """The contract for bad requests: the status, a JSON body {"error": one line}, no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    message = body["error"]
    assert message and "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# -- searching ------------------------------------------------------------------------------------

def test_search_answers_like_the_cli(client, queries, cli_answers):
    for (path, label), expected in zip(queries, cli_answers):
        response = client.post("/api/search", files={"image": png_of(path)}, params={"exact": "true"})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert set(answer) == {"query", "match", "score", "input", "results"}
        assert answer["query"] == path.name and answer["match"] == expected["match"] and answer["score"] == expected["score"]
        # The same neighbours, labels and distances as `search --json`, field for field.
        assert answer["results"] == expected["results"]
        labels = [r["label"] for r in answer["results"]]
        assert labels.count(label) >= 7, labels  # a real encoder finds mostly the query's digit


def test_search_input_is_the_digit_the_model_sees(client, queries):
    path, _ = queries[0]
    answer = client.post("/api/search", files={"image": png_of(path)}).json()
    prefix = "data:image/png;base64,"
    assert answer["input"].startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(answer["input"][len(prefix):]))) as img:
        assert img.format == "PNG" and img.size == (28, 28) and img.mode == "L"
        seen = np.asarray(img, dtype=np.int16)
    expected = np.round(preprocess.load_digit(path) * 255).astype(np.int16)
    assert np.abs(seen - expected).max() <= 1


def test_a_batch_answers_in_order_with_errors_in_place(client, queries, cli_answers):
    files = [
        ("image", png_of(queries[0][0])),
        ("image", ("notes.txt", b"just text", "text/plain")),
        ("image", png_of(queries[2][0])),
        ("image", ("blank.png", _png(np.full((50, 50), 255, np.uint8)), "image/png")),
        ("image", png_of(queries[1][0])),
    ]
    response = client.post("/api/search", files=files, params={"exact": "true"})
    assert response.status_code == 200, response.text
    answers = response.json()
    assert isinstance(answers, list) and [a["query"] for a in answers] == ["test0.png", "notes.txt", "test2.png", "blank.png", "test1.png"]
    assert answers[0]["results"] == cli_answers[0]["results"]
    assert answers[2]["results"] == cli_answers[2]["results"]
    assert answers[4]["results"] == cli_answers[1]["results"]
    assert set(answers[1]) == {"query", "error"} and "not an image" in answers[1]["error"]
    assert set(answers[3]) == {"query", "error"} and "no ink found" in answers[3]["error"]


def test_one_image_is_an_object_and_two_are_a_list(client, queries):
    path = queries[0][0]
    assert isinstance(client.post("/api/search", files={"image": png_of(path)}).json(), dict)
    two = client.post("/api/search", files=[("image", png_of(path)), ("image", png_of(path))]).json()
    assert isinstance(two, list) and len(two) == 2 and two[0] == two[1]


@pytest.mark.parametrize("fmt, mode", [("JPEG", "L"), ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "L"), ("WEBP", "RGB"), ("PNG", "RGBA")])
def test_every_format_search_accepts(client, queries, fmt, mode):
    path, label = queries[0]
    with Image.open(path) as img:
        image = img.convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    response = client.post("/api/search", files={"image": (f"seven.{fmt.lower()}", buf.getvalue())}, params={"top_k": 5})
    assert response.status_code == 200, response.text
    assert [r["label"] for r in response.json()["results"]].count(label) >= 3


def test_label_filter(client, queries):
    response = client.post("/api/search", files={"image": png_of(queries[0][0])}, params={"label": 3, "top_k": 7})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 7 and {r["label"] for r in results} == {3}
    assert [r["rank"] for r in results] == list(range(1, 8))
    distances = [r["distance"] for r in results]
    assert distances == sorted(distances)


@pytest.mark.parametrize("top_k", [1, 37, 1000])
def test_top_k_in_bounds(client, queries, top_k):
    response = client.post("/api/search", files={"image": png_of(queries[0][0])}, params={"top_k": top_k, "exact": "true"})
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == top_k


@pytest.mark.parametrize(
    "params, status, fragment",
    [
        ({"top_k": 0}, 422, "top_k"),
        ({"top_k": 1001}, 422, "top_k"),
        ({"top_k": "ten"}, 422, "top_k"),
        ({"label": "seven"}, 400, "unknown label seven"),  # labels are text too (a folder's subfolder names)
        ({"label": -1}, 400, "unknown label -1"),
        ({"label": 12}, 400, "unknown label 12"),
        ({"exact": "perhaps"}, 422, "exact"),
    ],
)
def test_bad_parameters_get_one_line(client, queries, params, status, fragment):
    response = client.post("/api/search", files={"image": png_of(queries[0][0])}, params=params)
    one_line_error(response, status, fragment)


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("notes.png", lambda q: b"just text", "not an image"),
        ("empty.png", lambda q: b"", "not an image"),
        ("cut.png", lambda q: q.read_bytes()[:200], "corrupt or truncated"),
        ("blank.png", lambda q: _png(np.zeros((30, 30), np.uint8)), "no ink found"),
    ],
)
def test_a_bad_image_gets_400(client, queries, name, content, fragment):
    response = client.post("/api/search", files={"image": (name, content(queries[0][0]), "image/png")})
    message = one_line_error(response, 400, fragment)
    if name != "blank.png":
        assert message.startswith(name)


def test_no_image_field_gets_one_line(client):
    one_line_error(client.post("/api/search"), 422, "image")
    one_line_error(client.post("/api/search", files={"picture": ("x.png", b"x")}), 422, "image")
    one_line_error(client.post("/api/search", data={"image": "not a file"}), 422, "image", "file")
    one_line_error(client.post("/api/search", json={"image": "x"}), 422, "image")


def test_too_many_images_gets_400(client):
    files = [("image", (f"{i}.png", b"x")) for i in range(101)]
    one_line_error(client.post("/api/search", files=files), 400, "at most 100")


# -- the body cap ---------------------------------------------------------------------------------

def test_an_oversize_body_gets_413(client):
    body = b"x" * (MAX_BODY_BYTES + 1)
    response = client.post("/api/search", files={"image": ("big.png", body, "image/png")})
    one_line_error(response, 413, "too large", "16 MiB")


def test_an_oversize_chunked_body_gets_413(client):
    def chunks():  # no Content-Length: Transfer-Encoding: chunked
        for _ in range(20):
            yield b"x" * 2**20

    response = client.post("/api/search", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    one_line_error(response, 413, "too large")


def test_a_body_without_length_is_not_read_past_the_cap():
    """Straight through ASGI: an endless chunked body is read only up to the cap, then 413."""
    limit = 64 * 2**10
    app = create_app(service=FakeService(), max_body_bytes=limit)
    pulled = 0
    sent: list[dict] = []

    head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n'

    async def receive():  # a well-formed multipart file part that never ends
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": head if pulled == 1 else b"x" * 4096, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/search", "raw_path": b"/api/search", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"test"), (b"content-type", b"multipart/form-data; boundary=b"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1), "server": ("test", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 413 and "too large" in json.loads(body)["error"]
    assert pulled * 4096 <= limit + 2 * 4096  # stopped at the first chunk past the cap


# -- point images, listings, health, docs, the page -------------------------------------------------

def test_point_image_is_the_stored_png(client, mnist_dir):
    from cbir import datasets

    response = client.get("/api/points/1000000005/image.png")  # MNIST train #5
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(response.content)) as img:
        assert img.format == "PNG" and img.size == (28, 28)
        pixels = np.asarray(img.convert("L"))
    train = datasets.load_split("mnist", "train", mnist_dir)
    assert np.array_equal(pixels, train.images[5])


@pytest.mark.parametrize("point_id", ["1000002000", "1100000001", "2000000005", "-1", "99999999999999", "1" + "0" * 30])
def test_unknown_point_gets_404(client, point_id):
    one_line_error(client.get(f"/api/points/{point_id}/image.png"), 404, "no point")


def test_a_point_id_that_is_not_a_number_gets_422(client):
    one_line_error(client.get("/api/points/seven/image.png"), 422, "point_id")


def test_info(client):
    info = client.get("/api/info").json()
    assert info["collection"] == "cbir-mnist-dae-umap" and info["encoder"] == "dae-umap" and info["dataset"] == "mnist"
    assert info["points"] == N_POINTS and info["labels"] == list(range(10)) and info["class_names"] == {}
    assert len(info["model_id"]) == 16 and info["limits"]["max_top_k"] == 1000


def test_collections(client):
    listed = client.get("/api/collections").json()
    assert listed == [{"name": "cbir-mnist-dae-umap", "points": N_POINTS, "model_id": listed[0]["model_id"], "encoder": "dae-umap",
                       "dataset": "mnist", "complete": True, "serving": True}]


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "collection": "cbir-mnist-dae-umap", "points": N_POINTS}


def test_openapi_lists_the_routes(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/search", "/api/points/{point_id}/image.png", "/api/collections", "/api/info", "/healthz"} <= set(spec["paths"])
    search = spec["paths"]["/api/search"]["post"]
    body = search["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "image" in spec["components"]["schemas"][body]["properties"] and "JSON list" in search["description"]
    assert {p["name"] for p in search["parameters"]} == {"top_k", "label", "exact"}
    assert client.get("/docs").status_code == 200


def test_the_page_and_its_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="pad"' in page.text and 'name="viewport"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in [("app.js", "javascript"), ("style.css", "text/css")]:
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]


def test_unknown_routes_and_methods_get_one_line(client):
    one_line_error(client.get("/nowhere"), 404, "not found")
    one_line_error(client.get("/static/nothing.js"), 404)
    one_line_error(client.delete("/api/search"), 405)


# -- without a usable collection, and when something breaks ---------------------------------------

class FakeService:
    """A service that is ready but whose engine fails unexpectedly."""

    def ready(self):
        return True

    def info(self):
        raise RuntimeError("engine exploded at /secret/path")

    def search(self, files, top_k, label, exact):
        raise RuntimeError("engine exploded at /secret/path")

    def close(self):
        pass


def test_an_unexpected_error_is_a_500_without_details(caplog):
    with caplog.at_level(logging.ERROR, logger="serve"), TestClient(create_app(service=FakeService())) as c:
        response = c.post("/api/search", files={"image": ("x.png", b"x")})
        assert one_line_error(response, 500) == "internal error"
        assert one_line_error(c.get("/api/info"), 500) == "internal error"
    assert "engine exploded" in caplog.text and "Traceback" in caplog.text  # in the server's log only


def test_without_a_collection_health_is_503(tmp_path, mnist_dir):
    app = create_app(settings_for(tmp_path / "empty-home", mnist_dir))
    with TestClient(app) as c:
        response = c.get("/healthz")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable" and "does not exist yet" in response.json()["error"]
        one_line_error(c.post("/api/search", files={"image": ("x.png", b"x")}), 503, "does not exist yet", "ingest run")
        one_line_error(c.get("/api/info"), 503)
        assert c.get("/").status_code == 200  # the page still loads, and shows the error


def test_serve_command_help_and_errors(tmp_path, mnist_dir):
    from serve.cli import app as serve_app
    from tests.cli_helpers import invoke, one_line_error as cli_one_line_error

    shown = invoke(serve_app, ["--help"])
    assert shown.exit_code == 0
    for text in ("--host", "--port", "CBIR_HOME", "CBIR_DATA_DIR", "CBIR_COLLECTION", "CBIR_ENCODER", "CBIR_QDRANT_URL", "CBIR_DATASET"):
        assert text in shown.output
    missing = invoke(serve_app, ["--home", str(tmp_path / "nothing"), "--data-dir", str(mnist_dir), "--port", "0"])
    cli_one_line_error(missing, "does not exist yet", "ingest run")
    cli_one_line_error(invoke(serve_app, ["--port", "70000"]), "--port")



def test_a_qdrant_server_collection_is_served_too(tmp_path, mnist_dir, queries):
    """The server code path (qdrant-client's in-process engine stands in for a server)."""
    from cbir.encoders import load_encoder
    from cbir.sources import source_for
    from ingest.pipeline import ingest
    from tests.test_store import fresh_server

    settings = Settings(home=tmp_path / "home", data_dir=mnist_dir, qdrant_url=":memory:")
    server = fresh_server()
    encoder = load_encoder(settings)
    ingest(settings, encoder, source_for(settings, first=300), progress=False, backend=server)
    with TestClient(create_app(service=SearchService(settings, backend=server, encoder=encoder))) as c:
        listed = c.get("/api/collections").json()
        assert [(x["name"], x["points"], x["complete"], x["serving"]) for x in listed] == [("cbir-mnist-dae-umap", 300, True, True)]
        answer = c.post("/api/search", files={"image": png_of(queries[0][0])}, params={"top_k": 3}).json()
        assert len(answer["results"]) == 3 and all(r["id"] < 1_000_000_300 for r in answer["results"])


def test_hnsw_answers_are_the_exact_ones_nearly_always(client, queries):
    for path, _ in queries:
        approx = client.post("/api/search", files={"image": png_of(path)}).json()["results"]
        exact = client.post("/api/search", files={"image": png_of(path)}, params={"exact": "true"}).json()["results"]
        assert len({r["id"] for r in approx} & {r["id"] for r in exact}) >= 9


def test_concurrent_requests_are_searched_in_batches(collection, queries):
    """Micro-batching: requests arriving together share one encode and one batch query."""
    import threading

    service = SearchService(collection, window=0.2)
    try:
        files = [(p.name, p.read_bytes()) for p, _ in queries]
        answers: list = [None] * 12
        barrier = threading.Barrier(12)

        def ask(i):
            barrier.wait()
            answers[i] = service.search([files[i % len(files)]], top_k=5, exact=True)[0]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert service.batcher.jobs == 12 and service.batcher.batches < 12
        single = [service.search([f], top_k=5, exact=True)[0]["results"] for f in files]
        assert all(a["results"] == single[i % len(files)] for i, a in enumerate(answers))  # batching changes no answer
    finally:
        service.close()


def test_a_rebuilt_collection_is_served_without_a_restart(tmp_path, mnist_dir, queries, monkeypatch):
    from cbir.encoders import load_encoder
    from cbir.sources import source_for
    from ingest.pipeline import ingest
    from serve import service as service_module

    settings = Settings(home=tmp_path / "home", data_dir=mnist_dir, collection="live")
    encoder = load_encoder(settings)
    ingest(settings, encoder, source_for(settings, first=500), progress=False)
    monkeypatch.setattr(service_module, "RELOAD_CHECK_SECONDS", 0.0)
    service = SearchService(settings)
    try:
        assert service.info()["points"] == 500
        ingest(settings, encoder, source_for(settings, first=800), progress=False)  # an update: a new generation
        assert service.info()["points"] == 800
        answer = service.search([(queries[0][0].name, queries[0][0].read_bytes())], top_k=3)[0]
        assert len(answer["results"]) == 3
    finally:
        service.close()
