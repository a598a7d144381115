"""`search --grid`: a picture of each query and its results."""

from __future__ import annotations

import numpy as np

from cbir import ids, render
from cbir.errors import CbirError
from cbir.settings import Settings
from search.query import QueryResult


def result_images(settings: Settings, point_ids, payloads=None) -> list[np.ndarray]:
    """The stored images behind points: from their data sets, or a folder collection's files."""
    from search.stored import StoredImages

    return StoredImages(settings).images(point_ids, payloads)


MAX_CELLS = 2_500  # about 44 megapixels (130 MB as RGB): beyond this nobody looks, and memory runs out


MAX_ROW = 100  # results in one row: wider pictures (118 px a cell) are more than most viewers open


def check_grid_size(n_queries: int, top_k: int) -> None:
    """Refuse a --grid picture too large to draw, before any work is done."""
    if top_k > MAX_ROW:
        raise CbirError(f"--grid draws at most {MAX_ROW} results a query (got --top-k {top_k}); "
                        "use a smaller --top-k for the picture")
    cells = n_queries * (top_k + 1)
    if cells > MAX_CELLS:
        rows = f"{n_queries} row{'s' * (n_queries != 1)}"
        raise CbirError(f"--grid would draw {rows} of {top_k + 1} pictures ({cells} cells, more than "
                        f"{MAX_CELLS}); use fewer queries or a smaller --top-k for the picture")


def grid_image(settings: Settings, results: list[QueryResult]):
    """One row per query, labelled with its file name: the query as the model sees it, then its hits."""
    from pathlib import Path

    shown = [r for r in results if r.error is None]
    if not shown:
        raise CbirError("--grid: no query could be searched, so there is nothing to draw")
    check_grid_size(len(shown), max(len(r.hits.ids) for r in shown))
    images = result_images(settings, np.concatenate([r.hits.ids for r in shown]),
                           [p for r in shown for p in (r.hits.payloads or [{}] * len(r.hits.ids))])
    rows, at = [], 0
    for res in shown:
        name = Path(res.query).name if not res.query.startswith("id ") else res.query
        name = name if len(name) <= 18 else name[:8] + ".." + name[-8:]
        caption = name + (f"\nmatch: {res.match}" if res.match else "")
        query_image = res.digit
        if query_image is None:  # a stored point as the query (--id): its own image
            query_image = result_images(settings, [ids.parse(res.query.split(maxsplit=1)[1])], [res.source or {}])[0]
        row = [(query_image, caption)]
        rows_out = res.as_dict()["results"]
        for row_data, image in zip(rows_out, images[at : at + len(rows_out)]):
            label = row_data.get("class") or f"label {row_data['label']}"
            row.append((image, f"#{row_data['rank']} {label}\nd={row_data['distance']:.3f}"))
        at += len(rows_out)
        rows.append(row)
    return render.grid(rows)
