"""All configuration in one place: defaults, overridden by CBIR_* env vars, overridden by CLI flags.

Nothing else reads the environment for cbir's settings: paths get `~` expanded and are made
absolute here (so every message shows the folder that was really looked at), and values are
checked here, so a bad URL or collection name is one clear line before any work starts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from cbir.errors import CbirError
from cbir.names import check_collection_name

DEFAULT_WAIT = 30.0  # seconds a command waits for a store another process holds (SQLite's busy_timeout)

# setting -> environment variable; the CLI's help texts name these
ENV = {
    "home": "CBIR_HOME",
    "data_dir": "CBIR_DATA_DIR",
    "qdrant_url": "CBIR_QDRANT_URL",
    "qdrant_api_key": "CBIR_QDRANT_API_KEY",
    "collection": "CBIR_COLLECTION",
    "model": "CBIR_MODEL",
    "dataset": "CBIR_DATASET",
    "encoder": "CBIR_ENCODER",
    "wait": "CBIR_WAIT",
    "qdrant_shards": "CBIR_QDRANT_SHARDS",
    "qdrant_replicas": "CBIR_QDRANT_REPLICAS",
    "debug": "CBIR_DEBUG",
}
_PATHS = {"home", "data_dir", "model", "images"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # data set and encoder names: never a path


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("cbir", appauthor=False))


def absolute(path: Path | str) -> Path:
    """`~` expanded and made absolute, without following symbolic links."""
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def redact_url(url: str | None) -> str:
    """A URL safe to print: whatever comes before an @ (user:password) is replaced by ***, however malformed the URL."""
    if not url:
        return ""
    if "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    host = rest.rsplit("@", 1)[1]
    return f"{scheme}{sep}***@{host}"


def check_url(url: str) -> str:
    """A Qdrant server URL: http(s)://host[:port], or ':memory:' for qdrant-client's in-process engine."""
    if url == ":memory:":
        return url
    shown = redact_url(url)
    if url != url.strip() or any(c.isspace() for c in url):
        raise CbirError(f"CBIR_QDRANT_URL {shown!r} holds blanks; give it as http://host:6333")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number in 0..65535
    except ValueError:
        raise CbirError(f"CBIR_QDRANT_URL {shown!r} has a bad port; give it as http://host:6333") from None
    if parts.scheme not in ("http", "https"):
        raise CbirError(f"CBIR_QDRANT_URL {shown!r} is not an http:// or https:// URL; give it as http://host:6333")
    if not parts.hostname:
        raise CbirError(f"CBIR_QDRANT_URL {shown!r} names no host; give it as http://host:6333")
    if port == 0:
        raise CbirError(f"CBIR_QDRANT_URL {shown!r} has a bad port; give it as http://host:6333")
    return url


def _wait(value) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise CbirError(f"--wait / CBIR_WAIT takes a number of seconds (got {value!r})") from None
    if not 0 <= seconds < 10**6:  # also refuses nan and inf
        raise CbirError(f"--wait / CBIR_WAIT must be between 0 and 999999 seconds (got {value!r})")
    return seconds


def _count(value, var: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise CbirError(f"{var} takes a whole number (got {value!r})") from None
    if not 1 <= number <= 1000:
        raise CbirError(f"{var} must be between 1 and 1000 (got {number})")
    return number


def _flag(value) -> bool:
    return str(value).strip().lower() not in ("", "0", "false", "no", "off")


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
    encoder: str = "dae-umap"  # cbir.encoders.DEFAULT_ENCODER; kept literal so settings import nothing heavy
    wait: float = DEFAULT_WAIT
    debug: bool = False
    qdrant_shards: int | None = None  # shard_number of collections cbir creates on a server
    qdrant_replicas: int | None = None  # replication_factor of those collections
    # Which settings the user gave (by env var or flag), rather than defaults: a collection's own record
    # may then decide the rest (its encoder, its data set). None: those that differ from their defaults.
    given: frozenset | None = field(default=None, repr=False, compare=False)
    images: Path | None = None  # a folder collection's root (--images), for hints that rebuild it

    def __post_init__(self):
        # Programs and tests build Settings directly too: the same checks and normalisation apply.
        for name in _PATHS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, absolute(value))
        for name, what in (("home", "--home / CBIR_HOME"), ("data_dir", "--data-dir / CBIR_DATA_DIR")):
            value = getattr(self, name)
            if value is not None and value.exists() and not value.is_dir():
                raise CbirError(f"{what}: {value} is a file, not a folder; give a folder")
        if self.qdrant_url is not None:
            check_url(self.qdrant_url)
        if self.collection is not None:
            check_collection_name(self.collection, source="--collection / CBIR_COLLECTION")
        for name, what in (("dataset", "--dataset / CBIR_DATASET"), ("encoder", "--encoder / CBIR_ENCODER")):
            if not _NAME.match(str(getattr(self, name))):
                raise CbirError(f"{what}: {getattr(self, name)!r} is not a name (letters, digits, '-', '_' and '.'); "
                                f"see --help for the choices")
        object.__setattr__(self, "wait", _wait(self.wait))
        if self.given is None:
            defaults = Settings.__dataclass_fields__
            object.__setattr__(self, "given", frozenset(
                f for f in ("data_dir", "qdrant_url", "collection", "model", "dataset", "encoder")
                if getattr(self, f) != defaults[f].default))
        for name in ("qdrant_shards", "qdrant_replicas"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _count(value, ENV[name]))

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Defaults, then CBIR_* env vars, then the non-None overrides (CLI flags)."""
        values = {}
        for f in fields(cls):
            raw = os.environ.get(ENV[f.name]) if f.name in ENV else None
            if not raw:
                continue  # an empty variable means "not set", as for most tools
            values[f.name] = _flag(raw) if f.name == "debug" else raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values, given=frozenset(values))

    def but(self, **changes) -> "Settings":
        """A copy with some settings changed (checked like the original; changed ones count as given)."""
        return replace(self, **changes, given=(self.given or frozenset()) | frozenset(changes))

    @property
    def collection_name(self) -> str:
        """The collection to use: explicit, or one per data set and encoder."""
        return self.collection or default_collection(self.dataset, self.encoder)

    @property
    def store_dir(self) -> Path:
        """Where the embedded Qdrant Edge collections live."""
        return self.home / "qdrant"

    @property
    def trained_model_dir(self) -> Path:
        """Where `ingest train` writes models by default (one folder per data set)."""
        return self.home / "models"

    @property
    def cache_dir(self) -> Path:
        """Where downloaded data sets are kept."""
        return self.home / "data"

    @property
    def server_layout(self) -> dict:
        """How collections cbir creates on a server are split and copied (None: the server's default)."""
        return {"shards": self.qdrant_shards, "replicas": self.qdrant_replicas}

    @property
    def server_shown(self) -> str:
        """The server URL as messages may show it (credentials redacted)."""
        return redact_url(self.qdrant_url)


def default_collection(dataset: str, encoder: str) -> str:
    """The collection a data set's full training split is ingested into with an encoder."""
    return f"cbir-{dataset}-{encoder}"
