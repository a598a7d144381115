"""Reading the small files cbir keeps (pointers, records, provenance) without trusting them.

A FIFO or device where a file should be is refused, never waited on; a file larger than any
cbir writes is refused before it is read; JSON nested deeply enough to exhaust the parser's
stack is a ValueError like any other malformed JSON.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

MAX_SMALL_FILE = 16 * 2**20


def read_regular(path: Path, limit: int = MAX_SMALL_FILE, follow_links: bool = True) -> bytes:
    """A regular file's bytes (at most limit); OSError for anything else."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        if st.st_size > limit:
            raise OSError(f"{path} is larger than {limit} bytes")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise OSError(f"{path} is larger than {limit} bytes")
        return data
    finally:
        os.close(fd)


def read_json(path: Path, follow_links: bool = True):
    """The JSON in a small regular file; OSError or ValueError otherwise (never RecursionError)."""
    data = read_regular(path, follow_links=follow_links)
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise ValueError(f"{path} nests too deeply to be a cbir file") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text") from exc


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read a megabyte at a time (models, and the user's images for re-indexing)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
