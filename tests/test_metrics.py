import numpy as np
import pytest
from sklearn.metrics import label_ranking_average_precision_score

from eval import metrics


def brute_force_lrap(scores, relevant):
    """The textbook definition, one loop per relevant item, no sorting tricks."""
    out = []
    for s, r in zip(scores, relevant):
        if r.sum() in (0, len(r)):
            out.append(1.0)
            continue
        per = [np.sum(r & (s >= s[i])) / np.sum(s >= s[i]) for i in np.flatnonzero(r)]
        out.append(np.mean(per))
    return float(np.mean(out))


def test_tutorial_worked_example():
    # Two relevant items ranked first and second out of four: perfect.
    assert metrics.lrap_row(np.array([0.9, 0.8, 0.2, 0.1]), np.array([1, 1, 0, 0])) == 1.0
    # Passing distances as scores inverts the ranking: the same retrieval scores (1/3 + 2/4) / 2.
    distances = np.array([0.1, 0.2, 0.8, 0.9])
    assert metrics.lrap_row(distances, np.array([1, 1, 0, 0])) == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert metrics.lrap_row(-distances, np.array([1, 1, 0, 0])) == 1.0


@pytest.mark.parametrize("ties", [False, True])
def test_equals_scikit_learn_and_brute_force_on_many_queries(rng, ties):
    n_queries, n_items = 150, 300
    scores = rng.normal(size=(n_queries, n_items))
    if ties:
        scores = np.round(scores, 1)  # many ties, which sklearn resolves pessimistically
    relevant = rng.random((n_queries, n_items)) < 0.1
    relevant[0] = False  # a query with nothing relevant
    relevant[1] = True  # and one where everything is
    ours = metrics.lrap(scores, relevant)
    assert ours == pytest.approx(label_ranking_average_precision_score(relevant, scores), abs=1e-12)
    assert ours == pytest.approx(brute_force_lrap(scores, relevant), abs=1e-12)


def test_truncated_list_inflates_lrap():
    # A bad query: its only relevant item is far down the full ranking.
    relevant = np.zeros(1000, bool)
    relevant[900] = True
    scores = -np.arange(1000.0)
    full = metrics.lrap_row(scores, relevant)
    assert full == pytest.approx(1 / 901)
    # Scored only on its top 10, it has no relevant item and sklearn calls that perfect.
    assert label_ranking_average_precision_score(relevant[None, :10], scores[None, :10]) == 1.0


def test_precision_and_average_precision_at_k():
    ranked = np.array([1, 0, 1, 0, 0, 1], bool)
    assert metrics.precision_at_k(ranked, 2) == 0.5
    assert metrics.precision_at_k(ranked, 10) == 0.3  # k beyond the list counts misses
    assert metrics.average_precision_at_k(ranked, 6) == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    assert metrics.average_precision_at_k(ranked, 2, n_relevant=3) == pytest.approx(1 / 2)
    assert metrics.average_precision_at_k(np.zeros(5, bool), 3) == 0.0
