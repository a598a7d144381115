"""The search API: image files in, nearest collection points out, a batch at a time.

files -> digits (preprocess, per file: a bad file is reported, not fatal) -> vectors (one
LiteRT batch) -> one batch query -> results with a match signal. Everything slow happens before
the collection is opened, and a folder of any size streams through in bounded memory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from cbir import match, preprocess
from cbir.encoder import Encoder
from cbir.encoders import with_encoder
from cbir.errors import CbirError
from cbir.settings import Settings
from cbir.store import Backend, Hits, Reader, reading

BATCH = 256  # query files per batch: encoded together, sent as one batch query


@dataclass(frozen=True)
class QueryResult:
    """One query and its hits, or the reason it could not be searched."""

    query: str
    digit: np.ndarray | None = None
    hits: Hits | None = None
    error: str | None = None
    match: str | None = None  # good / weak / none (see cbir.match); None: the collection has no calibration
    score: float | None = None
    class_names: dict = field(default_factory=dict)
    source: dict | None = None  # a stored point as the query (--id): its payload, to find its own image

    def as_dict(self) -> dict:
        """The JSON shape `search --json` prints."""
        if self.error is not None:
            return {"query": self.query, "error": self.error}
        results = []
        for rank, (pid, payload, dist) in enumerate(zip(self.hits.ids, self.hits.payloads or [], self.hits.distances), 1):
            row = {"rank": rank, "id": _plain(pid), "label": _plain(payload.get("label")), "distance": float(dist)}
            name = self.class_names.get(str(row["label"]))
            if name:
                row["class"] = name
            for key in ("path",):
                if key in payload:
                    row[key] = payload[key]
            results.append(row)
        return {"query": self.query, "match": self.match, "score": self.score, "results": results}


def _plain(value):
    """numpy scalars -> Python ones, for JSON."""
    return value.item() if isinstance(value, np.generic) else value


def search_digits(reader: Reader, encoder: Encoder, digits: np.ndarray, top_k: int = 10, label=None,
                  exact: bool = True) -> list[Hits]:
    """Encode 28x28 digits in one batch and run one batch query."""
    return reader.query_batch(encoder.encode(digits), top_k, label=label, exact=exact, fields=FIELDS)


FIELDS = ("label", "path")


def check_request(top_k: int) -> None:
    """Refuse a --top-k that cannot mean anything, before any work is done (a --label is checked against
    the collection's own labels, by check_label, once it is open)."""
    if top_k < 1:
        raise CbirError(f"--top-k must be at least 1 (got {top_k})")


def load_digits(paths: list[Path]) -> tuple[list[tuple[int, np.ndarray]], dict[int, str]]:
    """Preprocess each file; (position, digit) for those that worked, {position: error} for the rest."""
    good, bad = [], {}
    for i, path in enumerate(paths):
        try:
            if path.exists() and not path.is_file() and not path.is_dir():
                raise CbirError(f"{path}: not a regular file (a FIFO, socket or device); give image files or folders")
            good.append((i, preprocess.load_digit(path)))
        except CbirError as exc:
            bad[i] = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
    return good, bad


def class_names(dataset: str) -> dict:
    """{label as text: class name} for data sets whose labels are numbers standing for names."""
    from cbir.datasets import DATASETS

    spec = DATASETS.get(dataset)
    names = getattr(spec, "class_names", ()) if spec else ()
    return {str(i): name for i, name in enumerate(names)}


def result_for(query: str, digit: np.ndarray | None, hits: Hits, reader: Reader, label=None) -> QueryResult:
    """A query's hits as a result, with the match signal and the class names of the collection's data set."""
    calibration = reader.meta.extra.get("calibration")
    nearest = float(hits.distances[0]) if len(hits.distances) and label is None else None  # a filtered nearest is no yardstick
    return QueryResult(query, digit, hits,
                       match=match.level(nearest, calibration, digit) if nearest is not None else None,
                       score=match.score(nearest, calibration, digit) if nearest is not None else None,
                       class_names=class_names(reader.meta.dataset))


def results_for(reader: Reader, encoder: Encoder, paths: list[Path], top_k: int, label=None, exact: bool = True,
                loaded: tuple | None = None) -> list[QueryResult]:
    """One batch: preprocess (unless loaded), encode and query; results in the order of paths."""
    good, bad = load_digits(paths) if loaded is None else loaded
    hits = search_digits(reader, encoder, np.stack([d for _, d in good]), top_k, label, exact) if good else []
    out: dict[int, QueryResult] = {i: QueryResult(str(paths[i]), error=msg) for i, msg in bad.items()}
    for (i, digit), h in zip(good, hits):
        out[i] = result_for(str(paths[i]), digit, h, reader, label)
    return [out[i] for i in range(len(paths))]


def iter_search(settings: Settings, paths: list[Path], top_k: int = 10, label=None, encoder: Encoder | None = None,
                backend: Backend | None = None, exact: bool = True, batch: int = BATCH,
                progress: Callable[[int], None] | None = None) -> Iterator[QueryResult]:
    """Search many files, a batch at a time, yielding results in order as they come.

    Each batch is read and preprocessed before the collection is touched; the collection is opened
    once, when the first file that can be searched turns up (a batch of bad files never needs it).
    """
    check_request(top_k)
    reader = None
    opened = None
    try:
        for lo in range(0, len(paths), batch):
            chunk = paths[lo : lo + batch]
            loaded = load_digits(chunk)
            if loaded[0] and reader is None:
                if encoder is None:
                    settings, encoder = with_encoder(settings)
                opened = reading(settings, encoder.expected(), backend)
                reader = opened.__enter__()
                if top_k > reader.meta.points:
                    raise CbirError(f"--top-k {top_k} is larger than the collection ({reader.meta.points} points)")
                label = check_label(label, reader)
            if reader is None:
                yield from (QueryResult(str(chunk[i]), error=msg) for i, msg in sorted(loaded[1].items()))
            else:
                yield from results_for(reader, encoder, chunk, top_k, label, exact, loaded)
            if progress is not None:
                progress(len(chunk))
    finally:
        if opened is not None:
            opened.__exit__(None, None, None)


def check_label(label, reader: Reader):
    """The --label as the collection stores it (MNIST's are numbers 0 to 9, a folder's are its subfolders'
    names), or a one-line error for a label it does not hold: a filter on a label nobody has would answer
    nothing, with success."""
    if label is None:
        return None
    from cbir.datasets import DATASETS

    text = str(label).strip()
    if reader.meta.dataset in DATASETS or reader.meta.dataset == "mnist-deformed":
        if not (text.isdigit() and 0 <= int(text) < 10):
            raise CbirError(f"unknown --label {one_line_text(text)}: labels are 0 to 9")
        return int(text)
    held = sorted({str(v) for v in reader.points(with_vectors=False, fields=("label",)).payloads["label"] if v is not None})
    if text not in held:
        shown = ", ".join(held[:20]) + (", ..." if len(held) > 20 else "")
        raise CbirError(f"unknown --label {one_line_text(text)}: collection {reader.name!r} holds the labels {shown or '(none)'}")
    return text


def one_line_text(text: str) -> str:
    return repr(text[:60]) if not text.isprintable() or " " in text else text[:60]


def search_files(settings: Settings, paths: list[Path], top_k: int = 10, label=None,
                 encoder: Encoder | None = None, backend: Backend | None = None, exact: bool = True) -> list[QueryResult]:
    """Search with image files (or folders of them); raises when no query could be searched at all."""
    from search.inputs import collect

    found = collect([Path(p) for p in paths])
    if not found.files:
        raise CbirError(no_images_message(paths, found))
    return list(iter_search(settings, found.files, top_k, label, encoder, backend, exact))


def no_images_message(paths, found) -> str:
    if not paths:
        return "no query given: name image files or folders (or a stored point with --id ID); see `search --help`"
    where = ", ".join(str(p) for p in paths)
    return f"{where}: holds no image files to search" + (f" ({found.skipped()})" if found.skipped() else "")


def parse_point_id(text: str):
    """A point id as given on the command line: a number (a data set's points) or a UUID (a folder's)."""
    from cbir import ids

    try:
        return ids.parse(text.strip())
    except ValueError:
        shown = text[:40].encode("unicode_escape").decode()
        raise CbirError(f"--id {shown!r} is not a point id: give a number or a UUID, as `search --json` shows them") from None


def search_ids(settings: Settings, point_ids: list, top_k: int = 10, label=None, encoder: Encoder | None = None,
               backend: Backend | None = None, exact: bool = True) -> list[QueryResult]:
    """Stored points as queries: the nearest neighbours of images already in the collection (not themselves)."""
    check_request(top_k)
    if encoder is None:
        settings, encoder = with_encoder(settings)
    with reading(settings, encoder.expected(), backend) as reader:
        label = check_label(label, reader)
        found = reader.retrieve(point_ids, with_vectors=True, fields=FIELDS)
        known = {_plain(i): v for i, v in zip(found.ids, found.vectors if found.vectors is not None else [])}
        sources = {_plain(i): {f: found.payloads[f][n] for f in FIELDS} for n, i in enumerate(found.ids)}
        out = []
        for pid in point_ids:
            if pid not in known:
                out.append(QueryResult(f"id {pid}", error=f"id {pid}: no such point in collection {reader.name!r}"))
                continue
            hits = reader.query_batch(known[pid][None], min(top_k + 1, reader.meta.points), label=label, exact=exact,
                                      fields=FIELDS)[0]
            keep = np.array([_plain(i) != pid for i in hits.ids], dtype=bool)
            kept = Hits(hits.ids[keep][:top_k], hits.distances[keep][:top_k],
                        [p for p, k in zip(hits.payloads, keep) if k][:top_k])
            out.append(dataclasses.replace(result_for(f"id {pid}", None, kept, reader, label), source=sources[pid]))
    return out
