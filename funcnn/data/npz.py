"""Your own data: a ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test``.

Images are ``(N, H, W)`` or ``(N, H, W, C)``, ``uint8`` (scaled by 1/255 in
training) or floating (used as they are); labels are integers ``0 ... K - 1``.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funcnn.data.fashion_mnist import FILE_NAMES, data_dir, find_files, load_fashion_mnist, load_split

KEYS = ("x_train", "y_train", "x_test", "y_test")
"""The arrays a data ``.npz`` holds."""


class DataFileError(ValueError):
    """A ``.npz`` data file is unreadable or its arrays are not images and labels; names the file."""


MAX_CLASSES = 100_000
"""The largest class count a data file may imply (its largest label + 1)."""


MAX_BYTES_VAR = "FUNCNN_MAX_DATA_BYTES"
"""Environment variable: the most bytes [`load_npz`][funcnn.data.npz.load_npz] inflates (replaces the
memory-available default)."""

_UNREADABLE = (
    zipfile.BadZipFile,
    ValueError,
    OSError,
    EOFError,
    TypeError,
    AttributeError,
    RuntimeError,
    MemoryError,
)
"""What a damaged or hostile zip raises while it is read (``RuntimeError``: encrypted or an unknown
compression; ``MemoryError``: no bound known and too little memory)."""

_CHUNK = 1 << 20
"""Data is inflated this many bytes at a time, straight into the array that holds it."""


@dataclass(frozen=True)
class _Member:
    """A ``.npy`` member of the zip, as its header declares it (nothing inflated past the header)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    header_bytes: int
    """Magic string, header length field and header: the data starts this many bytes in."""

    @property
    def data_bytes(self) -> int:
        """``prod(shape) * itemsize``, in Python ints: a forged shape cannot overflow it."""
        return math.prod(self.shape) * self.dtype.itemsize


def _human(n: int) -> str:
    """``n`` bytes as ``"47.7 MiB"``: the power of 1024 is ``floor(log2(n)) // 10``, at most PiB."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    power = min(max(n.bit_length() - 1, 0) // 10, len(units) - 1)
    return f"{n} B" if power == 0 else f"{n / 1024**power:.1f} {units[power]}"


def _memory_available() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``, else ``sysconf``), ``None`` if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def _bound(path: Path, max_bytes: int | None) -> tuple[int | None, str]:
    """The most bytes to inflate and where that bound comes from: ``max_bytes``, else
    ``$FUNCNN_MAX_DATA_BYTES``, else the memory available (``None``: no bound)."""
    if max_bytes is not None:
        return max_bytes, "max_bytes"
    raw = os.environ.get(MAX_BYTES_VAR)
    if raw is not None:
        try:
            return int(raw), f"${MAX_BYTES_VAR}"
        except ValueError:
            raise DataFileError(f"{path}: ${MAX_BYTES_VAR}={raw!r} must be a whole number of bytes") from None
    return _memory_available(), "the memory available"


def _header(zf: zipfile.ZipFile, name: str) -> _Member:
    """The shape, dtype and order ``name`` declares, reading only its ``.npy`` header (at most
    about 10 kB: numpy's header size cap); object dtypes are refused (they would be pickles)."""
    with zf.open(name) as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f"{name}: unsupported .npy format version {version}")
        header_bytes = handle.tell()
    if dtype.hasobject or dtype.itemsize == 0:
        raise ValueError(f"{name}: dtype {dtype} cannot be loaded without pickles")
    if any(n < 0 for n in shape):
        raise ValueError(f"{name}: negative shape {shape}")
    return _Member(name, shape, dtype, fortran_order, header_bytes)


