"""Train -> ingest -> search -> eval on real MNIST, checked against an independent computation."""

import numpy as np
import pytest
from sklearn.metrics import label_ranking_average_precision_score

from cbir import datasets
from cbir.settings import Settings
from cbir.sources import source_for
from eval.runner import evaluate, select_queries
from ingest.pipeline import ingest
from search.query import search_files
from tests.test_store import fresh_server

N_DB = 3000


@pytest.fixture(scope="module")
def edge_settings(tmp_path_factory, mnist_dir, tiny_model, tiny_encoder):
    settings = Settings(home=tmp_path_factory.mktemp("home"), data_dir=mnist_dir, model=tiny_model, collection="small")
    report = ingest(settings, tiny_encoder, source_for(settings, first=N_DB), progress=False)
    assert report.total == N_DB
    return settings


def test_eval_equals_brute_force_numpy_and_scikit_learn(edge_settings, tiny_encoder, mnist_dir):
    report = evaluate(edge_settings, tiny_encoder, n_queries=120, seed=0, progress=False)
    # Independent path: encode, brute-force distances in numpy, rank with scikit-learn.
    train = datasets.load_split("mnist", "train", mnist_dir)
    test = datasets.load_split("mnist", "test", mnist_dir)
    idx = np.random.default_rng(0).choice(10000, 120, replace=False)
    assert report.queries.names == [f"test #{i}" for i in idx]
    db = tiny_encoder.encode(train.images[:N_DB]).astype(np.float64)
    q = tiny_encoder.encode(test.images[idx]).astype(np.float64)
    dist = np.sqrt(((q[:, None, :] - db[None, :, :]) ** 2).sum(-1))
    relevant = test.labels[idx][:, None] == train.labels[:N_DB][None, :]
    expected = label_ranking_average_precision_score(relevant, -dist)
    assert report.lrap.mean() == pytest.approx(expected, abs=1e-4)
    order = np.argsort(dist, axis=1)
    p10 = np.take_along_axis(relevant, order[:, :10], axis=1).mean()
    assert report.p_at_10.mean() == pytest.approx(p10, abs=1e-9)
    assert report.summary()["n_queries"] == 120
    ap100 = []
    for row, rel in zip(order[:, :100], relevant):
        top = rel[row]
        ap100.append(sum(top[:k + 1].mean() for k in np.flatnonzero(top)) / min(100, rel.sum()))
    assert report.ap_at_100.mean() == pytest.approx(np.mean(ap100), abs=1e-9)


def test_search_finds_a_training_image_itself_at_distance_zero(edge_settings, tiny_encoder, mnist_dir, tmp_path):
    from PIL import Image

    train = datasets.load_split("mnist", "train", mnist_dir)
    path = tmp_path / "train17.png"
    Image.fromarray(train.images[17]).save(path)
    [result] = search_files(edge_settings, [path], top_k=3, encoder=tiny_encoder)
    assert result.hits.ids[0] == 1_000_000_017
    assert result.hits.distances[0] == pytest.approx(0, abs=1e-5)
    assert result.hits.labels[0] == train.labels[17]


def test_server_backend_gives_the_same_evaluation(edge_settings, tiny_encoder):
    settings = edge_settings.but(qdrant_url=":memory:")
    server = fresh_server()
    report = ingest(settings, tiny_encoder, source_for(settings, first=N_DB), progress=False, backend=server)
    assert report.total == N_DB
    on_server = evaluate(settings, tiny_encoder, n_queries=30, seed=5, progress=False, backend=server)
    embedded = evaluate(edge_settings, tiny_encoder, n_queries=30, seed=5, progress=False)
    # Two engines round float32 distances differently, which can flip near-ties: 1e-5 is plenty.
    np.testing.assert_allclose(on_server.lrap, embedded.lrap, atol=1e-5)


def test_query_sample_is_the_documented_one():
    assert select_queries(10000, 1000, 0).tolist() == np.random.default_rng(0).choice(10000, 1000, replace=False).tolist()
    assert select_queries(10000, None, 0).tolist() == list(range(10000))


def test_array_answer_agrees_with_the_qdrant_query_path(edge_settings, tiny_encoder, mnist_test):
    """Eval's fast path (the Edge shard's vectors as arrays) vs a Qdrant query with limit = all."""
    from cbir.store import open_backend
    from eval.ranking import Ranking, scatter_full_rankings
    from eval.runner import score_ranking

    codes = tiny_encoder.encode(mnist_test.images[:40])
    reader = open_backend(edge_settings).reader(edge_settings.collection_name)
    try:
        ranking = Ranking(reader)
        fast = ranking.distances(codes)
        slow = scatter_full_rankings(reader.query_batch(codes, len(ranking), fields=()), ranking.ids)
    finally:
        reader.close()
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)
    labels = ranking.labels.astype(np.int64)
    sizes = np.bincount(labels)
    q_labels = mnist_test.labels[:40]
    a = np.array([score_ranking(fast[j], labels, int(c), int(sizes[c]))[:3] for j, c in enumerate(q_labels)])
    b = np.array([score_ranking(slow[j], labels, int(c), int(sizes[c]))[:3] for j, c in enumerate(q_labels)])
    # float64 arrays vs Qdrant's float32 arithmetic can swap a near-tie: tiny per query, nil on average
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a.mean(0), b.mean(0), atol=1e-6)


def test_a_query_whose_class_is_absent_is_left_out_not_scored_one(tmp_path, mnist_dir, tiny_encoder):
    """scikit-learn scores a query with no relevant item 1.0; eval leaves it out and counts it."""
    settings = Settings(home=tmp_path, data_dir=mnist_dir, collection="few")
    ingest(settings, tiny_encoder, source_for(settings, first=3), progress=False)  # labels 5, 0, 4 only
    report = evaluate(settings, tiny_encoder, n_queries=200, seed=1, progress=False)
    test = datasets.load_split("mnist", "test", mnist_dir)
    labels = test.labels[select_queries(10000, 200, 1)]
    present = np.isin(labels, [5, 0, 4])
    assert report.n_skipped == int((~present).sum()) > 0
    assert len(report.lrap) == int(present.sum()) and report.summary()["n_skipped"] == report.n_skipped
    assert set(report.query_labels.tolist()) <= {0, 4, 5}
