import gzip
import struct

import numpy as np
import pytest

from cbir.errors import CbirError
from cbir.idx import parse_idx, read_idx


def idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def test_parses_images_and_labels():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(idx_bytes(images)), images)
    labels = np.array([7, 2, 1], dtype=np.uint8)
    assert np.array_equal(parse_idx(idx_bytes(labels)), labels)


def test_reads_gzipped_and_plain_files_alike(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(arr))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    assert np.array_equal(read_idx(tmp_path / "a"), read_idx(tmp_path / "a.gz"))


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "too short"),
        (b"\x00\x00\x0d\x03" + b"\x00" * 12, "magic"),  # float type code
        (b"PK\x03\x04" + b"\x00" * 12, "magic"),  # a zip file
        (struct.pack(">HBB", 0, 8, 3) + b"\x00\x00", "header truncated"),
        (struct.pack(">HBBIII", 0, 8, 3, 2, 28, 28) + b"\x00" * 100, "truncated or corrupt"),
        (struct.pack(">HBBI", 0, 8, 1, 3) + b"\x01\x02\x03\x04", "truncated or corrupt"),  # trailing bytes
    ],
)
def test_bad_files_give_a_clear_error(raw, message):
    with pytest.raises(CbirError, match=message):
        parse_idx(raw)


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    good = gzip.compress(idx_bytes(np.zeros((10, 28, 28), np.uint8)))
    (tmp_path / "x.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(CbirError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "x.gz")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CbirError, match="cannot read"):
        read_idx(tmp_path / "nope.gz")
