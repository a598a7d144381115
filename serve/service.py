"""The engine behind `cbir serve`: the one class the web app depends on.

- It reads the collection through the same store as every command: the embedded store lets any
  number of processes read at once, so `search` and `cbir eval run` keep working beside the server,
  and `ingest run` rebuilds beside it; the service notices the switch (the collection's generation)
  and serves the new collection without a restart.
- Concurrent requests are encoded and searched together (micro-batching, as model servers do):
  requests queue their digits; one worker takes whatever has arrived within a few milliseconds,
  encodes it in one LiteRT call and sends one batch query per (label, exact) group.
- Queries use Qdrant's HNSW index unless exact=true (evaluation stays exact).
"""

from __future__ import annotations

import base64
import io
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from cbir import preprocess
from cbir.errors import CbirError
from cbir.settings import Settings

MAX_TOP_K = 1000
RELOAD_CHECK_SECONDS = 0.5  # how often the service looks whether an ingest switched the collection
RETIRE_SECONDS = 10.0  # a replaced reader stays open this long for requests that still hold it


class BadRequest(CbirError):
    """The request cannot be answered as asked (the app answers 400 with the message)."""


class UnknownPoint(KeyError):
    """No such point in the collection (the app answers 404)."""

    def __str__(self) -> str:  # KeyError's own str() quotes its message
        return str(self.args[0]) if self.args else "unknown point"


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


@dataclass
class _Job:
    digits: np.ndarray
    top_k: int
    label: object
    exact: bool
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """One worker thread that answers queued jobs together: one encode, one batch query per group."""

    def __init__(self, run, window: float = 0.002, max_items: int = 256):
        self._run = run
        self._window = window
        self._max = max_items
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="cbir-batcher", daemon=True)
        self._thread.start()
        self.batches = 0  # how many batches ran, and how many jobs they held (for tests and the benchmark)
        self.jobs = 0

    def submit(self, digits: np.ndarray, top_k: int, label, exact: bool):
        job = _Job(digits, top_k, label, exact)
        self._queue.put(job)
        return job.future.result()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, items = [first], len(first.digits)
            deadline = time.monotonic() + self._window
            while items < self._max:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)
                    break
                jobs.append(job)
                items += len(job.digits)
            self.batches += 1
            self.jobs += len(jobs)
            try:
                for job, hits in zip(jobs, self._run(jobs)):
                    job.future.set_result(hits)
            except BaseException as exc:  # noqa: BLE001 - every waiting request hears of it
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)


