"""Write an evaluation as JSON and a Markdown summary."""

from __future__ import annotations

import json
from pathlib import Path

from cbir.errors import CbirError


def markdown(summary: dict, pictures: dict[str, Path] | None = None) -> str:
    """A short Markdown report: headline metrics, per-class LRAP, LRAP by database size, pictures."""
    lines = [
        f"# Retrieval evaluation: {summary['dataset']}",
        "",
        f"Collection `{summary['collection']}` ({summary['database_size']} points), model `{summary['model_id']}`; "
        f"queries: {summary.get('queries', str(summary['n_queries']) + ' test images')}; full ranking, score = -distance.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| LRAP | {summary['lrap']:.4f} |",
        f"| P@10 | {summary['p@10']:.4f} |",
        f"| mAP@100 | {summary['map@100']:.4f} |",
        f"| queries scored | {summary['n_queries']} |",
        f"| queries left out (class absent from the collection) | {summary.get('n_skipped', 0)} |",
        f"| seconds ranking | {summary['seconds']} |",
        f"| seconds in all (loading, ranking, pictures) | {summary.get('total_seconds', summary['seconds'])} |",
        f"| cbir | {summary.get('cbir_version', '')} |",
        "",
        "| class | LRAP |",
        "|---|---|",
    ]
    names = summary.get("class_names") or {}
    lines += [f"| {c}{' ' + names[c] if c in names else ''} | {v:.4f} |" for c, v in summary["per_class_lrap"].items()]
    if summary.get("lrap_by_database_size"):
        lines += ["", "LRAP against database size (the first 1000 queries (or all, when fewer) against nested random subsets of the "
                  "collection; a query whose class is absent from a subset is left out):",
                  "", "| database images | LRAP |", "|---|---|"]
        lines += [f"| {int(n):,} | {v:.4f} |" for n, v in summary["lrap_by_database_size"].items()]
    for title, path in (pictures or {}).items():
        lines += ["", f"## {title}", "", f"![{title}]({path.name})"]
    return "\n".join(lines) + "\n"


def write(summary: dict, out_dir: Path, pictures: dict[str, Path] | None = None) -> tuple[Path, Path]:
    """eval.json and eval.md under out_dir (pictures, if any, already written there)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        js, md = out_dir / "eval.json", out_dir / "eval.md"
        js.write_text(json.dumps(summary, indent=2) + "\n")
        md.write_text(markdown(summary, pictures))
    except OSError as exc:
        raise CbirError(f"cannot write the report to {out_dir}: {exc.strerror or exc}") from exc
    return js, md
