import numpy as np
import pytest

from cbir.errors import CbirError
from cbir.settings import Settings
from cbir.store import EdgeStore, ServerStore, check_compatible, open_store, query

DIM = 16


@pytest.fixture(params=["edge", "server"])
def store(request, tmp_path):
    """Both backends behind the one interface: an Edge shard on disk, qdrant-client's engine in memory."""
    if request.param == "edge":
        s = EdgeStore(tmp_path / "qdrant", "test")
    else:
        s = ServerStore.connect(":memory:", None, "test")
    yield s
    s.close()


def _points(rng, n, offset=0):
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    ids = np.arange(offset, offset + n, dtype=np.int64) + 1_000_000_000
    labels = np.arange(offset, offset + n) % 10
    payloads = [{"label": int(lab), "split": "train", "index": int(i), "dataset": "mnist"} for i, lab in zip(ids, labels)]
    return ids, vectors, labels, payloads


def test_a_missing_collection_has_no_metadata_and_is_refused(store):
    assert store.metadata() is None
    with pytest.raises(CbirError, match="run `ingest run` first"):
        check_compatible(store.metadata(), "abc", DIM, "test")


def test_create_records_the_model(store):
    store.create(DIM, {"model_id": "abc", "dataset": "mnist"})
    assert store.metadata() == {"model_id": "abc", "dataset": "mnist", "dim": DIM}
    check_compatible(store.metadata(), "abc", DIM, "test")
    with pytest.raises(CbirError, match="built by model abc"):
        check_compatible(store.metadata(), "other", DIM, "test")
    with pytest.raises(CbirError, match="16-d vectors"):
        check_compatible(store.metadata(), "abc", 128, "test")


def test_queries_match_brute_force_numpy(store, rng):
    ids, vectors, labels, payloads = _points(rng, 500)
    store.create(DIM, {"model_id": "m"})
    store.upsert(ids[:250], vectors[:250], payloads[:250])
    store.upsert(ids[250:], vectors[250:], payloads[250:])
    store.flush()
    assert store.count() == 500
    queries = rng.normal(size=(5, DIM)).astype(np.float32)
    for q, hits in zip(queries, store.query_batch(queries, 20)):
        dist = np.linalg.norm(vectors - q, axis=1)
        order = np.argsort(dist)[:20]
        assert hits.ids.tolist() == ids[order].tolist()
        np.testing.assert_allclose(hits.distances, dist[order], rtol=1e-5)
        assert hits.labels.tolist() == labels[order].tolist()
    full = query(store, queries[0], 500)
    assert len(full.ids) == 500 and np.all(np.diff(full.distances) >= 0)


def test_label_filter(store, rng):
    ids, vectors, labels, payloads = _points(rng, 200)
    store.create(DIM, {"model_id": "m"})
    store.upsert(ids, vectors, payloads)
    hits = query(store, vectors[0], 7, label=3)
    assert len(hits.ids) == 7 and set(hits.labels.tolist()) == {3}


def test_reupserting_the_same_ids_overwrites(store, rng):
    ids, vectors, labels, payloads = _points(rng, 100)
    store.create(DIM, {"model_id": "m"})
    store.upsert(ids, vectors, payloads)
    store.upsert(ids, vectors + 1, payloads)
    store.flush()
    assert store.count() == 100
    hits = query(store, vectors[5] + 1, 1)
    assert hits.ids[0] == ids[5] and hits.distances[0] == pytest.approx(0, abs=1e-4)


def test_labels_lists_every_point_sorted_by_id(store, rng):
    ids, vectors, labels, payloads = _points(rng, 300)
    store.create(DIM, {"model_id": "m"})
    order = rng.permutation(300)
    store.upsert(ids[order], vectors[order], [payloads[i] for i in order])
    got_ids, got_labels = store.labels()
    assert got_ids.tolist() == ids.tolist() and got_labels.tolist() == labels.tolist()


def test_drop_removes_the_collection(store, rng):
    store.create(DIM, {"model_id": "m"})
    store.drop()
    assert store.metadata() is None


def test_edge_store_persists_and_reopens(tmp_path, rng):
    ids, vectors, labels, payloads = _points(rng, 50)
    s = EdgeStore(tmp_path, "c")
    s.create(DIM, {"model_id": "m"})
    s.upsert(ids, vectors, payloads)
    s.close()
    again = EdgeStore(tmp_path, "c")
    assert again.count() == 50 and again.metadata()["model_id"] == "m"
    again.close()


def test_edge_store_held_by_another_opener_is_busy(tmp_path):
    first = EdgeStore(tmp_path, "c")
    first.create(DIM, {"model_id": "m"})
    with pytest.raises(CbirError, match="busy"):
        EdgeStore(tmp_path, "c")
    first.close()
    EdgeStore(tmp_path, "c").close()  # free again once the first one closed


def test_open_store_picks_the_backend_from_settings(tmp_path):
    edge = open_store(Settings(home=tmp_path))
    assert isinstance(edge, EdgeStore) and str(tmp_path) in edge.location
    server = open_store(Settings(home=tmp_path, qdrant_url=":memory:", collection="x"))
    assert isinstance(server, ServerStore) and server.collection == "x"
    server.close()


def test_unreachable_server_is_a_clear_error(tmp_path):
    s = ServerStore.connect("http://127.0.0.1:9", None, "x", timeout=2)
    with pytest.raises(CbirError, match=r"http://127.0.0.1:9.*failed"):
        s.metadata()
