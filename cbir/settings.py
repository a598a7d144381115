"""All configuration in one place: defaults, overridden by env vars, overridden by CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("cbir", appauthor=False))


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


@dataclass(frozen=True)
class Settings:
    """Where things live and which store to talk to."""

    home: Path = field(default_factory=_default_home)
    data_dir: Path | None = None
    qdrant_url: str | None = None
    qdrant_api_key: str | None = field(default=None, repr=False)  # a secret: never in logs or tracebacks
    collection: str | None = None
    model: Path | None = None
    dataset: str = "mnist"
    encoder: str = "dae-umap"  # cbir.encoders.DEFAULT_ENCODER; kept literal so settings import nothing

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Defaults, then CBIR_* env vars, then the non-None overrides (CLI flags)."""
        base = cls(
            home=_env_path("CBIR_HOME") or _default_home(),
            data_dir=_env_path("CBIR_DATA_DIR"),
            qdrant_url=os.environ.get("CBIR_QDRANT_URL") or None,
            qdrant_api_key=os.environ.get("CBIR_QDRANT_API_KEY") or None,
            collection=os.environ.get("CBIR_COLLECTION") or None,
            model=_env_path("CBIR_MODEL"),
            dataset=os.environ.get("CBIR_DATASET") or "mnist",
            encoder=os.environ.get("CBIR_ENCODER") or "dae-umap",
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def collection_name(self) -> str:
        """The collection to use: explicit, or one per data set and encoder."""
        return self.collection or f"cbir-{self.dataset}-{self.encoder}"

    @property
    def store_dir(self) -> Path:
        """Where the embedded Qdrant Edge shards live."""
        return self.home / "qdrant"

    @property
    def trained_model_dir(self) -> Path:
        """Where `ingest train` writes models by default (one folder per data set)."""
        return self.home / "models"

    @property
    def cache_dir(self) -> Path:
        """Where downloaded data sets are kept."""
        return self.home / "data"
