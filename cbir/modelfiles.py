"""Model files, in one place: the .keras model, its LiteRT export (.tflite), its provenance (.json),
the model id, and where trained models are kept.

A model's id is the first 16 hex digits of the SHA-256 of what it *is* (the .keras file's
architecture and weights), not of when it was saved: refitting a deterministic encoder gives the
same id, so nothing needs re-ingesting for identical vectors.

Trained models are versioned under CBIR_HOME/models/<scope>/<encoder>/<model id>/ (scope: a data
set, or a folder collection) with a CURRENT pointer. A new model is written beside the old ones
and the pointer switched in one rename, so a collection built by an older model can still name
it (`--model <path>`), and `ingest run --train` switches the pointer only once the collection
it rebuilt is published. TensorFlow is imported only by the functions that need it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import zipfile
from pathlib import Path

import numpy as np

from cbir.errors import CbirError
from cbir.safeio import file_sha256, read_json as read_json_file

PACKAGED_DIR = Path(__file__).parent / "models"
CODE_LAYER = "encoder"  # the seed autoencoder's code layer: its flattened output is the vector
CURRENT = "CURRENT"


# --- names and ids ------------------------------------------------------------------------------

def exported_path(model_path: Path) -> Path:
    """The LiteRT file that sits beside a .keras file."""
    return Path(model_path).with_suffix(".tflite")


def provenance_path(model_path: Path) -> Path:
    """The provenance JSON that sits beside a .keras file."""
    return Path(model_path).with_suffix(".json")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_id(keras_path: Path) -> str:
    """The first 16 hex digits of the SHA-256 of a .keras file's architecture and weights (not its save date)."""
    path = Path(keras_path)
    try:
        if not path.is_file():
            raise OSError(f"{path} is not a regular file")
        with zipfile.ZipFile(path) as archive:
            digest = hashlib.sha256()
            for member in ("config.json", "model.weights.h5"):
                digest.update(member.encode() + b"\0")
                digest.update(archive.read(member))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise CbirError(f"cannot read model {path}: {str(exc)[:200]}; train one with `ingest train`") from exc
    return digest.hexdigest()[:16]


def read_provenance(model_path: Path) -> dict | None:
    """The provenance record beside a model (None when there is none or it is unreadable)."""
    try:
        record = read_json_file(provenance_path(model_path))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def provenance_encoder(model_path: Path) -> str | None:
    """The registered encoder a model file is, from its provenance (None if it does not say)."""
    record = read_provenance(model_path)
    name = record.get("encoder") if record else None
    return name if isinstance(name, str) and name else None


# --- Keras models (TensorFlow imported inside) ---------------------------------------------------

def is_autoencoder(model) -> bool:
    """Whether a Keras model is the seed's autoencoder (rather than an encoder)."""
    return any(layer.name == CODE_LAYER for layer in model.layers)


def encoder_part(model):
    """image -> vector: the autoencoder's flattened code layer, or an encoder model itself."""
    if not is_autoencoder(model):
        return model
    import keras

    code = keras.layers.Flatten(name="code")(model.get_layer(CODE_LAYER).output)
    return keras.Model(model.input, code)


def code_dim(model) -> int:
    """Length of the vectors a model's encoder produces."""
    import numpy as np

    return int(np.prod(encoder_part(model).output.shape[1:]))


def export_encoder(model, model_path: Path) -> Path:
    """Export the encoder (see encoder_part) to LiteRT beside the .keras file, for fast queries."""
    import contextlib
    import io

    lite = exported_path(model_path)
    tmp = lite.with_name(f".{lite.stem}.{secrets.token_hex(4)}.tmp.tflite")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Keras prints "Saved artifact at ..."
            encoder_part(model).export(str(tmp), format="litert")
        tmp.replace(lite)
    finally:
        tmp.unlink(missing_ok=True)
    return lite


def _inference_copy(model):
    """The model without optimizer state (its own or a nested model's): it would triple the file, unused."""
    import keras

    import cbir.layers  # noqa: F401  clone_model rebuilds custom layers from the registry

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def write_model(model, folder: Path, name: str, provenance: dict) -> Path:
    """Write <name>.keras, its .tflite and its provenance .json into a new folder, which must not exist yet.

    The files are written in a temporary folder beside it and that folder is renamed into place:
    the three appear together or not at all, and two writers never share a temporary file.
    """
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.tmp")
    tmp.mkdir(parents=True)
    try:
        path = tmp / f"{name}.keras"
        copy = _inference_copy(model)
        copy.save(path)
        lite = export_encoder(copy, path)
        record = {**provenance, "model_id": model_id(path), "file": path.name, "encoder_file": lite.name,
                  "encoder_sha256": file_sha256(lite)}
        provenance_path(path).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / path.name).is_file() or model_id(folder / path.name) != record["model_id"]:
                raise  # an existing folder of another model: never overwritten
            # the same model (same id) is already there: keep it
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder / f"{name}.keras"


