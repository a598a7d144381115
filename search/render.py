"""How search results read: a text table or JSON lines."""

from __future__ import annotations

import json

from cbir.options import one_line
from search.query import QueryResult

MATCH_WORDS = {
    "good": "good",
    "weak": "weak (farther than 95% of real queries' nearest neighbours)",
    "none": "none: no close match (farther than 99.5% of real queries' nearest neighbours; is it the kind of image the collection holds?)",
}


def match_line(result: QueryResult) -> str | None:
    if result.match is None:
        return None
    return f"match: {MATCH_WORDS[result.match]} (score {result.score:.2f})"


def table(result: QueryResult) -> str:
    """A plain-text table: rank, id, label (and class name or file), distance; the match signal above it."""
    lines = [f"query: {one_line(str(result.query))}"]  # a newline in a file name must not split the table
    if result.error is not None:
        return "\n".join(lines + [f"error: {result.error}"])
    if match_line(result):
        lines.append(match_line(result))
    rows = result.as_dict()["results"]
    extra = next((key for key in ("class", "path") if rows and key in rows[0]), None)
    wide = max([10] + [len(str(row["id"])) for row in rows])  # a folder's ids are UUIDs: 36 characters
    lines.append(f"{'rank':>4}  {'id':>{wide}}  {'label':>5}  {'distance':>9}" + (f"  {extra}" if extra else ""))
    for row in rows:
        lines.append(f"{row['rank']:>4}  {str(row['id']):>{wide}}  {str(row['label']):>5}  {row['distance']:>9.4f}"
                     + (f"  {row.get(extra, '')}" if extra else ""))
    if not rows:
        lines.append("(no results)")
    return "\n".join(lines)


def json_line(result: QueryResult) -> str:
    """One JSON object per query."""
    return json.dumps(result.as_dict())
