"""Commands to suggest in messages, carrying the settings the user gave so a pasted hint works.

`search x.png -e pixels` that fails must advise `ingest run --recreate --encoder pixels`, not a
bare `ingest run --recreate` that would rebuild another collection and leave the error in place.
"""

from __future__ import annotations

import shlex

from cbir.settings import Settings, _default_home, redact_url

DEFAULT_ENCODER = "dae-umap"  # cbir.encoders.DEFAULT_ENCODER (that module imports this one)
DEFAULT_DATASET = "mnist"


def flags(settings: Settings, *extra: str) -> list[str]:
    """The flags that select the same collection, model, store and data as `settings`."""
    out: list[str] = []
    if settings.encoder != DEFAULT_ENCODER:
        out += ["--encoder", settings.encoder]
    if settings.images is not None:
        out += ["--images", str(settings.images)]  # a folder collection: rebuilt from its folder
    elif settings.dataset != DEFAULT_DATASET:
        out += ["--dataset", settings.dataset]
    if settings.collection:
        out += ["--collection", settings.collection]
    if settings.model is not None:
        out += ["--model", str(settings.model)]
    if settings.home != _default_home():
        out += ["--home", str(settings.home)]
    if settings.qdrant_url and settings.qdrant_url != ":memory:":
        out += ["--qdrant-url", redact_url(settings.qdrant_url)]
    out += list(extra)
    return out


def command(settings: Settings, base: str, *extra: str) -> str:
    """A command line in backquotes, e.g. `ingest run --recreate --encoder pixels`."""
    words = shlex.split(base) + flags(settings, *extra)
    return "`" + " ".join(shlex.quote(w) for w in words) + "`"
