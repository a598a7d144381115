"""`search --grid`: a picture of each query and its results."""

from __future__ import annotations

import numpy as np

from cbir import datasets, ids, render
from cbir.errors import CbirError
from cbir.settings import Settings
from search.query import QueryResult


def result_images(settings: Settings, point_ids: np.ndarray) -> list[np.ndarray]:
    """The stored images behind point ids, read back from their data sets."""
    cache: dict[tuple[str, str], datasets.Split] = {}
    out = []
    for pid in point_ids:
        name, split, index = ids.decode(int(pid))
        if (name, split) not in cache:
            cache[(name, split)] = datasets.load(name, split, settings.data_dir, settings.cache_dir)
        out.append(cache[(name, split)].images[index].astype(np.float32) / 255.0)
    return out


MAX_CELLS = 20_000  # about 400 megapixels of picture: beyond this nobody looks at it, and memory runs out


def check_grid_size(n_queries: int, top_k: int) -> None:
    """Refuse a --grid picture too large to draw, before any work is done."""
    cells = n_queries * (top_k + 1)
    if cells > MAX_CELLS:
        raise CbirError(f"--grid would draw {n_queries} rows of {top_k + 1} pictures ({cells} cells, more than "
                        f"{MAX_CELLS}); use fewer queries or a smaller --top-k for the picture")


def grid_image(settings: Settings, results: list[QueryResult]):
    """One row per query: the query as the model sees it, then its hits with label and distance."""
    check_grid_size(len(results), max((len(r.hits.ids) for r in results), default=0))
    rows = []
    for res in results:
        row = [(res.digit, "query")]
        for rank, (img, label, dist) in enumerate(zip(result_images(settings, res.hits.ids), res.hits.labels, res.hits.distances), 1):
            row.append((img, f"#{rank} label {label}\nd={dist:.3f}"))
        rows.append(row)
    return render.grid(rows)