def _read_member(zf: zipfile.ZipFile, member: _Member, path: Path) -> np.ndarray:
    """The array ``member`` declares, never inflating more than its header declares (+ zipfile's
    read-ahead of a few kB, which stops at ``file_size``).

    The zip directory's ``file_size`` must be ``header_bytes + data_bytes``, so a member that
    inflates to more (a zip bomb) is refused unread. The data then streams in ``_CHUNK``-byte reads
    into a preallocated array; ``zipfile`` stops at ``file_size`` and checks the CRC there, so a
    directory forged to a smaller size fails that check. A short read or a byte past the declared
    size is refused too. The array comes back as ``np.load`` gives it: same dtype, C or Fortran order.
    """
    size = member.header_bytes + member.data_bytes
    file_size = zf.getinfo(member.name).file_size
    if file_size != size:
        raise DataFileError(
            f"{path}: {member.name} inflates to {file_size} bytes, but its header declares "
            f"{size} ({member.header_bytes} header + {member.data_bytes} data): refused unread"
        )
    shape = member.shape[::-1] if member.fortran_order else member.shape
    array = np.empty(shape, member.dtype)
    data = array.reshape(-1).view(np.uint8)
    with zf.open(member.name) as handle:
        handle.read(member.header_bytes)
        done = 0
        while done < member.data_bytes:
            chunk = handle.read(min(_CHUNK, member.data_bytes - done))
            if not chunk:
                raise DataFileError(
                    f"{path}: {member.name} ends after {done} of its {member.data_bytes} data bytes"
                )
            data[done : done + len(chunk)] = np.frombuffer(chunk, np.uint8)
            done += len(chunk)
        if handle.read(1):
            raise DataFileError(
                f"{path}: {member.name} holds more than the {member.data_bytes} data bytes it declares"
            )
    return array.T if member.fortran_order else array


def load_npz(
    path: str | os.PathLike,
    splits: tuple[str, ...] = ("train", "test"),
    *,
    max_bytes: int | None = None,
) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_test, y_test)`` from a ``.npz`` file, checked (no pickles are loaded).

    Every array's ``.npy`` header is read first: its declared size, ``prod(shape) * itemsize``, is
    checked against a bound before anything is inflated, and no member inflates past its declared
    size (see ``_read_member``), so a hostile file cannot exhaust memory.

    Args:
      path: the file.
      splits: which splits to read, ``"train"`` and/or ``"test"``, each at most once, in the order
        returned (``("test",)`` reads only ``x_test, y_test``, and the file need hold only those).
      max_bytes: the most bytes the arrays read may declare in all; default
        ``$FUNCNN_MAX_DATA_BYTES``, else the memory available (Linux ``MemAvailable``).

    Returns:
      ``(x_<split>, y_<split>)`` for each of ``splits`` in turn, by default
      ``(x_train, y_train, x_test, y_test)``, as stored: images ``uint8`` or floating, of shape
      ``(N, H, W)`` or ``(N, H, W, C)``; labels 1-D integers in ``[0, MAX_CLASSES)``, one per image.

    Raises:
      ValueError: ``splits`` is empty or names anything but ``"train"`` and ``"test"``, or one twice.
      FileNotFoundError: there is no such file.
      DataFileError: the file is unreadable or over the bound (or ``$FUNCNN_MAX_DATA_BYTES`` is not
        a whole number), an array of the splits read is missing, a member inflates past its
        declared size, an array has the wrong rank, dtype or length, non-finite pixels or labels
        out of range, or (both splits read) train and test images differ in shape.
    """
    known = {"train", "test"}
    if isinstance(splits, str) or not splits or len(set(splits)) != len(splits) or set(splits) - known:
        raise ValueError(
            f'load_npz: argument `splits` must be "train" and/or "test", each once, got {splits!r}'
        )
    path = Path(path)
    keys = tuple(f"{kind}_{split}" for split in splits for kind in ("x", "y"))
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            members = {key: f"{key}.npy" if f"{key}.npy" in names else key for key in KEYS}
            missing = [key for key in keys if members[key] not in names]
            if missing:
                raise DataFileError(f"{path}: missing arrays {missing}; a data file holds {list(KEYS)}")
            headers = {key: _header(zf, members[key]) for key in keys}
            total = sum(member.data_bytes for member in headers.values())
            bound, source = _bound(path, max_bytes)
            if bound is not None and total > bound:
                key, big = max(headers.items(), key=lambda item: item[1].data_bytes)
                raise DataFileError(
                    f"{path}: {key} declares shape {big.shape} {big.dtype} ({_human(big.data_bytes)}); "
                    f"the arrays to read total {_human(total)}, over the {_human(bound)} bound "
                    f"({source}); pass max_bytes= or set ${MAX_BYTES_VAR} (bytes) to raise it"
                )
            arrays = {key: _read_member(zf, member, path) for key, member in headers.items()}
    except _UNREADABLE as error:
        if isinstance(error, (DataFileError, FileNotFoundError)):
            raise
        raise DataFileError(f"{path}: not a readable .npz file ({type(error).__name__}: {error})") from None
    for split in splits:
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        floating = np.issubdtype(images.dtype, np.floating)
        if images.ndim not in (3, 4) or not (images.dtype == np.uint8 or floating):
            raise DataFileError(
                f"{path}: x_{split} must be uint8 or floating images of shape (N, H, W) or (N, H, W, C), "
                f"got {images.dtype} {images.shape}"
            )
        if floating and not np.isfinite(images).all():
            raise DataFileError(f"{path}: x_{split} holds NaN or infinite pixels")
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(labels) != len(images):
            raise DataFileError(
                f"{path}: y_{split} must hold one integer label per image ({len(images)}), "
                f"got {labels.dtype} {labels.shape}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= MAX_CLASSES):
            raise DataFileError(
                f"{path}: y_{split} labels must lie in [0, {MAX_CLASSES}), "
                f"got {labels.min()} to {labels.max()}"
            )
    if len(splits) == 2 and arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataFileError(
            f"{path}: x_train images {arrays['x_train'].shape[1:]} and x_test images "
            f"{arrays['x_test'].shape[1:]} differ in shape"
        )
    return tuple(arrays[key] for key in keys)


def load_test_split(
    path: str | os.PathLike | None = None, *, max_bytes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(x_test, y_test)`` only, from a ``.npz`` file or the Fashion-MNIST IDX files: evaluation
    reads no training images.

    Args:
      path: a file whose name ends in ``.npz`` (any case), else a folder of the Fashion-MNIST IDX
        files; ``None`` looks in ``$FUNCNN_DATA``, then in ``/usr/share/datasets/fashion-mnist/``.
      max_bytes: the bound of [`load_npz`][funcnn.data.npz.load_npz] (``.npz`` files only).

    Returns:
      ``(x_test, y_test)``: as [`load_npz`][funcnn.data.npz.load_npz] gives them, or for
      Fashion-MNIST ``uint8`` images ``(10000, 28, 28)`` and ``uint8`` labels 0-9.

    Raises:
      FileNotFoundError: the ``.npz`` file does not exist.
      DataFileError: the ``.npz`` file is unreadable or invalid (see
        [`load_npz`][funcnn.data.npz.load_npz]).
      DataNotFoundError: the folder lacks a test IDX file.
      IDXError: an IDX file is corrupt, has the wrong shape or dtype, or images and labels
        disagree in number.
    """
    if path is not None and Path(path).suffix.lower() == ".npz":
        return load_npz(path, ("test",), max_bytes=max_bytes)
    return load_split(*find_files(data_dir(path), FILE_NAMES[2:]))


