"""The search API: images in, nearest collection points out."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from cbir import preprocess
from cbir.errors import CbirError
from cbir.encoder import Encoder
from cbir.encoders import load_encoder
from cbir.settings import Settings
from cbir.store import Hits, Store, check_compatible, check_complete, opened

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
                {"rank": r + 1, "id": int(i), "label": int(lab), "distance": float(d)}
                for r, (i, lab, d) in enumerate(zip(self.hits.ids, self.hits.labels, self.hits.distances))
            ],
        }


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; a folder stands for the image files directly inside it."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CbirError(f"{path}: folder holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            out.extend(found)
        else:
            out.append(path)
    return out


@contextmanager
def checked(settings: Settings, encoder: Encoder, store: Store | None = None) -> Iterator[Store]:
    """The configured (or given) store, refused unless this encoder built its collection."""
    with opened(settings, store) as store:
        meta = store.metadata()
        check_compatible(meta, encoder.model_id, encoder.dim, settings.collection_name)
        check_complete(meta, settings.collection_name)
        yield store


def search_digits(store: Store, encoder: Encoder, digits: np.ndarray, top_k: int = 10, label: int | None = None) -> list[Hits]:
    """Encode 28x28 digits in one batch and run one batch query."""
    return store.query_batch(encoder.encode(digits), top_k, label=label)


def check_request(top_k: int, label: int | None, n_classes: int = 10) -> None:
    """Refuse a --top-k or --label that cannot mean anything, before any work is done."""
    if top_k < 1:
        raise CbirError(f"--top-k must be at least 1 (got {top_k})")
    if label is not None and not 0 <= label < n_classes:
        raise CbirError(f"unknown --label {label}: labels are 0 to {n_classes - 1}")


def search_files(settings: Settings, paths: list[Path], top_k: int = 10, label: int | None = None,
                 encoder: Encoder | None = None, store: Store | None = None) -> list[QueryResult]:
    """Search with image files (or folders of them): the API behind the `search` command."""
    check_request(top_k, label)
    files = expand([Path(p) for p in paths])
    if not files:
        raise CbirError("no query images given")
    digits = np.stack([preprocess.load_digit(f) for f in files])
    encoder = encoder or load_encoder(settings)
    with checked(settings, encoder, store) as store:
        size = store.count()
        if top_k > size:
            raise CbirError(f"--top-k {top_k} is larger than the collection ({size} points)")
        hits = search_digits(store, encoder, digits, top_k, label)
    return [QueryResult(str(f), d, h) for f, d, h in zip(files, digits, hits)]
