"""Read the IDX format (MNIST's): a magic number, big-endian dimensions, then uint8 data."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from cbir.errors import CbirError

# magic = 0x0000 | type code (0x08 = unsigned byte) | number of dimensions
_UBYTE = 0x08


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse uncompressed IDX bytes into a uint8 array, checking the header against the size."""
    if len(raw) < 4:
        raise CbirError(f"{name}: file too short to be IDX ({len(raw)} bytes); re-download it")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != _UBYTE or not 1 <= ndim <= 4:
        raise CbirError(
            f"{name}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x000008NN); "
            "this is not an MNIST-style IDX file"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CbirError(f"{name}: IDX header truncated; re-download the file")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise CbirError(
            f"{name}: IDX says shape {shape} ({expected} bytes of data) but the file has "
            f"{len(raw) - header}; the file is truncated or corrupt, re-download it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_bytes(path: Path) -> bytes:
    """Read a file, transparently gunzipping it when it is gzip-compressed."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CbirError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise CbirError(f"{path}: corrupt or truncated gzip data ({exc}); re-download it") from None
    return raw


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) from disk."""
    return parse_idx(read_bytes(path), name=str(path))
