"""Your own data: a ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test``.

Images are ``(N, H, W)`` or ``(N, H, W, C)``, ``uint8`` (scaled by 1/255 in
training) or floating (used as they are); labels are integers ``0 ... K - 1``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from funcnn.data.fashion_mnist import FILE_NAMES, data_dir, find_files, load_fashion_mnist, load_split

KEYS = ("x_train", "y_train", "x_test", "y_test")
"""The arrays a data ``.npz`` holds."""


class DataFileError(ValueError):
    """A ``.npz`` data file is unreadable or its arrays are not images and labels; names the file."""


MAX_CLASSES = 100_000
"""The largest class count a data file may imply (its largest label + 1)."""


def load_npz(path: str | os.PathLike, splits: tuple[str, ...] = ("train", "test")) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_test, y_test)`` from a ``.npz`` file, checked (no pickles are loaded).

    Args:
      path: the file.
      splits: which splits to read (``("test",)`` reads only ``x_test, y_test``).

    Raises:
      FileNotFoundError: there is no such file.
      DataFileError: the file is unreadable, a key is missing, or an array has the
        wrong rank, dtype or length, non-finite pixels or labels out of range.
    """
    path = Path(path)
    keys = tuple(f"{kind}_{split}" for split in splits for kind in ("x", "y"))
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in KEYS if key not in data.files]
            if missing:
                raise DataFileError(f"{path}: missing arrays {missing}; a data file holds {list(KEYS)}")
            arrays = {key: data[key] for key in keys}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, TypeError, AttributeError) as error:
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


def load_test_split(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(x_test, y_test)`` only, from a ``.npz`` file or the Fashion-MNIST IDX files: evaluation
    reads no training images."""
    if path is not None and Path(path).suffix == ".npz":
        return load_npz(path, ("test",))
    return load_split(*find_files(data_dir(path), FILE_NAMES[2:]))


def load_dataset(
    path: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A ``.npz`` file (:func:`load_npz`), else a folder of Fashion-MNIST IDX files (the default)."""
    if path is not None and Path(path).suffix == ".npz":
        return load_npz(path)
    return load_fashion_mnist(path)
