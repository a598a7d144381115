"""What a data source is to the rest of cbir.

A source knows its items by stable point ids, can say what each item is (a fingerprint that
changes when the item does), loads items by id (28x28 uint8 images and their payloads), and
describes itself for the collection's record. Equal descriptions mean the same items.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Source(Protocol):
    name: str  # recorded as the collection's data set
    kind: str  # idx, deformed, folder
    models_from: str  # whose models encode it: a data set's (mnist) or its own
    queries_from: str | None  # which data set's test split evaluates it (None: its own --queries-dir / --holdout)
    digits: bool  # handwriting: deskewing is safe
    partial: bool  # only the first N items of a data set (a collection of its own)
    fingerprint_fields: tuple[str, ...]  # the payload fields changed() compares

    def changed(self, pid, stored: dict, state) -> bool: ...  # stored payload vs manifest() state: re-encode?

    def __len__(self) -> int: ...
    def describe(self) -> dict: ...
    def point_ids(self) -> np.ndarray: ...  # every item's id, in order
    def manifest(self) -> dict: ...  # {point id: fingerprint}
    def load(self, point_ids: np.ndarray, record_failures: bool = True) -> tuple[np.ndarray, list[dict]]: ...  # (False: skip bad files silently)
    def held_out(self, n: int = 1000, seed: int = 0) -> tuple[np.ndarray, str] | None: ...
    def close(self) -> None: ...  # a folder's decoding workers
