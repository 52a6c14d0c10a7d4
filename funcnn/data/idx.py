"""The IDX file format (LeCun's MNIST format), raw or gzip-compressed.

An IDX file is a 4-byte magic number ``00 00 TT NN`` (``TT`` the dtype code,
``NN`` the number of dimensions), ``NN`` big-endian ``uint32`` dimension
sizes, then the data in C order, big-endian.

Examples:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x-idx2-ubyte.gz")
    >>> write_idx(path, np.arange(6, dtype=np.uint8).reshape(2, 3))
    >>> read_idx(path).shape
    (2, 3)
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX dtype codes and the (big-endian) numpy types they stand for."""

_GZIP_MAGIC = b"\x1f\x8b"


class IDXError(ValueError):
    """A truncated or corrupt IDX file; the message names the file and the problem."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file into a numpy array in native byte order.

    Gzip files are recognised by their magic bytes or a ``.gz`` suffix.

    Args:
      path: the file to read.

    Returns:
      The array, with the shape and dtype the header declares.

    Raises:
      IDXError: the file is not valid IDX (bad magic number, unknown dtype
        code, truncated header or data, trailing bytes, corrupt gzip stream).
      FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXError(f"{path}: truncated header: {len(data)} bytes, an IDX header needs at least 4")
    if data[0] != 0 or data[1] != 0:
        raise IDXError(f"{path}: bad magic number 0x{data[:4].hex()}: an IDX file starts with two zero bytes")
    code, ndim = data[2], data[3]
    if code not in DTYPES:
        known = ", ".join(f"0x{c:02X} {dt.name}" for c, dt in DTYPES.items())
        raise IDXError(f"{path}: unknown dtype code 0x{code:02X} (expected one of {known})")
    if ndim == 0:
        raise IDXError(f"{path}: the header declares 0 dimensions")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise IDXError(
            f"{path}: truncated header: {ndim} dimensions need {offset} header bytes, file has {len(data)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - offset
    if found != expected:
        problem = "truncated data" if found < expected else "trailing bytes after the data"
        raise IDXError(
            f"{path}: {problem}: shape {shape} of {dtype.name} needs {expected} data bytes, found {found}"
        )
    array = np.frombuffer(data, dtype, offset=offset).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    Args:
      path: the file to write.
      array: an array of one of the IDX dtypes (uint8, int8, int16, int32,
        float32, float64) with at least one dimension.

    Raises:
      IDXError: the dtype or the rank cannot be written as IDX.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in DTYPES.items()}
    if array.dtype.newbyteorder("=") not in codes or not 1 <= array.ndim <= 255:
        raise IDXError(f"{path}: cannot write dtype {array.dtype} with {array.ndim} dimensions as IDX")
    code = codes[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.astype(DTYPES[code]).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip."""
    raw = path.read_bytes()
    if not (raw[:2] == _GZIP_MAGIC or path.suffix == ".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise IDXError(f"{path}: corrupt or truncated gzip data ({error})") from None
