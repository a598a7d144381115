"""How search results read: a text table or JSON lines."""

from __future__ import annotations

import json

from search.query import QueryResult


def table(result: QueryResult) -> str:
    """A plain-text table: rank, id, label, distance."""
    lines = [f"query: {result.query}", f"{'rank':>4}  {'id':>10}  {'label':>5}  {'distance':>9}"]
    for rank, (pid, label, dist) in enumerate(zip(result.hits.ids, result.hits.labels, result.hits.distances), 1):
        lines.append(f"{rank:>4}  {str(pid):>10}  {str(label):>5}  {dist:>9.4f}")
    if len(result.hits.ids) == 0:
        lines.append("(no results)")
    return "\n".join(lines)


def json_line(result: QueryResult) -> str:
    """One JSON object per query."""
    return json.dumps(result.as_dict())
