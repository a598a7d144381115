"""A folder of the user's own images: every image file under it, recursively.

Label = the name of the first subfolder under the root (Keras' image_dataset_from_directory
convention); files directly in the root have none. Each file is preprocessed the way queries are
(cbir.preprocess.load_digit: the same function, so a file and a query of it match). A point's id
is a UUIDv5 of the collection and the file's path relative to the root, so a re-run overwrites.
A file's fingerprint is its size and modification time; when those changed, its content hash
decides (a copied or touched file whose bytes are the same is not re-encoded).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cbir.errors import CbirError
from cbir.safeio import file_sha256

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}
NAMESPACE = uuid.UUID("6f1c7a52-3b1e-5c8e-9a3d-2f6b8c1d4e70")  # cbir's: ids of folder points
PARALLEL_FROM = 2000  # files in a batch before decoding is spread over the cores


@dataclass(frozen=True)
class Entry:
    rel: str  # path relative to the root, with '/'
    label: str | None
    size: int
    mtime_ns: int


def point_id(collection: str, rel: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{collection}\0{rel}"))


def scan(root: Path) -> tuple[list[Entry], int]:
    """Every image file under root (sorted by path), and how many other files were passed over."""
    entries, others = [], 0
    seen: set = set()

    def walk(folder: Path, rel: str) -> None:
        nonlocal others
        try:
            st = folder.stat()
            items = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            others += 1
            return
        if (st.st_dev, st.st_ino) in seen:
            return  # a link back up the tree
        seen.add((st.st_dev, st.st_ino))
        for item in items:
            path_rel = f"{rel}/{item.name}" if rel else item.name
            try:
                if item.is_dir():
                    walk(Path(item.path), path_rel)
                    continue
                if not item.is_file() or Path(item.name).suffix.lower() not in IMAGE_SUFFIXES:
                    others += 1
                    continue
                st_file = item.stat()
            except OSError:
                others += 1
                continue
            label = path_rel.split("/", 1)[0] if "/" in path_rel else None
            entries.append(Entry(path_rel, label, st_file.st_size, st_file.st_mtime_ns))

    walk(root, "")
    return entries, others


def _load(path: str) -> tuple[np.ndarray | None, str | None, str | None]:
    """(28x28 float32 image, content hash, error) of one file; runs in worker processes too.

    The image is kept as the float the query path makes (not rounded to bytes): a file and a
    query of the same file get the very same vector.
    """
    from cbir import preprocess

    try:
        image = preprocess.load_digit(Path(path))
        digest = file_sha256(Path(path))
    except CbirError as exc:
        return None, None, str(exc)
    except OSError as exc:
        return None, None, f"{path}: {exc.strerror or exc}"
    return image.astype(np.float32), digest, None


@dataclass
class FolderSource:
    root: Path
    collection: str
    strict: bool = False
    _entries: list[Entry] | None = field(default=None, repr=False)
    failed: list[str] = field(default_factory=list)  # files that could not be read, this run

    kind = "folder"
    partial = False  # every image under the folder
    name = "folder"
    fingerprint_fields = ("size", "mtime_ns", "sha256")
    queries_from = None
    digits = False  # anything: deskewing a shoe makes no sense

    def __post_init__(self):
        self.root = Path(os.path.abspath(os.path.expanduser(str(self.root))))
        if not self.root.is_dir():
            raise CbirError(f"--images {self.root}: no such folder; give the folder that holds your images")

    @property
    def models_from(self) -> str:
        return self.collection  # a folder's own models live under CBIR_HOME/models/<collection>/

    @property
    def entries(self) -> list[Entry]:
        if self._entries is None:
            self._entries, _ = scan(self.root)
            if not self._entries:
                raise CbirError(f"--images {self.root}: holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return self._entries

    def __len__(self) -> int:
        return len(self.entries)

    def listing_sha256(self) -> str:
        digest = hashlib.sha256()
        for e in self.entries:
            digest.update(f"{e.rel}\0{e.size}\0{e.mtime_ns}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    def describe(self) -> dict:
        return {"kind": self.kind, "root": str(self.root), "files": len(self.entries), "listing_sha256": self.listing_sha256()}

    def point_ids(self) -> np.ndarray:
        return np.array([point_id(self.collection, e.rel) for e in self.entries], dtype=object)

    def manifest(self) -> dict:
        return {point_id(self.collection, e.rel): (e.size, e.mtime_ns) for e in self.entries}

    def changed(self, pid, stored: dict, now) -> bool:
        """Whether a file differs from what the collection holds: size and time, else (they differ) its content."""
        size, mtime = now
        if stored.get("size") == size and stored.get("mtime_ns") == mtime:
            return False
        entry = self._by_id().get(pid)
        if entry is None or stored.get("sha256") is None:
            return True
        try:
            return file_sha256(self.root / entry.rel) != stored["sha256"]
        except OSError:
            return True

    def _by_id(self) -> dict:
        if not hasattr(self, "_index"):
            self._index = {point_id(self.collection, e.rel): e for e in self.entries}
        return self._index

    def labels(self) -> list:
        return sorted({e.label for e in self.entries if e.label is not None})

    def load(self, point_ids, record_failures: bool = True) -> tuple[np.ndarray, list[dict]]:
        """Images and payloads of these files; a file that cannot be read is left out (and noted in .failed)."""
        by_id = self._by_id()
        entries = [by_id[pid] for pid in point_ids]
        paths = [str(self.root / e.rel) for e in entries]
        pool = self._workers()
        loaded = list(pool.map(_load, paths, chunksize=max(1, len(paths) // (4 * self._n_workers)))) if pool else [_load(p) for p in paths]
        images, payloads = [], []
        for pid, entry, (image, digest, error) in zip(point_ids, entries, loaded):
            if error is not None:
                if not record_failures:
                    continue
                if self.strict:
                    raise CbirError(f"{error} (--strict: stopping; without it, unreadable files are skipped and counted)")
                self.failed.append(error)
                continue
            images.append(image)
            payloads.append({"path": entry.rel, "label": entry.label, "size": entry.size,
                             "mtime_ns": entry.mtime_ns, "sha256": digest, "dataset": "folder"})
        return (np.stack(images) if images else np.zeros((0, 28, 28), np.float32)), payloads

    def _workers(self):
        """Worker processes that decode files on every core, for folders big enough to pay for starting them."""
        if getattr(self, "_pool", None) is None and len(self.entries) >= PARALLEL_FROM and (os.cpu_count() or 1) > 1:
            self._n_workers = min(os.cpu_count() or 1, 8)
            self._pool = ProcessPoolExecutor(self._n_workers)
        return getattr(self, "_pool", None)

    def close(self) -> None:
        pool, self._pool = getattr(self, "_pool", None), None
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    def held_out(self, n: int = 1000, seed: int = 0):
        return None  # calibrated leave-one-out on the collection's own points (see ingest.pipeline.calibrate)

    def image(self, rel: str) -> np.ndarray:
        from cbir import preprocess

        path = (self.root / rel).resolve()
        if self.root.resolve() not in path.parents:
            raise CbirError(f"{rel}: not under {self.root}")
        return preprocess.load_digit(path)
