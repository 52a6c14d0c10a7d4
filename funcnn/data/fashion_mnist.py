"""Fashion-MNIST from local IDX files; nothing is ever downloaded.

The Debian package ``dataset-fashion-mnist`` installs the four files under
``/usr/share/datasets/fashion-mnist/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from funcnn.data.idx import IDXError, read_idx

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where ``apt-get install dataset-fashion-mnist`` puts the files."""

ENV_VAR = "FUNCNN_DATA"
"""Environment variable naming the data folder when no path is given."""

FILE_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The four standard file names, each optionally with a ``.gz`` suffix."""

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
"""Fashion-MNIST's class names, by label."""


class DataNotFoundError(FileNotFoundError):
    """The Fashion-MNIST files are missing; the message says how to install them."""


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder to load from: ``path``, else ``$FUNCNN_DATA``, else ``DEFAULT_DIR``.

    Args:
      path: an explicit folder, or ``None``.

    Returns:
      The folder as a ``Path`` (not checked for existence).
    """
    if path is not None:
        return Path(path)
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


def find_files(folder: str | os.PathLike, names: tuple[str, ...] = FILE_NAMES) -> tuple[Path, ...]:
    """The paths of the IDX files ``names`` (by default all four) in ``folder``, raw preferred over ``.gz``.

    Args:
      folder: the folder to look in.
      names: the standard file names to find.

    Returns:
      Paths in the order of ``names``.

    Raises:
      DataNotFoundError: a file is missing; the message lists the missing
        names and how to install the data set.
    """
    folder = Path(folder)
    found, missing = [], []
    for name in names:
        candidates = [folder / name, folder / f"{name}.gz"]
        existing = [p for p in candidates if p.is_file()]
        if existing:
            found.append(existing[0])
        else:
            missing.append(f"{name}[.gz]")
    if missing:
        raise DataNotFoundError(
            f"Fashion-MNIST not found in {folder}: missing {', '.join(missing)}. "
            f"Install it with `sudo apt-get install dataset-fashion-mnist` (files go to {DEFAULT_DIR}), "
            f"or pass a folder holding the four IDX files (--data DIR) or set {ENV_VAR}."
        )
    return tuple(found)


def load_fashion_mnist(
    path: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load Fashion-MNIST from IDX files.

    Args:
      path: the folder holding the four files; ``None`` looks in
        ``$FUNCNN_DATA``, then in ``/usr/share/datasets/fashion-mnist/``.

    Returns:
      ``(x_train, y_train, x_test, y_test)``: images ``uint8`` of shape
      ``(N, 28, 28)``, labels ``uint8`` of shape ``(N,)`` with values 0-9.

    Raises:
      DataNotFoundError: a file is missing.
      IDXError: a file is corrupt, has the wrong shape or dtype, or images
        and labels disagree in number.
    """
    train_images, train_labels, test_images, test_labels = find_files(data_dir(path))
    x_train, y_train = load_split(train_images, train_labels)
    x_test, y_test = load_split(test_images, test_labels)
    return x_train, y_train, x_test, y_test


def load_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split (two IDX files), checked against each other."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise IDXError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IDXError(
            f"{labels_path}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise IDXError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise IDXError(f"{labels_path}: label {labels.max()} out of range 0-{NUM_CLASSES - 1}")
    return images, labels
