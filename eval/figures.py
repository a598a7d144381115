"""The eval report's pictures: PNG files drawn with matplotlib (imported only here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cbir import render
from cbir.errors import CbirError
from eval.runner import SIZE_CURVE_QUERIES, EvalReport

MAP_POINTS = 5000  # the 2-D map shows at most this many queries
MIN_UMAP_POINTS = 50  # fewer queries than this are mapped by PCA: UMAP's neighbour graph needs a crowd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except OSError as exc:
        raise CbirError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        _pyplot().close(fig)
    return path


def _ylim(values, pad: float = 0.15) -> tuple[float, float]:
    """An axis that shows the variation (a 0-1 axis makes every curve above 0.9 look flat)."""
    values = [v for v in values if np.isfinite(v)]
    lo, hi = min(values), max(values)
    span = max(hi - lo, 0.02)
    return max(0.0, lo - pad * span), min(1.0 + pad * span / 2, hi + pad * span)


def per_class_bars(report: EvalReport, path: Path) -> Path:
    """Per-class LRAP as bars, with the mean as a line."""
    plt = _pyplot()
    summary = report.summary()
    classes = list(summary["per_class_lrap"])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(classes, [summary["per_class_lrap"][c] for c in classes], color="#4c72b0")
    ax.axhline(summary["lrap"], color="#c44e52", linestyle="--", label=f"mean {summary['lrap']:.3f}")
    ax.set(xlabel="class (label)", ylabel="LRAP", ylim=(0, 1), title="LRAP per class")
    ax.legend(loc="lower right")
    return _save(fig, path)


def precision_at_k(report: EvalReport, path: Path) -> Path:
    """Mean P@k for k = 1..1000, log-scaled k."""
    plt = _pyplot()
    curve = report.precision_curve()
    k = np.arange(1, len(curve) + 1)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(k, curve, color="#4c72b0")
    for mark in (1, 10, 100, 1000):
        if mark <= len(curve):
            ax.annotate(f"{curve[mark - 1]:.3f}", (mark, curve[mark - 1]), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set(xscale="log", xlabel="k (results read)", ylabel="precision@k (axis not from 0)", ylim=_ylim(curve),
           title="Precision at k")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def lrap_by_size(report: EvalReport, path: Path, others: dict[str, dict[int, float]] | None = None) -> Path:
    """LRAP against the number of database images indexed (nested random subsets), beside other encoders' curves
    when they were measured (the tutorial's figure compares the autoencoder with raw pixels)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    curves = {f"{report.encoder} (this report)" if report.encoder else "this report": report.size_curve, **(others or {})}
    colours = iter(["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"])
    every = []
    for name, curve in curves.items():
        sizes = sorted(curve)
        every += [curve[s] for s in sizes]
        ax.plot(sizes, [curve[s] for s in sizes], marker="o", color=next(colours), label=name)
    ax.set(xscale="log", xlabel="database images indexed (nested random subsets)", ylabel="LRAP (axis not from 0)",
           ylim=_ylim(every),
           title=f"LRAP against database size ({report.dataset}, first {min(len(report.lrap), SIZE_CURVE_QUERIES)} queries)")
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def embedding_map(report: EvalReport, path: Path, seed: int = 0) -> Path:
    """The queries' vectors in 2-D (UMAP of at most MAP_POINTS of them), coloured by label."""
    plt = _pyplot()
    codes = report.codes
    names, labels = np.unique(report.query_labels.astype(str), return_inverse=True)
    if len(codes) > MAP_POINTS:
        pick = np.random.default_rng(seed).choice(len(codes), MAP_POINTS, replace=False)
        codes, labels = codes[pick], labels[pick]
    method = "2-D UMAP"
    if codes.shape[1] <= 2:
        xy, method = codes, "the vectors themselves"
    elif len(codes) < MIN_UMAP_POINTS:
        # UMAP needs a neighbourhood graph; a handful of queries has none. Their first two principal axes instead.
        centred = codes - codes.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T if len(vt) >= 2 else np.column_stack([centred @ vt[0], np.zeros(len(codes))])
        method = "first two principal axes"
    else:
        import warnings

        import umap

        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        xy = umap.UMAP(n_components=2, random_state=seed).fit_transform(codes)
    fig, ax = plt.subplots(figsize=(6, 6))
    k = len(names)
    cmap = "tab10" if k <= 10 else "tab20" if k <= 20 else "viridis"
    points = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap=cmap, s=2 if len(codes) > 500 else 12, vmin=-0.5,
                        vmax=max(k, 10 if k <= 10 else 20) - 0.5 if k <= 20 else k - 0.5)
    bar = fig.colorbar(points, ax=ax, ticks=range(k), label="label")
    if k <= 20:
        bar.ax.set_yticklabels([report.class_names.get(n, n) for n in names])
    ax.set(xticks=[], yticks=[], title=f"{len(codes)} query embeddings ({method}), coloured by label")
    return _save(fig, path)


def grid_queries(report: EvalReport, rows: int) -> list[int]:
    """Which queries the grid shows: the first half of the sample, then the hardest (lowest P@10, then LRAP)."""
    first = list(range(min(rows // 2, len(report.lrap))))
    hardest = [int(j) for j in np.lexsort((report.lrap, report.p_at_10)) if j not in first]
    return first + hardest[: rows - len(first)]


def results_grid(report: EvalReport, path: Path, settings, rows: int = 8) -> Path:
    """Queries and their top-10 results, framed green when the label matches, red when not.

    The first rows are the first queries of the sample, the rest the hardest ones.
    """
    picked = grid_queries(report, rows)
    grid_rows = []
    for n, j in enumerate(picked):
        kind = "query" if n < rows // 2 else "hard query"
        image = report.queries.image_of(j) if report.queries.image_of else np.zeros((28, 28), np.float32)
        row = [(image, f"{kind}\n{_label(report, report.query_labels[j])}")]
        for rank, (pid, payload, label, ok) in enumerate(
            zip(report.top_ids[j], report.top_payloads[j], report.top_labels[j], report.hits_at[j]), 1
        ):
            row.append((report.point_image(pid, payload), f"#{rank} {'OK' if ok else 'WRONG'}\n{_label(report, label)}", bool(ok)))
        grid_rows.append(row)
    return render.save_png(render.grid(grid_rows), path)


def _label(report: EvalReport, label) -> str:
    name = report.class_names.get(str(label))
    text = name or str(label)
    return text if len(text) <= 16 else text[:15] + "."


def write_all(report: EvalReport, out_dir: Path, settings, others: dict | None = None,
              progress=lambda line: None) -> dict[str, Path]:
    """Every picture under out_dir; returns {title: path}. progress(line) hears of each as it starts."""
    pictures = (
        ("LRAP per class", lambda: per_class_bars(report, out_dir / "per_class_lrap.png")),
        ("Precision at k, k = 1..1000", lambda: precision_at_k(report, out_dir / "precision_at_k.png")),
        ("LRAP against database size", lambda: lrap_by_size(report, out_dir / "lrap_by_database_size.png", others)),
        ("2-D map of the query embeddings", lambda: embedding_map(report, out_dir / "embedding_map.png")),
        ("Queries and their top-10 results (first four of the sample, then the four hardest)",
         lambda: results_grid(report, out_dir / "top10_results.png", settings)),
    )
    out = {}
    for n, (title, draw) in enumerate(pictures, 1):
        progress(f"picture {n}/{len(pictures)}: {title} ...")
        out[title] = draw()
    return out
