"""Data: the IDX reader, the Fashion-MNIST loader, batching and augmentation."""

from funcnn.data.augment import augment, random_crop, random_flip
from funcnn.data.batching import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    batch_indices,
    epoch_permutation,
    iterate_batches,
    scale_images,
)
from funcnn.data.fashion_mnist import DataNotFoundError, data_dir, find_files, load_fashion_mnist
from funcnn.data.idx import IDXError, read_idx, write_idx
from funcnn.data.npz import DataFileError, load_dataset, load_npz, load_test_split

__all__ = [
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "DataFileError",
    "DataNotFoundError",
    "IDXError",
    "augment",
    "batch_indices",
    "data_dir",
    "epoch_permutation",
    "find_files",
    "iterate_batches",
    "load_dataset",
    "load_fashion_mnist",
    "load_npz",
    "load_test_split",
    "random_crop",
    "random_flip",
    "read_idx",
    "scale_images",
    "write_idx",
]
