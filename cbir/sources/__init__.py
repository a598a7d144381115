"""The data sources a collection can be built from, one object each (see base.Source).

    mnist, fashion-mnist   IDX files (idx.py)
    mnist-deformed         infinite MNIST, generated reproducibly (deformed.py)

`source_for(settings)` makes the one the settings name.
"""

from __future__ import annotations

from cbir import datasets
from cbir.errors import CbirError
from cbir.sources.base import Source
from cbir.sources.deformed import NAME as DEFORMED, DeformedSource
from cbir.sources.idx import IdxSource

NAMES = (*datasets.DATASETS, DEFORMED)


def check_name(name: str) -> str:
    if name not in NAMES:
        raise CbirError(f"unknown dataset {name!r}; choose one of: {', '.join(NAMES)}")
    return name


def source_for(settings, split: str = "train", first: int | None = None, size: int | None = None) -> Source:
    """The settings' data set as a source: its first N items (--limit), or N items of a generated one (--size)."""
    name = check_name(settings.dataset)
    if name == DEFORMED:
        if first is not None:
            raise CbirError("--limit takes the first N images of a data set's files; for mnist-deformed give --size N")
        return DeformedSource(settings.data_dir, settings.cache_dir, size if size is not None else DeformedSource.size)
    if size is not None:
        raise CbirError(f"--size makes a generated data set of that size; {name} is read from its files (use --limit N)")
    return IdxSource(name, split, settings.data_dir, settings.cache_dir, first)


def models_from(dataset: str) -> str:
    """Whose models encode a data set: mnist-deformed is MNIST, encoded by MNIST's models."""
    return "mnist" if dataset == DEFORMED else dataset


def queries_from(dataset: str) -> str:
    """Whose test split evaluates a collection of this data set."""
    return "mnist" if dataset == DEFORMED else dataset


__all__ = ["NAMES", "DeformedSource", "IdxSource", "Source", "check_name", "models_from", "queries_from", "source_for"]
