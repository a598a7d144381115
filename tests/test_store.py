"""Both store backends behind the one interface, against brute-force numpy."""

import json

import numpy as np
import pytest

from cbir.errors import CbirError, CollectionDamaged, CollectionIncompatible, CollectionMissing
from cbir.settings import Settings
from cbir.store import CollectionMeta, Expected, check_compatible, open_backend
from cbir.store.edge import EdgeBackend
from cbir.store.server import Connection, ServerBackend

DIM = 16


def fresh_server() -> ServerBackend:
    from qdrant_client import QdrantClient

    return ServerBackend(Connection(QdrantClient(location=":memory:"), "in-process Qdrant (:memory:)", 10, True))


@pytest.fixture(params=["edge", "server"])
def backend(request, tmp_path):
    """An Edge store on disk, or qdrant-client's in-process engine."""
    b = EdgeBackend(tmp_path / "qdrant", wait=5) if request.param == "edge" else fresh_server()
    yield b
    b.close()


def meta(name="test", model_id="m", dim=DIM, points=0, **kw) -> CollectionMeta:
    return CollectionMeta(name=name, dim=dim, model_id=model_id, encoder="test", encoder_sha256="s" * 64,
                          dataset="mnist", points=points, **kw)


def _points(rng, n, offset=0):
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    ids = np.arange(offset, offset + n, dtype=np.int64) + 1_000_000_000
    labels = np.arange(offset, offset + n) % 10
    payloads = [{"label": int(lab), "split": "train", "index": int(i), "dataset": "mnist"} for i, lab in zip(ids, labels)]
    return ids, vectors, labels, payloads


