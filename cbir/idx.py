"""Read the IDX format (MNIST's): a magic number, big-endian dimensions, then uint8 data."""

from __future__ import annotations

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


MAX_BYTES = 1 << 30  # no IDX file cbir reads is near this; a header claiming more is not believed


def idx_size(header: bytes) -> int | None:
    """Total bytes (header + data) an IDX header announces; None when the header is not IDX."""
    if len(header) < 4:
        return None
    zero, dtype, ndim = struct.unpack(">HBB", header[:4])
    if zero != 0 or dtype != _UBYTE or not 1 <= ndim <= 4 or len(header) < 4 + 4 * ndim:
        return None
    shape = struct.unpack(f">{ndim}I", header[4 : 4 + 4 * ndim])
    return 4 + 4 * ndim + int(np.prod(shape, dtype=np.int64))


def gunzip_bounded(raw: bytes, name: str, limit: int | None = None) -> bytes:
    """Decompress gzip data without ever holding more than it should expand to (no gzip bomb).

    The expected size is what the IDX header inside says (or `limit`); decompression stops one
    byte past it, so a file that expands further is refused instead of filling memory.
    """
    stream = zlib.decompressobj(wbits=31)
    try:
        head = stream.decompress(raw, 4 + 4 * 4)  # the longest IDX header
        expected = limit if limit is not None else idx_size(head)
        if expected is None:  # not IDX inside: parse_idx says why, unless the gzip itself is broken
            data = head + stream.decompress(stream.unconsumed_tail, MAX_BYTES + 1 - len(head))
            if not stream.eof:
                raise CbirError(f"{name}: corrupt or truncated gzip data (it ends early); re-download it")
            return data
        if expected > MAX_BYTES:
            raise CbirError(f"{name}: its header announces {expected} bytes, more than any data set cbir reads; "
                            "the file is corrupt, re-download it")
        data = head
        if len(head) <= expected:
            data += stream.decompress(stream.unconsumed_tail, expected + 1 - len(head))
        if len(data) <= expected and not stream.eof:
            data += stream.decompress(stream.unconsumed_tail, 1)  # reach the end of the stream (its trailer)
        if len(data) > expected:
            raise CbirError(f"{name}: expands to more than the {expected} bytes its header announces; "
                            "the file is corrupt (or a gzip bomb), re-download it")
        if not stream.eof:
            raise CbirError(f"{name}: corrupt or truncated gzip data (it ends early); re-download it")
    except zlib.error as exc:
        raise CbirError(f"{name}: corrupt or truncated gzip data ({exc}); re-download it") from exc
    return data


def read_bytes(path: Path) -> bytes:
    """Read a file, transparently gunzipping it (bounded, see gunzip_bounded) when it is gzip-compressed."""
    try:
        if path.exists() and not path.is_file():
            raise CbirError(f"{path}: not a regular file; point --data-dir at a folder of IDX files")
        raw = path.read_bytes()
    except OSError as exc:
        raise CbirError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        return gunzip_bounded(raw, str(path))
    return raw


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) from disk."""
    return parse_idx(read_bytes(path), name=str(path))
