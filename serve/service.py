"""The engine behind `cbir serve`: the one small class the web app depends on.

The app knows nothing of stores, encoders or data sets; it calls a SearchService. This first
implementation uses today's code (the store stays open for the service's lifetime, one lock
guards the engine, whose calls are not known to be thread-safe); its insides can be swapped
(micro-batching, an HNSW index, a store shared with other processes) without touching the app.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cbir import datasets, ids, preprocess
from cbir.errors import CbirError
from cbir.settings import Settings

MAX_TOP_K = 1000

# Label -> name for data sets whose labels are not their own names (MNIST's labels are the digits).
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}


class BadRequest(CbirError):
    """The request cannot be answered as asked (the app answers 400 with the message)."""


class UnknownPoint(KeyError):
    """No such point in the collection (the app answers 404)."""

    def __str__(self) -> str:  # KeyError's own str() quotes its message
        return str(self.args[0]) if self.args else "unknown point"


def open_image_bytes(data: bytes, name: str) -> Image.Image:
    """Open and fully decode an image held in memory, with preprocess.open_image's checks and messages."""
    if not data:
        raise CbirError(f"{name}: empty file, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.seek(0)  # first frame of an animation
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CbirError(f"{name}: image is too large to be decoded safely (decompression bomb?)") from None
    except UnidentifiedImageError:
        claimed = next((fmt for magic, fmt in preprocess._SIGNATURES.items() if data.startswith(magic)), None)
        if claimed:
            raise CbirError(f"{name}: corrupt or truncated image (starts like a {claimed} but cannot be decoded)") from None
        raise CbirError(f"{name}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CbirError(f"{name}: corrupt or truncated image ({exc})") from None
    return img


def load_digit_bytes(data: bytes, name: str) -> np.ndarray:
    """Image bytes -> the 28x28 float32 digit the model sees (what preprocess.load_digit does for a file)."""
    return preprocess.normalize(preprocess.to_gray(open_image_bytes(data, name)))


def png_bytes(image: np.ndarray) -> bytes:
    """A 28x28 image (uint8, or float in [0, 1]) -> PNG bytes, grayscale."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.round(np.clip(arr.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr.reshape(28, 28), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class SearchService:
    """An open collection and its encoder, answering searches, point images and listings."""

    def __init__(self, settings: Settings, *, store=None, encoder=None):
        """Open the store and load the encoder; a collection that cannot be searched raises a CbirError.

        A store or encoder passed in is used as is (and a passed store is not closed by close()).
        """
        from cbir.encoders import load_encoder
        from cbir.store import check_compatible, check_complete, open_store

        self.settings = settings
        self._lock = threading.Lock()  # the store and the encoder: one caller at a time
        self._images_lock = threading.Lock()
        self._list_lock = threading.Lock()
        # Decoding runs outside the engine lock, but a few at a time: a legal 16 MiB upload can
        # decode to hundreds of MiB (Pillow's bomb check stops at 89 megapixels).
        self._decoding = threading.BoundedSemaphore(2)
        self._splits: dict[tuple[str, str], datasets.Split] = {}
        self._counts: dict[tuple[str, int], int] = {}  # other embedded collections' counts, by metadata mtime
        self._encoder = encoder or load_encoder(settings)
        self._owns_store = store is None
        self._store = store if store is not None else open_store(settings)
        try:
            meta = self._store.metadata()
            check_compatible(meta, self._encoder.model_id, self._encoder.dim, settings.collection_name)
            check_complete(meta, settings.collection_name)
            self._meta = meta
            self._ids, labels = self._store.labels()  # ids sorted: the point-image lookups' index
            self._labels = [int(v) for v in np.unique(labels)]
        except BaseException:
            if self._owns_store:
                self._store.close()
            raise

    # -- what the app calls ------------------------------------------------------------------

    def info(self) -> dict:
        """The collection being served."""
        dataset = self._meta.get("dataset", self.settings.dataset)
        names = CLASS_NAMES.get(dataset, ())
        return {
            "collection": self.settings.collection_name,
            "encoder": self.settings.encoder,
            "dataset": dataset,
            "model_id": self._encoder.model_id,
            "points": self._count(),
            "labels": list(self._labels),
            "class_names": {label: names[label] for label in self._labels if label < len(names)},
        }

    def search(self, files: list[tuple[str, bytes]], top_k: int = 10, label: int | None = None,
               exact: bool = False) -> list[dict]:
        """One answer per (name, bytes), in order: {"query", "match", "input", "results"} or {"query", "error"}.

        `exact` is accepted for the API's sake: today's stores always search exactly.
        """
        from search.query import QueryResult, search_digits

        if not files:
            raise BadRequest("no image given: send it as the multipart field 'image'")
        if not 1 <= top_k <= MAX_TOP_K:
            raise BadRequest(f"top_k must be between 1 and {MAX_TOP_K} (got {top_k})")
        if label is not None and label not in self._labels:
            raise BadRequest(f"unknown label {label}: this collection's labels are {_span(self._labels)}")
        answers: list[dict | None] = [None] * len(files)
        good: list[tuple[int, np.ndarray]] = []
        for i, (name, data) in enumerate(files):
            try:
                with self._decoding:
                    good.append((i, load_digit_bytes(data, name)))
            except CbirError as exc:
                answers[i] = {"query": name, "error": str(exc)}
        if good:
            digits = np.stack([d for _, d in good])
            with self._lock:
                store = self._need()
                size = store.count()
                if top_k > size:
                    raise BadRequest(f"top_k {top_k} is larger than the collection ({size} points)")
                hits = search_digits(store, self._encoder, digits, top_k, label)
            for (i, digit), h in zip(good, hits):
                answer = QueryResult(files[i][0], digit, h).as_dict()  # the same fields as `search --json`
                answers[i] = {"query": answer["query"], "match": None, "input": data_url(png_bytes(digit)),
                              "results": answer["results"]}
        return answers  # type: ignore[return-value]

    def point_image_png(self, point_id: int) -> bytes:
        """The stored image of a point (28x28 grayscale PNG, as in the data set); UnknownPoint if absent."""
        pid = int(point_id)
        pos = int(np.searchsorted(self._ids, pid)) if 0 <= pid < 2**63 else len(self._ids)
        if pos >= len(self._ids) or int(self._ids[pos]) != pid:
            raise UnknownPoint(f"no point {pid} in collection {self.settings.collection_name!r}")
        name, split, index = ids.decode(pid)
        return png_bytes(self._split(name, split).images[index])

    def collections(self) -> list[dict]:
        """Every collection in the configured store: points, model, encoder, data set, complete."""
        store = self._need()
        if hasattr(store, "client"):  # a Qdrant server
            return self._server_collections(store)
        with self._list_lock:
            return self._edge_collections()

    def ready(self) -> bool:
        return self._store is not None

    def close(self) -> None:
        with self._lock:
            if self._store is not None and self._owns_store:
                self._store.close()
            self._store = None

    # -- helpers -----------------------------------------------------------------------------

    def _need(self):
        if self._store is None:
            raise CbirError("the search service is closed")
        return self._store

    def _count(self) -> int:
        with self._lock:
            return int(self._need().count())

    def _split(self, name: str, split: str) -> datasets.Split:
        with self._images_lock:
            if (name, split) not in self._splits:
                self._splits[(name, split)] = datasets.load(name, split, self.settings.data_dir, self.settings.cache_dir)
            return self._splits[(name, split)]

    def _entry(self, name: str, meta: dict, points: int | None) -> dict:
        from cbir.encoders import ENCODERS

        stem = Path(str(meta.get("model_file", ""))).stem
        return {
            "name": name,
            "points": points,
            "model_id": meta.get("model_id"),
            "encoder": stem if stem in ENCODERS else None,
            "dataset": meta.get("dataset"),
            "complete": meta.get("complete", True) is not False,  # collections from before the flag are complete
            "serving": name == self.settings.collection_name,
        }

    def _edge_collections(self) -> list[dict]:
        from cbir.store import EdgeStore

        root = self.settings.store_dir
        out = []
        for folder in sorted(p for p in root.iterdir() if (p / EdgeStore.META).is_file()) if root.is_dir() else []:
            try:
                meta = json.loads((folder / EdgeStore.META).read_text())
                stamp = (folder / EdgeStore.META).stat().st_mtime_ns
            except (OSError, ValueError):
                continue
            if folder.name == self.settings.collection_name:
                points = self._count()
            else:
                # Counting another embedded collection means opening it for a moment (it is locked
                # meanwhile); remember the count until its metadata changes (every ingest rewrites it).
                key = (folder.name, stamp)
                points = self._counts.get(key)
                if points is None:
                    try:
                        other = EdgeStore(root, folder.name)
                        try:
                            points = self._counts[key] = other.count()
                        finally:
                            other.close()
                    except CbirError:  # busy (another process has it open) or unreadable: unknown for now
                        points = None
            out.append(self._entry(folder.name, meta, points))
        return out

    def _server_collections(self, store) -> list[dict]:
        out = []
        with self._lock:
            names = sorted(c.name for c in store._call("listing collections", store.client.get_collections).collections)
            for name in names:
                info = store._call("reading a collection", store.client.get_collection, name)
                out.append(self._entry(name, dict(info.config.metadata or {}), info.points_count))
        return out


def _span(labels: list[int]) -> str:
    if labels and labels == list(range(labels[0], labels[-1] + 1)) and len(labels) > 2:
        return f"{labels[0]} to {labels[-1]}"
    return ", ".join(str(v) for v in labels) or "none"
