"""What the store and the model folders hold: the functions behind `cbir collections` and `cbir models`.

Collections: every collection of the configured store (embedded or a server) with its points,
encoder, data set, model id, whether it is complete, and its size on disk (embedded). Models: the
packaged ones and those trained under CBIR_HOME/models, per scope (a data set, or a folder
collection) and encoder, with their provenance date and the collections each one built.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cbir.errors import CbirError, CollectionMissing
from cbir.modelfiles import PACKAGED_DIR, CURRENT, ModelStore, model_id, read_provenance
from cbir.settings import Settings
from cbir.store import CollectionInfo, open_backend


def collections(settings: Settings) -> list[CollectionInfo]:
    backend = open_backend(settings)
    try:
        return backend.collections()
    finally:
        backend.close()


def collection(settings: Settings, name: str) -> CollectionInfo:
    """One collection's entry (its record read without opening it), or CollectionMissing."""
    for info in collections(settings):
        if info.name == name:
            return info
    raise CollectionMissing(f"collection {name!r} does not exist in {open_backend(settings).location}; "
                            "see `cbir collections list`")


def drop(settings: Settings, name: str) -> bool:
    """Remove a collection (readers still open finish first); True if there was one."""
    backend = open_backend(settings)
    try:
        with backend.writer(name) as session:
            return session.drop()
    finally:
        backend.close()


@dataclass(frozen=True)
class ModelEntry:
    scope: str  # a data set (mnist) or a folder collection
    encoder: str
    path: Path
    model_id: str
    created: str
    packaged: bool
    current: bool  # what commands use for this scope and encoder
    built: tuple[str, ...]  # collections whose vectors this model made


def models(settings: Settings) -> list[ModelEntry]:
    """Packaged and trained models, with the collections each built (by model id)."""
    try:
        built_by: dict[str, list[str]] = {}
        for info in collections(settings):
            if info.meta is not None:
                built_by.setdefault(info.meta.model_id, []).append(info.name)
    except CbirError:
        built_by = {}  # a store that cannot be read does not hide the models
    store = ModelStore(settings.trained_model_dir)
    out: list[ModelEntry] = []
    trained_current: dict[tuple[str, str], Path | None] = {}
    if store.root.is_dir():
        for scope_dir in sorted(p for p in store.root.iterdir() if p.is_dir()):
            names = {p.name for p in scope_dir.iterdir() if p.is_dir()} | {p.stem for p in scope_dir.glob("*.keras")}
            for encoder in sorted(names):
                current = store.current(scope_dir.name, encoder)
                trained_current[(scope_dir.name, encoder)] = current
                paths = store.versions(scope_dir.name, encoder)
                legacy = scope_dir / f"{encoder}.keras"
                if legacy.is_file():
                    paths.append(legacy)
                out += [_entry(scope_dir.name, encoder, p, False, p == current, built_by) for p in paths]
    for scope_dir in sorted(p for p in PACKAGED_DIR.iterdir() if p.is_dir()):
        for path in sorted(scope_dir.glob("*.keras")):
            current = trained_current.get((scope_dir.name, path.stem)) is None
            out.append(_entry(scope_dir.name, path.stem, path, True, current, built_by))
    return out


def _entry(scope: str, encoder: str, path: Path, packaged: bool, current: bool, built_by: dict) -> ModelEntry:
    record = read_provenance(path) or {}
    try:
        mid = model_id(path)
    except CbirError:
        mid = str(record.get("model_id", "?"))
    created = str(record.get("created", ""))
    if not created:
        created = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).isoformat(timespec="seconds")
    return ModelEntry(scope, encoder, path, mid, created, packaged, current, tuple(sorted(built_by.get(mid, []))))


def remove_model(settings: Settings, scope: str, encoder: str, model: str | None = None) -> str:
    """Forget trained models: one version (model id), or all of a scope's encoder (back to the packaged one)."""
    import shutil

    store = ModelStore(settings.trained_model_dir)
    folder = store.folder(scope, encoder)
    if model is None:
        found = store.reset(scope, encoder)
        if folder.is_dir():
            shutil.rmtree(folder)
            found = True
        if not found:
            raise CbirError(f"no trained {encoder} model for {scope} under {settings.trained_model_dir}; "
                            "see `cbir models list`")
        return f"removed the trained {encoder} models of {scope}: commands use the packaged one again"
    target = folder / model
    if not (target / f"{encoder}.keras").is_file():
        raise CbirError(f"no trained {encoder} model {model} for {scope}; see `cbir models list`")
    current = store.current(scope, encoder)
    shutil.rmtree(target)
    if current is not None and current.parent == target:
        (folder / CURRENT).unlink(missing_ok=True)
        return f"removed model {model} ({scope}, {encoder}), the current one: commands use the packaged one again"
    return f"removed model {model} ({scope}, {encoder})"
