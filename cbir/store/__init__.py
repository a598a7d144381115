"""The vector store, one facade over two backends (embedded Qdrant Edge, or a Qdrant server).

    base.py        the interface: readers, write sessions, builds, hits
    edge.py        the embedded backend (generations on disk, shared by many processes)
    server.py      the server backend (aliases switched atomically)
    collection.py  the policy: the typed collection record and the one compatibility check
    locks.py, files.py   waiting file locks; atomic, contained, sparse file operations

Callers pick the backend from the settings and get readers already checked against their encoder.
"""

from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from typing import Iterator

from cbir import advice
from cbir.errors import CbirError, CollectionMissing
from cbir.settings import Settings
from cbir.store.base import Backend, CollectionInfo, Hits, Points, Reader, check_finite
from cbir.store.collection import SCHEMA, CollectionMeta, Expected, Hints, check_compatible

__all__ = [
    "Backend", "CollectionInfo", "CollectionMeta", "Expected", "Hints", "Hits", "Points", "Reader", "SCHEMA",
    "check_compatible", "check_finite", "hints", "open_backend", "reading",
]

_warned: set[str] = set()


def hints(settings: Settings, *extra: str) -> Hints:
    """The commands that build or rebuild the settings' collection, with the user's flags.

    A collection holding part of a data set must be rebuilt as that part: its record says which
    (`for_meta`); before the record is read, a name ending in -firstN (what `--limit N` names) says it.
    """
    extra = extra or _name_flags(settings)
    return Hints(build=advice.command(settings, "ingest run", *extra),
                 rebuild=advice.command(settings, "ingest run --recreate", *extra),
                 refine=lambda meta: hints(settings, *(meta_flags(meta) or extra)))


def _name_flags(settings: Settings) -> tuple[str, ...]:
    found = re.search(r"-first([1-9][0-9]*)$", settings.collection_name or "")
    return ("--limit", found.group(1)) if found and settings.images is None else ()


def meta_flags(meta: CollectionMeta) -> tuple[str, ...]:
    """Flags a hint needs to rebuild this very collection: its part (--limit N) or its folder (--images DIR)."""
    if meta.first:
        return ("--limit", str(meta.first))
    if meta.source.get("kind") == "deformed" and meta.source.get("size"):
        return ("--size", str(meta.source["size"]))
    return ()


def _warn_plain_http_key(settings: Settings) -> None:
    url = settings.qdrant_url or ""
    if settings.qdrant_api_key and url.startswith("http://") and url not in _warned:
        _warned.add(url)
        print(f"warning: the API key (CBIR_QDRANT_API_KEY) goes to {settings.server_shown} unencrypted; "
              "use an https:// URL", file=sys.stderr)


def open_backend(settings: Settings, extra_hint_flags: tuple[str, ...] = ()) -> Backend:
    """The backend the settings name: a Qdrant server when CBIR_QDRANT_URL is set, else embedded Edge."""
    h = hints(settings, *extra_hint_flags)
    if settings.qdrant_url:
        from cbir.store.server import Connection, ServerBackend

        _warn_plain_http_key(settings)
        return ServerBackend(Connection.open(settings.qdrant_url, settings.qdrant_api_key), h, settings.server_layout,
                             settings.wait)
    from cbir.store.edge import EdgeBackend

    return EdgeBackend(settings.store_dir, settings.wait, h)


def _with_partials(exc: CollectionMissing, backend: Backend, name: str) -> CollectionMissing:
    """A missing collection whose partial builds (`ingest run --limit N`) exist: say how to search those."""
    try:
        partials = [c.name for c in backend.collections() if c.name.startswith(f"{name}-first") and c.meta is not None]
    except CbirError:
        return exc
    if not partials:
        return exc
    return CollectionMissing(f"{exc}; or search the part that exists with --collection {partials[0]}")


@contextmanager
def reading(settings: Settings, expected: Expected | None = None, backend: Backend | None = None) -> Iterator[Reader]:
    """The settings' collection open for reading, checked against the encoder that will query it."""
    owned = backend is None
    backend = backend or open_backend(settings)
    try:
        try:
            reader = backend.reader(settings.collection_name)
        except CollectionMissing as exc:
            raise _with_partials(exc, backend, settings.collection_name) from exc
        try:
            if expected is not None:
                h = hints(settings, *meta_flags(reader.meta))
                check_compatible(reader.meta, expected, settings.collection_name, h.rebuild, h.build)
            yield reader
        finally:
            reader.close()
    finally:
        if owned:
            backend.close()