def load_dataset(
    path: str | os.PathLike | None = None, *, max_bytes: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A ``.npz`` file ([`load_npz`][funcnn.data.npz.load_npz]), else a folder of Fashion-MNIST IDX files (the
    default).

    Args:
      path: a file whose name ends in ``.npz`` (any case), else a folder of the Fashion-MNIST IDX
        files; ``None`` looks in ``$FUNCNN_DATA``, then in ``/usr/share/datasets/fashion-mnist/``.
      max_bytes: the bound of [`load_npz`][funcnn.data.npz.load_npz] (``.npz`` files only).

    Returns:
      ``(x_train, y_train, x_test, y_test)``, as [`load_npz`][funcnn.data.npz.load_npz] or
      [`load_fashion_mnist`][funcnn.data.load_fashion_mnist] gives them.

    Raises:
      FileNotFoundError: the ``.npz`` file does not exist.
      DataFileError: the ``.npz`` file is unreadable or invalid (see
        [`load_npz`][funcnn.data.npz.load_npz]).
      DataNotFoundError: the folder lacks one of the four IDX files.
      IDXError: an IDX file is corrupt, has the wrong shape or dtype, or images and labels
        disagree in number.
    """
    if path is not None and Path(path).suffix.lower() == ".npz":
        return load_npz(path, max_bytes=max_bytes)
    return load_fashion_mnist(path)
