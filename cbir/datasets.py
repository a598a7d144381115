"""MNIST-style data sets: find the IDX files locally, or download them, and validate them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cbir.errors import CbirError
from cbir.idx import gunzip_bounded, parse_idx, read_bytes

SPLITS = ("train", "test")
_STEMS = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
MAX_DOWNLOAD = 64 * 2**20  # the largest file (Fashion-MNIST's training images) is 26 MiB gzipped
SPLIT_SIZES = {"train": 60000, "test": 10000}  # every registered data set has these; load_split checks


@dataclass(frozen=True)
class DatasetSpec:
    """Where a data set can be found and what its uncompressed files hash to."""

    name: str
    code: int  # part of stable point ids; never renumber
    mirrors: tuple[str, ...]
    md5: dict[str, str]  # stem -> md5 of the uncompressed bytes
    system_dirs: tuple[Path, ...] = ()
    digits: bool = False  # handwriting: deskewing is safe (a slanted 1 is still a 1; a slanted shoe is not a shoe)
    class_names: tuple[str, ...] = ()  # label i stands for class_names[i] (digits stand for themselves)


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        code=1,
        digits=True,
        mirrors=(
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
        md5={
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        code=2,
        mirrors=(
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
        md5={
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}


@dataclass(frozen=True)
class Split:
    """One split of a data set: uint8 images (N, 28, 28), labels (N,), and provenance."""

    dataset: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    md5: dict[str, str]

    def __len__(self) -> int:
        return len(self.labels)


def get_spec(name: str) -> DatasetSpec:
    """The spec for a data set name, or a clear error listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise CbirError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem, folder / stem.replace("-idx", ".idx")):
        if candidate.is_file():
            return candidate
    return None


def _has_all(folder: Path) -> bool:
    return all(_find_file(folder, stem) for stem in _STEMS.values())


def _download(spec: DatasetSpec, target: Path) -> None:
    """Fetch the four gzipped files into target, verifying each against its published md5."""
    import urllib.error  # only when downloading: http.client alone costs every command's start-up 30 ms
    import urllib.request

    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CbirError(f"cannot create {target} for the download: {exc.strerror or exc}; set CBIR_HOME to a writable folder") from exc
    for stem in _STEMS.values():
        dest = target / f"{stem}.gz"
        if dest.is_file():
            continue
        last_error: Exception | None = None
        for mirror in spec.mirrors:
            try:
                with urllib.request.urlopen(mirror + f"{stem}.gz", timeout=30) as resp:
                    payload = resp.read(MAX_DOWNLOAD + 1)  # never more than a data set file can be
                if len(payload) > MAX_DOWNLOAD:
                    raise CbirError(f"{mirror}{stem}.gz is larger than {MAX_DOWNLOAD // 2**20} MiB, which no "
                                    f"{spec.name} file is; refusing it")
                break
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                last_error = exc
        else:
            raise CbirError(
                f"{spec.name} is not on this machine and could not be downloaded ({last_error}); "
                f"put the four IDX files in a folder and pass --data-dir DIR or set CBIR_DATA_DIR"
            )
        # Verified before anything is saved; decompressed only up to the size its header announces.
        try:
            digest = hashlib.md5(gunzip_bounded(payload, f"downloaded {stem}.gz")).hexdigest()
        except CbirError:
            digest = "not an IDX gzip file"
        if digest != spec.md5[stem]:
            raise CbirError(f"downloaded {stem} has md5 {digest}, expected {spec.md5[stem]}; try again")
        tmp = dest.with_suffix(".part")
        try:
            tmp.write_bytes(payload)
            tmp.replace(dest)
        except OSError as exc:
            raise CbirError(f"cannot save {dest}: {exc.strerror or exc}; check free space in CBIR_HOME") from exc


def identify(folder: Path) -> str | None:
    """Which registered data set a folder of IDX files holds (by its training labels' MD5), or None."""
    stem = _STEMS[("train", "labels")]
    path = _find_file(folder, stem)
    if path is None:
        return None
    digest = hashlib.md5(read_bytes(path)).hexdigest()
    return next((spec.name for spec in DATASETS.values() if spec.md5[stem] == digest), None)


def locate(name: str, data_dir: Path | None, cache_dir: Path, download: bool = True) -> Path:
    """The folder holding the data set's four IDX files: --data-dir, system dirs, cache, download."""
    spec = get_spec(name)
    if data_dir is not None:
        if not data_dir.is_dir():
            raise CbirError(f"data dir {data_dir} does not exist; pass --data-dir DIR or set CBIR_DATA_DIR")
        if _has_all(data_dir):
            holds = identify(data_dir)
            if holds in (None, name):  # this data set, or IDX files of the user's own
                return data_dir
            # CBIR_DATA_DIR holds another known data set (MNIST, say): look for this one elsewhere.
        elif _has_all(data_dir / name):  # a data dir may hold several data sets, one subfolder each
            return data_dir / name
        else:
            missing = [s for s in _STEMS.values() if not _find_file(data_dir, s)]
            raise CbirError(
                f"data dir {data_dir} lacks {', '.join(missing)} (gzipped or not) for {name}; "
                "point --data-dir / CBIR_DATA_DIR at the folder with the four IDX files"
            )
    for folder in (*spec.system_dirs, cache_dir / name):
        if _has_all(folder):
            return folder
    if not download:
        raise CbirError(f"{name} not found; pass --data-dir DIR or set CBIR_DATA_DIR")
    _download(spec, cache_dir / name)
    return cache_dir / name


def load_split(name: str, split: str, folder: Path) -> Split:
    """Load and validate one split's images and labels from a folder of IDX files."""
    if split not in SPLITS:
        raise CbirError(f"unknown split {split!r}; choose train or test")
    arrays, md5 = {}, {}
    for kind in ("images", "labels"):
        stem = _STEMS[(split, kind)]
        path = _find_file(folder, stem)
        if path is None:
            raise CbirError(f"{folder} has no {stem}; point --data-dir at the four IDX files")
        raw = read_bytes(path)
        md5[stem] = hashlib.md5(raw).hexdigest()
        arrays[kind] = parse_idx(raw, name=str(path))
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise CbirError(f"{name} {split} images have shape {images.shape}, expected (N, 28, 28)")
    if labels.ndim != 1:
        raise CbirError(f"{name} {split} labels have shape {labels.shape}, expected (N,)")
    if len(images) != len(labels):
        raise CbirError(f"{name} {split}: {len(images)} images but {len(labels)} labels")
    if len(labels) != SPLIT_SIZES[split]:
        raise CbirError(
            f"{name} {split} has {len(labels)} items, expected {SPLIT_SIZES[split]}; the file is incomplete"
        )
    return Split(name, split, images, labels, md5)


def load(name: str, split: str, data_dir: Path | None, cache_dir: Path) -> Split:
    """Find (or download) a data set and load one split."""
    return load_split(name, split, locate(name, data_dir, cache_dir))
