"""The IDX reader: round trips, gzip detection, and one clear error per kind of damage."""

import doctest
import gzip
import re
import struct

import numpy as np
import pytest

import funcnn.data.idx
from funcnn.data import IDXError, read_idx, write_idx


def idx_bytes(code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    """A hand-built IDX file: magic ``00 00 code ndim``, big-endian dims, payload."""
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_every_dtype_raw_and_gzip(tmp_path, dtype, suffix):
    array = (np.arange(24) - 5).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_values_are_read_big_endian(tmp_path):
    path = tmp_path / "shorts"
    path.write_bytes(idx_bytes(0x0B, (2,), b"\x01\x02\xff\xfe"))
    np.testing.assert_array_equal(read_idx(path), np.array([0x0102, -2], np.int16))


def test_gzip_is_recognised_by_magic_bytes_without_suffix(tmp_path):
    path = tmp_path / "compressed-without-suffix"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (3,), b"\x07\x08\x09")))
    np.testing.assert_array_equal(read_idx(path), [7, 8, 9])


CORRUPT = {
    "empty": (b"", "truncated header: 0 bytes"),
    "bad magic": (b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x05", "bad magic number 0x01000801"),
    "bad dtype code": (idx_bytes(0x07, (1,), b"\x05"), "unknown dtype code 0x07"),
    "zero dimensions": (idx_bytes(0x08, (), b""), "the header declares 0 dimensions"),
    "truncated dims": (bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x02", "truncated header: 3 dimensions need 16"),
    "truncated data": (
        idx_bytes(0x08, (2, 3), b"\x00" * 5),
        r"truncated data: shape \(2, 3\) .* 6 .* found 5",
    ),
    "wrong dims": (idx_bytes(0x0C, (4,), b"\x00" * 12), r"truncated data: shape \(4,\) of int32 needs 16"),
    "trailing bytes": (idx_bytes(0x08, (2,), b"\x00" * 3), "trailing bytes after the data"),
}


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_files_raise_idx_error_naming_file_and_problem(tmp_path, case, suffix):
    content, problem = CORRUPT[case]
    path = tmp_path / f"{case.replace(' ', '-')}-idx{suffix}"
    path.write_bytes(gzip.compress(content) if suffix else content)
    with pytest.raises(IDXError, match=re.escape(str(path)) + ": " + problem):
        read_idx(path)


@pytest.mark.parametrize("cut", [5, 30, -4])
def test_truncated_gzip_stream_raises_idx_error(tmp_path, cut):
    path = tmp_path / "cut-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (100,), bytes(range(100))))[:cut])
    with pytest.raises(IDXError, match=re.escape(str(path)) + ": corrupt or truncated gzip data"):
        read_idx(path)


def test_idx_error_is_a_value_error():
    assert issubclass(IDXError, ValueError)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_write_rejects_dtypes_idx_cannot_hold(tmp_path):
    with pytest.raises(IDXError, match="cannot write dtype uint16"):
        write_idx(tmp_path / "x", np.zeros(3, np.uint16))


def test_docstring_example():
    assert doctest.testmod(funcnn.data.idx).failed == 0
