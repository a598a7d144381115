"""File-system helpers for the embedded store: atomic writes, contained paths, sparse copies, sizes.

Everything the store creates, writes or deletes lies under its root (CBIR_HOME/qdrant). Paths are
built from checked names only, and a symbolic link found where the store expects its own folder
or file is refused, never followed: deleting through a link could remove the user's other files.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

from cbir import safeio
from cbir.errors import StoreError


def refuse_link(path: Path, root: Path) -> Path:
    """path itself, after checking it is not a symbolic link (and sits under root)."""
    if os.path.islink(path):
        raise StoreError(
            f"{path} is a symbolic link; the store never follows links out of {root}; "
            "remove the link (what it points to is not touched) and try again"
        )
    if os.path.commonpath([os.path.abspath(path), os.path.abspath(root)]) != os.path.abspath(root):
        raise StoreError(f"{path} lies outside the store {root}; refusing to touch it")
    return path


def write_json_atomic(path: Path, data) -> None:
    """Write JSON to a temporary file beside path, flush it to disk, then rename it over path."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}; check free space and permissions in CBIR_HOME") from exc


def read_json(path: Path):
    """The JSON in a small regular file of the store's own (a link or a FIFO is an OSError, never followed)."""
    return safeio.read_json(path, follow_links=False)


def fsync_dir(path: Path) -> None:
    """Make a rename in this folder durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_tree(path: Path, root: Path) -> None:
    """Delete a folder of the store's own. A link is removed itself, never followed (nor are links inside:
    shutil.rmtree does not follow them)."""
    if os.path.commonpath([os.path.abspath(path), os.path.abspath(root)]) != os.path.abspath(root):
        raise StoreError(f"{path} lies outside the store {root}; refusing to delete it")
    if os.path.islink(path) or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def copy_tree_sparse(src: Path, dst: Path) -> None:
    """Copy a folder of regular files, keeping holes: the engine preallocates large sparse files."""
    dst.mkdir(parents=True)
    for entry in os.scandir(src):
        target = dst / entry.name
        if entry.is_symlink():
            raise StoreError(f"{entry.path} is a symbolic link; the store's files never are: the collection is damaged")
        if entry.is_dir():
            copy_tree_sparse(Path(entry.path), target)
        else:
            _copy_file_sparse(Path(entry.path), target)


def _copy_file_sparse(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fin.fileno(), offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    break  # nothing but a hole after offset
                if offset == 0:  # no SEEK_DATA on this file system: a plain copy
                    fin.seek(0)
                    shutil.copyfileobj(fin, fout, 1 << 20)
                    break
                raise
            end = os.lseek(fin.fileno(), start, os.SEEK_HOLE)
            _copy_range(fin.fileno(), fout.fileno(), start, end)
            offset = end
        os.ftruncate(fout.fileno(), size)


def _copy_range(fd_in: int, fd_out: int, start: int, end: int) -> None:
    os.lseek(fd_out, start, os.SEEK_SET)
    pos = start
    while pos < end:
        chunk = os.pread(fd_in, min(1 << 20, end - pos), pos)
        if not chunk:
            break
        os.pwrite(fd_out, chunk, pos)
        pos += len(chunk)


def file_sizes(folder: Path) -> dict[str, int]:
    """Relative path -> size of every regular file under folder: a cheap fingerprint of a shard."""
    out = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, folder)] = os.lstat(path).st_size
    return out


def disk_usage(folder: Path) -> int:
    """Bytes a folder really occupies on disk (allocated blocks, so sparse files count what they use)."""
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def free_bytes(folder: Path) -> int:
    """Free space on the file system that holds folder (or its nearest existing parent)."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free
