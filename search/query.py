"""The search API: images in, nearest collection points out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cbir import preprocess
from cbir.encoder import Encoder
from cbir.encoders import with_encoder
from cbir.errors import CbirError
from cbir.settings import Settings
from cbir.store import Backend, Hits, Reader, reading

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}


@dataclass(frozen=True)
class QueryResult:
    """One query image and its hits."""

    query: str
    digit: np.ndarray
    hits: Hits

    def as_dict(self) -> dict:
        """The JSON shape `search --json` prints."""
        return {
            "query": self.query,
            "results": [
                {"rank": r + 1, "id": _plain(i), "label": _plain(lab), "distance": float(d)}
                for r, (i, lab, d) in enumerate(zip(self.hits.ids, self.hits.labels, self.hits.distances))
            ],
        }


def _plain(value):
    """numpy scalars -> Python ones, for JSON."""
    return value.item() if isinstance(value, np.generic) else value


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; a folder stands for the image files directly inside it."""
    out: list[Path] = []
    for path in paths:
        if path.exists() and not path.is_dir() and not path.is_file():
            raise CbirError(f"{path}: not a regular file (a FIFO, socket or device); give image files or folders")
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CbirError(f"{path}: folder holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            out.extend(found)
        else:
            out.append(path)
    return out


def search_digits(reader: Reader, encoder: Encoder, digits: np.ndarray, top_k: int = 10, label=None,
                  exact: bool = True) -> list[Hits]:
    """Encode 28x28 digits in one batch and run one batch query."""
    return reader.query_batch(encoder.encode(digits), top_k, label=label, exact=exact)


def check_request(top_k: int, label: int | None, n_classes: int = 10) -> None:
    """Refuse a --top-k or --label that cannot mean anything, before any work is done."""
    if top_k < 1:
        raise CbirError(f"--top-k must be at least 1 (got {top_k})")
    if label is not None and not 0 <= label < n_classes:
        raise CbirError(f"unknown --label {label}: labels are 0 to {n_classes - 1}")


def search_files(settings: Settings, paths: list[Path], top_k: int = 10, label: int | None = None,
                 encoder: Encoder | None = None, backend: Backend | None = None) -> list[QueryResult]:
    """Search with image files (or folders of them): the API behind the `search` command."""
    check_request(top_k, label)
    files = expand([Path(p) for p in paths])
    if not files:
        raise CbirError("no query images given")
    digits = np.stack([preprocess.load_digit(f) for f in files])
    if encoder is None:
        settings, encoder = with_encoder(settings)
    # Everything slow is done before the store is opened: the collection is held for one batch query.
    with reading(settings, encoder.expected(), backend) as reader:
        size = reader.meta.points
        if top_k > size:
            raise CbirError(f"--top-k {top_k} is larger than the collection ({size} points)")
        hits = search_digits(reader, encoder, digits, top_k, label)
    return [QueryResult(str(f), d, h) for f, d, h in zip(files, digits, hits)]
