"""The Fashion-MNIST loader on small synthetic IDX files, and on the real files when installed."""

import re

import numpy as np
import pytest

from funcnn.data import DataNotFoundError, IDXError, load_fashion_mnist, write_idx
from funcnn.data.fashion_mnist import DEFAULT_DIR, FILE_NAMES, find_files


def write_dataset(folder, n_train=6, n_test=4, gz=(False, True, False, True)):
    """The four files with random content; ``gz`` picks which are gzip-compressed."""
    rng = np.random.default_rng(0)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )
    for name, array, compressed in zip(FILE_NAMES, arrays, gz, strict=True):
        write_idx(folder / (name + (".gz" if compressed else "")), array)
    return arrays


def test_loads_raw_and_gzip_files(tmp_path):
    expected = write_dataset(tmp_path)
    for got, want in zip(load_fashion_mnist(tmp_path), expected, strict=True):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)


def test_falls_back_to_the_environment_variable(tmp_path, monkeypatch):
    expected = write_dataset(tmp_path)
    monkeypatch.setenv("FUNCNN_DATA", str(tmp_path))
    np.testing.assert_array_equal(load_fashion_mnist()[3], expected[3])


def test_explicit_path_wins_over_the_environment(tmp_path, monkeypatch):
    write_dataset(tmp_path)
    monkeypatch.setenv("FUNCNN_DATA", str(tmp_path / "elsewhere"))
    assert len(load_fashion_mnist(tmp_path)[0]) == 6


def test_raw_file_is_preferred_over_gzip(tmp_path):
    write_dataset(tmp_path, gz=(True,) * 4)
    write_idx(tmp_path / FILE_NAMES[1], np.zeros(6, np.uint8))
    assert find_files(tmp_path)[1].name == FILE_NAMES[1]


def test_missing_files_say_how_to_install(tmp_path):
    write_dataset(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    message = (
        re.escape(f"Fashion-MNIST not found in {tmp_path}: missing t10k-images-idx3-ubyte[.gz]")
        + ".*apt-get install dataset-fashion-mnist.*--data DIR.*FUNCNN_DATA"
    )
    with pytest.raises(DataNotFoundError, match=message):
        load_fashion_mnist(tmp_path)
    assert issubclass(DataNotFoundError, FileNotFoundError)


def test_image_and_label_counts_must_match(tmp_path):
    write_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(
        IDXError, match="train-images-idx3-ubyte has 6 images but .*train-labels.* has 5 labels"
    ):
        load_fashion_mnist(tmp_path)


def test_images_must_be_28_by_28_uint8(tmp_path):
    write_dataset(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((6, 28, 27), np.uint8))
    with pytest.raises(IDXError, match=r"train-images-idx3-ubyte: expected uint8 images .* \(6, 28, 27\)"):
        load_fashion_mnist(tmp_path)


def test_labels_must_be_a_uint8_vector(tmp_path):
    write_dataset(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros((4, 2), np.uint8))
    with pytest.raises(
        IDXError,
        match=r"t10k-labels-idx1-ubyte.gz: expected uint8 labels of shape \(N,\), got uint8 \(4, 2\)",
    ):
        load_fashion_mnist(tmp_path)


def test_labels_must_be_in_range(tmp_path):
    write_dataset(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 10, 2], np.uint8))
    with pytest.raises(IDXError, match="t10k-labels-idx1-ubyte.gz: label 10 out of range 0-9"):
        load_fashion_mnist(tmp_path)


def test_a_corrupt_file_names_itself(tmp_path):
    write_dataset(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-6])
    with pytest.raises(IDXError, match=re.escape(str(path))):
        load_fashion_mnist(tmp_path)


@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_dataset():
    x_train, y_train, x_test, y_test = load_fashion_mnist(DEFAULT_DIR)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == y_train.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 1000))
    np.testing.assert_array_equal(np.bincount(y_train), np.full(10, 6000))
