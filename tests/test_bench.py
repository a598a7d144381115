"""The scale simulation's own arithmetic, on a size that runs in a second."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import scale  # noqa: E402


def test_scale_simulation_reports_recall_against_exact_search():
    result = scale.run(points=3000, queries=20, efs=(16, 512))
    assert result["indexed_vectors"] == 3000
    assert result["search"]["exact"]["recall@10"] == 1.0
    low, high = result["search"]["hnsw_ef=16"]["recall@10"], result["search"]["hnsw_ef=512"]["recall@10"]
    # a wider beam finds more of the true neighbours; at 3000 points ef=512 is nearly exhaustive
    assert 0 < low <= high and high >= 0.95