def save_as(model, path: Path, provenance: dict) -> Path:
    """Write a model to a path the user chose (--out): its three files replace any there, each atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = write_model(model, path.parent / f".{path.stem}.{secrets.token_hex(4)}.staged", path.stem, provenance)
    try:
        for src in (exported_path(staged), provenance_path(staged), staged):  # the .keras last: it names the model
            src.replace(path.parent / src.name)
    finally:
        shutil.rmtree(staged.parent, ignore_errors=True)
    return path


def export_model(path: Path, out: Path | None = None) -> Path:
    """Re-export a saved model's encoder to LiteRT: beside it, or at out; note it in the provenance if beside."""
    model = load_keras(path)
    if out is not None:
        target = Path(out).with_suffix(".keras")
        target.parent.mkdir(parents=True, exist_ok=True)
        lite = export_encoder(model, target)
        return lite
    lite = export_encoder(model, path)
    record = read_provenance(path)
    if record is not None:
        record.update(encoder_file=lite.name, encoder_sha256=file_sha256(lite))
        provenance_path(path).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return lite


def load_keras(path: Path):
    """Load a saved .keras model safely (no arbitrary code), or raise a CbirError."""
    path = Path(path)
    if not path.is_file():
        raise CbirError(f"model file {path} does not exist; train one with `ingest train`")
    import keras

    import cbir.layers  # noqa: F401  registers the custom layers saved models may hold

    if not zipfile.is_zipfile(path):  # Keras would call it "File not found"
        raise CbirError(f"cannot load model {path}: not a .keras file (a .keras model is a zip archive); "
                        "retrain it with `ingest train`")
    try:
        # safe_mode refuses lambda layers and other arbitrary code in a model file.
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises many types for a bad file
        raise CbirError(f"cannot load model {path}: {str(exc).splitlines()[0][:200]}; retrain it with `ingest train`") from exc


class KerasModel:
    """A saved model in Keras: reference vectors for tests, reconstructions for the denoising demo."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.model = load_keras(self.path)
        self.encoder = encoder_part(self.model)
        self.dim = code_dim(self.encoder)
        self.model_id = model_id(self.path)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Images -> vectors (N, dim) float32, computed by Keras."""
        import keras

        from cbir.encoder import to_float

        x = to_float(images)
        return keras.ops.convert_to_numpy(self.encoder(x, training=False)).reshape(len(x), -1)

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """Images -> the autoencoder's reconstructions, (N, 28, 28) float32."""
        import keras

        from cbir.encoder import to_float

        if not is_autoencoder(self.model):
            raise CbirError(f"{self.path} is an encoder, not an autoencoder; denoising needs the dae model (--encoder dae)")
        x = to_float(images)
        return keras.ops.convert_to_numpy(self.model(x, training=False)).reshape(len(x), 28, 28)


# --- where models are kept ----------------------------------------------------------------------

def packaged_path(dataset: str, name: str) -> Path:
    """Where the package ships an encoder for a data set."""
    return PACKAGED_DIR / dataset / f"{name}.keras"


class ModelStore:
    """Trained models under CBIR_HOME/models: <scope>/<encoder>/<model id>/<encoder>.keras, and a CURRENT pointer."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def folder(self, scope: str, encoder: str) -> Path:
        return self.root / scope / encoder

    def current(self, scope: str, encoder: str) -> Path | None:
        """The model `ingest train` made current for this scope and encoder (None: there is none)."""
        folder = self.folder(scope, encoder)
        try:
            pointer = read_json_file(folder / CURRENT)
            version = pointer.get("model_id") if isinstance(pointer, dict) else None
        except (OSError, ValueError):
            version = None
        if isinstance(version, str) and len(version) == 16 and all(c in "0123456789abcdef" for c in version):
            path = folder / version / f"{encoder}.keras"
            if path.is_file():
                return path
        legacy = self.root / scope / f"{encoder}.keras"  # where cbir 0.1 wrote it
        return legacy if legacy.is_file() else None

    def versions(self, scope: str, encoder: str) -> list[Path]:
        folder = self.folder(scope, encoder)
        if not folder.is_dir():
            return []
        return sorted(p / f"{encoder}.keras" for p in folder.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / f"{encoder}.keras").is_file())

    def add(self, model, scope: str, encoder: str, provenance: dict) -> Path:
        """Write a new version (not yet current); returns its .keras path."""
        folder = self.folder(scope, encoder)
        folder.mkdir(parents=True, exist_ok=True)
        staged = write_model(model, folder / f".new-{secrets.token_hex(6)}", encoder, provenance)
        version = model_id(staged)
        target = folder / version
        try:
            staged.parent.rename(target)
        except OSError:
            if not (target / staged.name).is_file():
                raise
        finally:
            if staged.parent.exists():
                shutil.rmtree(staged.parent, ignore_errors=True)  # the same model was there already
        return target / f"{encoder}.keras"

    def make_current(self, path: Path) -> None:
        """Point the scope/encoder at this version, in one atomic rename."""
        path = Path(path)
        folder = path.parent.parent
        tmp = folder / f".{CURRENT}.{secrets.token_hex(4)}.tmp"
        tmp.write_text(json.dumps({"model_id": path.parent.name}) + "\n")
        tmp.replace(folder / CURRENT)

    def reset(self, scope: str, encoder: str) -> bool:
        """Forget the trained model (versions stay on disk until removed): back to the packaged one."""
        pointer = self.folder(scope, encoder) / CURRENT
        legacy = self.root / scope / f"{encoder}.keras"
        found = pointer.exists() or legacy.exists()
        pointer.unlink(missing_ok=True)
        if legacy.exists():
            for p in (legacy, exported_path(legacy), provenance_path(legacy)):
                p.unlink(missing_ok=True)
        return found