def build(backend, name, rng, n=500, model_id="m"):
    ids, vectors, labels, payloads = _points(rng, n)
    with backend.writer(name) as session:
        b = session.build(meta(name, model_id), expected_points=n)
        b.upsert(ids[: n // 2], vectors[: n // 2], payloads[: n // 2])
        b.upsert(ids[n // 2 :], vectors[n // 2 :], payloads[n // 2 :])
        session.publish(b, meta(name, model_id))
    return ids, vectors, labels


def test_a_missing_collection_is_refused_with_what_to_run(backend):
    with pytest.raises(CollectionMissing, match="does not exist yet.*; run `ingest run` first"):
        backend.reader("test")


def test_queries_match_brute_force_numpy(backend, rng):
    ids, vectors, labels = build(backend, "test", rng)
    reader = backend.reader("test")
    try:
        assert reader.count() == 500 and reader.meta.points == 500 and reader.meta.complete
        queries = rng.normal(size=(5, DIM)).astype(np.float32)
        for q, hits in zip(queries, reader.query_batch(queries, 20)):
            dist = np.linalg.norm(vectors - q, axis=1)
            order = np.argsort(dist)[:20]
            assert hits.ids.tolist() == ids[order].tolist()
            np.testing.assert_allclose(hits.distances, dist[order], rtol=1e-5)
            assert hits.labels == labels[order].tolist()
        full = reader.query_batch(queries[:1], 500)[0]
        assert len(full.ids) == 500 and np.all(np.diff(full.distances) >= 0)
        points = reader.points(with_vectors=True, fields=("label",))
        assert points.ids.tolist() == ids.tolist() and points.payloads["label"] == labels.tolist()
        np.testing.assert_allclose(points.vectors, vectors, rtol=1e-6)
    finally:
        reader.close()


def test_label_filter(backend, rng):
    ids, vectors, _ = build(backend, "test", rng, n=200)
    reader = backend.reader("test")
    hits = reader.query_batch(vectors[:1], 7, label=3)[0]
    reader.close()
    assert len(hits.ids) == 7 and set(hits.labels) == {3}


def test_a_rebuild_replaces_the_collection_whole(backend, rng):
    build(backend, "test", rng, n=300, model_id="old")
    ids, vectors, _ = build(backend, "test", rng, n=100, model_id="new")
    reader = backend.reader("test")
    try:
        assert reader.meta.model_id == "new" and reader.count() == 100
        assert reader.points(with_vectors=False, fields=()).ids.tolist() == ids.tolist()
    finally:
        reader.close()
    names = [c.name for c in backend.collections()]
    assert names == ["test"]  # the old one is gone, not listed beside


def test_an_update_copies_and_changes_only_the_copy(backend, rng):
    ids, vectors, _ = build(backend, "test", rng, n=100)
    before = backend.reader("test")  # a reader of the old generation, open during the update
    with backend.writer("test") as session:
        b = session.build(meta(), copy_current=True, expected_points=10)
        b.delete(ids[:10])
        more_ids, more_vectors, _, more_payloads = _points(rng, 5, offset=1000)
        b.upsert(more_ids, more_vectors, more_payloads)
        session.publish(b, meta())
    try:
        if before.local:  # the embedded store keeps the old generation whole for its readers (a server updates in place)
            assert before.count() == 100
    finally:
        before.close()
    after = backend.reader("test")
    try:
        assert after.count() == 95
        got = set(after.points(with_vectors=False, fields=()).ids.tolist())
        assert got == set(ids[10:].tolist()) | set(more_ids.tolist())
    finally:
        after.close()


def test_drop_removes_the_collection(backend, rng):
    build(backend, "test", rng, n=50)
    with backend.writer("test") as session:
        assert session.drop() is True
    with pytest.raises(CollectionMissing):
        backend.reader("test")
    assert backend.collections() == []


def test_an_aborted_build_leaves_the_old_collection(backend, rng):
    build(backend, "test", rng, n=60)
    with backend.writer("test") as session:
        b = session.build(meta(model_id="other"), expected_points=10)
        ids, vectors, _, payloads = _points(rng, 10, offset=500)
        b.upsert(ids, vectors, payloads)
        session.abort(b)
    reader = backend.reader("test")
    assert reader.meta.model_id == "m" and reader.count() == 60
    reader.close()


def test_non_finite_vectors_are_refused(backend, rng):
    build(backend, "test", rng, n=20)
    reader = backend.reader("test")
    try:
        with pytest.raises(CbirError, match="NaN or infinite"):
            reader.query_batch(np.full((1, DIM), np.nan, np.float32), 3)
    finally:
        reader.close()
    with backend.writer("test") as session:
        b = session.build(meta(), expected_points=1)
        with pytest.raises(CbirError, match="NaN or infinite"):
            b.upsert(np.array([1]), np.full((1, DIM), np.inf, np.float32), [{"label": 0}])
        session.abort(b)


def test_check_compatible_names_each_mismatch():
    m = meta(points=5, complete=True)
    ok = Expected("m", "s" * 64, DIM, "test")
    assert check_compatible(m, ok, "c", "`rebuild`", "`build`") is m
    with pytest.raises(CollectionIncompatible, match="built by model m .* not the current model x"):
        check_compatible(m, Expected("x", "s" * 64, DIM, "test"), "c", "`rebuild`", "`build`")
    with pytest.raises(CollectionIncompatible, match="holds 16-d vectors"):
        check_compatible(m, Expected("m", "s" * 64, 128, "test"), "c", "`rebuild`", "`build`")
    with pytest.raises(CollectionIncompatible, match=r"\.tflite file"):
        check_compatible(m, Expected("m", "t" * 64, DIM, "test"), "c", "`rebuild`", "`build`")
    with pytest.raises(CollectionIncompatible, match="holds mnist, not fashion-mnist"):
        check_compatible(m, Expected("m", "s" * 64, DIM, "test", "fashion-mnist"), "c", "`rebuild`", "`build`")
    with pytest.raises(CollectionMissing, match="run `build` first"):
        check_compatible(None, ok, "c", "`rebuild`", "`build`")


@pytest.mark.parametrize("raw, fragment", [
    ([1, 2], "holds list"), ("text", "holds str"), (None, "holds null"), ({"schema": 2}, "lacks 'name'"),
    ({**meta().to_json(), "dim": "16"}, "'dim' is '16', not int"), ({**meta().to_json(), "points": True}, "not int"),
    ({**meta().to_json(), "name": "../x"}, "contains '/'"),
])
def test_a_malformed_record_is_damage_not_a_traceback(raw, fragment):
    with pytest.raises(CollectionDamaged, match=fragment):
        CollectionMeta.from_json(raw, "collection.json")


def test_an_older_schema_is_incompatible():
    with pytest.raises(CollectionIncompatible, match="schema 1"):
        CollectionMeta.from_json({"model_id": "x", "dim": 16}, "collection.json")


def test_edge_collections_reopen_in_another_backend_object(tmp_path, rng):
    build(EdgeBackend(tmp_path, wait=1), "c", rng, n=50)
    reader = EdgeBackend(tmp_path, wait=1).reader("c")
    assert reader.count() == 50 and reader.meta.model_id == "m"
    reader.close()


def test_many_readers_at_once_in_one_process(tmp_path, rng):
    """No write-ahead-log lock: a published shard opens any number of times."""
    backend = EdgeBackend(tmp_path, wait=1)
    build(backend, "c", rng, n=50)
    readers = [backend.reader("c") for _ in range(8)]
    assert [r.count() for r in readers] == [50] * 8
    for r in readers:
        r.close()


def test_open_backend_picks_the_backend_from_settings(tmp_path):
    edge = open_backend(Settings(home=tmp_path))
    assert isinstance(edge, EdgeBackend) and str(tmp_path) in edge.location
    server = open_backend(Settings(home=tmp_path, qdrant_url=":memory:", collection="x"))
    assert isinstance(server, ServerBackend)
    server.close()


def test_server_collections_are_aliases_switched_atomically(rng):
    backend = fresh_server()
    build(backend, "test", rng, n=30, model_id="one")
    first = backend.conn.client.get_aliases().aliases[0].collection_name
    build(backend, "test", rng, n=40, model_id="two")
    aliases = backend.conn.client.get_aliases().aliases
    assert [a.alias_name for a in aliases] == ["test"] and aliases[0].collection_name != first
    # the old physical collection is gone; only the one behind the alias is left
    assert [c.name for c in backend.conn.client.get_collections().collections] == [aliases[0].collection_name]
    reader = backend.reader("test")
    assert reader.meta.model_id == "two" and reader.count() == 40


def test_server_records_shards_and_replicas_where_the_engine_accepts_them(rng):
    from qdrant_client import QdrantClient

    backend = ServerBackend(Connection(QdrantClient(location=":memory:"), "mem", 10, True), layout={"shards": 3, "replicas": 2})
    build(backend, "test", rng, n=10)  # the in-process engine takes the arguments (a real server applies them)
    assert backend.reader("test").count() == 10


def test_edge_stores_its_record_as_json_beside_the_shard(tmp_path, rng):
    build(EdgeBackend(tmp_path, wait=1), "c", rng, n=10)
    current = json.loads((tmp_path / "c" / "CURRENT").read_text())
    record = json.loads((tmp_path / "c" / current["generation"] / "collection.json").read_text())
    assert record["schema"] == 2 and record["points"] == 10 and record["complete"] is True


def test_server_names_reserved_for_builds_and_locks_are_refused():
    from cbir.errors import BadName
    from cbir.names import check_collection_name

    for name in ("c--g-18eb5c9a51469703-83213da1", "cbir-lock--abc"):
        with pytest.raises(BadName, match="reserved"):
            check_collection_name(name)


def test_server_updates_copy_and_switch_readers_follow(rng):
    backend = fresh_server()
    ids, vectors, _ = build(backend, "test", rng, n=40)
    reader = backend.reader("test")
    before = reader.physical
    with backend.writer("test") as session:
        b = session.build(meta(), copy_current=True, expected_points=5)
        more_ids, more_vectors, _, more_payloads = _points(rng, 5, offset=1000)
        b.upsert(more_ids, more_vectors, more_payloads)
        assert reader.count() == 40  # the copy is a new collection: the old one is untouched meanwhile
        session.publish(b, meta())
    # The old physical collection is gone; the reader follows the alias to the new one.
    hits = reader.query_batch(more_vectors[:1], 1)[0]
    assert reader.physical != before and hits.ids[0] == more_ids[0] and reader.count() == 45


def test_server_writers_take_turns(rng, monkeypatch):
    from cbir.errors import StoreBusy

    backend = fresh_server()
    backend.wait = 0.5
    with backend.writer("test"):
        start = __import__("time").monotonic()
        with pytest.raises(StoreBusy, match="is busy: pid .* is writing to it"):
            with backend.writer("test"):
                pass
        assert __import__("time").monotonic() - start >= 0.5
    with backend.writer("test"):  # free again
        pass
    assert [c.name for c in backend.conn.client.get_collections().collections] == []  # the lock left nothing behind


def test_a_server_lock_of_a_killed_writer_is_taken_over(rng, monkeypatch):
    from cbir.store import server

    backend = fresh_server()
    backend.wait = 5
    stale = server.ServerLock(backend, "test").acquire(1)
    stale.held = False  # the writer died without releasing it
    monkeypatch.setattr(server, "STALE_LOCK_SECONDS", 0.2)
    __import__("time").sleep(0.3)
    with backend.writer("test"):
        pass