class SearchService:
    """The served collection and its encoder, answering searches, point images and listings."""

    def __init__(self, settings: Settings, *, backend=None, encoder=None, window: float = 0.002):
        """Open the collection and load its encoder; a collection that cannot be searched raises a CbirError."""
        from cbir.encoders import with_encoder
        from cbir.store import open_backend
        from search.stored import StoredImages

        if encoder is None:
            settings, encoder = with_encoder(settings)
        self.settings = settings
        self._encoder = encoder
        self._owns_backend = backend is None
        self._backend = backend if backend is not None else open_backend(settings)
        self._swap = threading.Lock()
        self._reader = None
        self._retired: list = []  # (when, reader) replaced by a newer generation, closed a little later
        self._labels: list = []
        self._checked = 0.0
        self._decoding = threading.BoundedSemaphore(2)  # a legal 16 MiB upload can decode to hundreds of MiB
        try:
            self._open()
        except BaseException:
            if self._owns_backend:
                self._backend.close()
            raise
        self._images = StoredImages(settings)
        self._batcher = MicroBatcher(self._run_batch, window=window)

    # -- the collection, reopened when an ingest switches it --------------------------------------

    def _open(self):
        from cbir.store import check_compatible

        reader = self._backend.reader(self.settings.collection_name)
        try:
            check_compatible(reader.meta, self._encoder.expected(), self.settings.collection_name,
                             self._backend.hints.rebuild, self._backend.hints.build)
            labels = sorted(set(reader.points(with_vectors=False, fields=("label",)).payloads["label"]), key=str)
        except BaseException:
            reader.close()
            raise
        old, self._reader, self._labels = self._reader, reader, labels
        self._checked = time.monotonic()
        return old

    def _current(self):
        """The reader to use now; every RELOAD_CHECK_SECONDS, whether an ingest published a new generation.

        A reader that is replaced is closed only after RETIRE_SECONDS: a request that took it just
        before the swap finishes with it.
        """
        now = time.monotonic()
        if now - self._checked > RELOAD_CHECK_SECONDS:
            with self._swap:
                if now - self._checked > RELOAD_CHECK_SECONDS:
                    self._checked = now
                    try:
                        fresh = self._backend.generation(self.settings.collection_name)
                    except CbirError:
                        fresh = None
                    if fresh is not None and self._reader is not None and fresh != self._reader.generation:
                        old = self._open()
                        if old is not None:
                            self._retired.append((now, old))
                    while self._retired and now - self._retired[0][0] > RETIRE_SECONDS:
                        self._retired.pop(0)[1].close()
        if self._reader is None:
            raise CbirError("the search service is closed")
        return self._reader

    # -- what the app calls ------------------------------------------------------------------------

    def info(self) -> dict:
        from search.query import class_names

        reader = self._current()
        return {
            "collection": self.settings.collection_name,
            "encoder": self._encoder.name,
            "dataset": reader.meta.dataset,
            "model_id": self._encoder.model_id,
            "points": reader.meta.points,
            "labels": list(self._labels),
            "class_names": class_names(reader.meta.dataset),
        }

    def search(self, files: list[tuple[str, bytes]], top_k: int = 10, label=None, exact: bool = False) -> list[dict]:
        """One answer per (name, bytes), in order: {"query", "match", "score", "input", "results"} or {"query", "error"}."""
        from search.query import result_for

        if not files:
            raise BadRequest("no image given: send it as the multipart field 'image'")
        if not 1 <= top_k <= MAX_TOP_K:
            raise BadRequest(f"top_k must be between 1 and {MAX_TOP_K} (got {top_k})")
        if label is not None:
            # As the collection stores it (a folder's labels are text): a filter on another type matches nothing.
            stored = next((held for held in self._labels if str(held) == str(label).strip()), None)
            if stored is None:
                raise BadRequest(f"unknown label {label}: this collection's labels are {_span(self._labels)}")
            label = stored
        answers: list[dict | None] = [None] * len(files)
        good: list[tuple[int, np.ndarray]] = []
        for i, (name, data) in enumerate(files):
            try:
                with self._decoding:
                    good.append((i, preprocess.load_digit_bytes(data, name)))
            except CbirError as exc:
                answers[i] = {"query": name, "error": str(exc)}
        if good:
            reader = self._current()
            if top_k > reader.meta.points:
                raise BadRequest(f"top_k {top_k} is larger than the collection ({reader.meta.points} points)")
            hits = self._batcher.submit(np.stack([d for _, d in good]), top_k, label, exact)
            for (i, digit), h in zip(good, hits):
                answer = result_for(files[i][0], digit, h, reader, label).as_dict()  # the fields of `search --json`
                answers[i] = {**answer, "input": data_url(png_bytes(digit))}
        return answers  # type: ignore[return-value]

    def _run_batch(self, jobs: list[_Job]) -> list:
        """The batcher's work: every job's digits in one encode, one query per (label, exact) group."""
        from cbir.store import Hits
        from search.query import FIELDS

        reader = self._current()
        vectors = self._encoder.encode(np.concatenate([job.digits for job in jobs]))
        starts = np.cumsum([0] + [len(job.digits) for job in jobs])
        out: list = [None] * len(jobs)
        groups: dict = {}
        for j, job in enumerate(jobs):
            groups.setdefault((job.label, job.exact), []).append(j)
        for (label, exact), members in groups.items():
            limit = max(jobs[j].top_k for j in members)
            rows = np.concatenate([np.arange(starts[j], starts[j + 1]) for j in members])
            hits = reader.query_batch(vectors[rows], limit, label=label, exact=exact, fields=FIELDS)
            at = 0
            for j in members:
                k, n = jobs[j].top_k, len(jobs[j].digits)
                out[j] = [Hits(h.ids[:k], h.distances[:k], (h.payloads or [])[:k]) for h in hits[at : at + n]]
                at += n
        return out

    def point_image_png(self, point_id) -> bytes:
        """The stored image of a point (28x28 grayscale PNG); UnknownPoint if the collection has no such point."""
        reader = self._current()
        found = reader.retrieve([point_id], with_vectors=False, fields=("path", "dataset", "split", "index"))
        if len(found.ids) == 0:
            raise UnknownPoint(f"no point {point_id} in collection {self.settings.collection_name!r}")
        payload = {k: v[0] for k, v in found.payloads.items()}
        return png_bytes(self._images.image(found.ids[0], payload, reader.meta))

    def collections(self) -> list[dict]:
        """Every collection in the store: points, model, encoder, data set, complete."""
        out = []
        for c in self._backend.collections():
            m = c.meta
            out.append({"name": c.name, "points": m.points if m else None, "model_id": m.model_id if m else None,
                        "encoder": m.encoder if m else None, "dataset": m.dataset if m else None,
                        "complete": bool(m and m.complete), "serving": c.name == self.settings.collection_name,
                        **({"problem": c.problem} if c.problem else {})})
        return out

    def ready(self) -> bool:
        return self._reader is not None

    @property
    def batcher(self) -> MicroBatcher:
        return self._batcher

    def close(self) -> None:
        self._batcher.close()
        with self._swap:
            for _, old in self._retired:
                old.close()
            self._retired = []
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        if self._owns_backend:
            self._backend.close()


def _span(labels: list) -> str:
    ints = [v for v in labels if isinstance(v, int)]
    if len(ints) == len(labels) and len(labels) > 2 and ints == list(range(ints[0], ints[-1] + 1)):
        return f"{ints[0]} to {ints[-1]}"
    return ", ".join(str(v) for v in labels) or "none"
