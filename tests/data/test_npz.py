"""Your own data as ``.npz``: loaded and checked, one clear error per problem."""

import numpy as np
import pytest

from funcnn.data import DataFileError, load_dataset, load_npz, load_test_split


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def _arrays(n=8, shape=(6, 6), dtype=np.uint8, classes=3):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, *shape)).astype(dtype)
    return {"x_train": images, "y_train": rng.integers(0, classes, n), "x_test": images[:4], "y_test": np.arange(4) % classes}


@pytest.mark.parametrize("shape, dtype", [((6, 6), np.uint8), ((5, 7, 3), np.float32)])
def test_round_trip(tmp_path, shape, dtype):
    arrays = _arrays(shape=shape, dtype=dtype)
    loaded = load_dataset(_write(tmp_path / "d.npz", **arrays))
    for got, key in zip(loaded, ("x_train", "y_train", "x_test", "y_test"), strict=True):
        np.testing.assert_array_equal(got, arrays[key])


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: a.pop("y_test"), r"missing arrays \['y_test'\]"),
        (lambda a: a.update(x_train=a["x_train"][:, 0]), r"x_train must be uint8 or floating images of shape \(N, H, W\) or \(N, H, W, C\), got uint8 \(8, 6\)"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.int32)), r"x_train must be uint8 or floating images .* got int32"),
        (lambda a: a.update(y_train=a["y_train"][:5]), r"y_train must hold one integer label per image \(8\), got int64 \(5,\)"),
        (lambda a: a.update(y_test=np.zeros(4, np.float32)), r"y_test must hold one integer label per image \(4\), got float32"),
        (lambda a: a.update(y_train=a["y_train"] - 5), r"y_train labels must lie in \[0, 100000\), got -5 to -3"),
        (lambda a: a.update(y_test=np.array([0, 1, 2, 2**40])), r"y_test labels must lie in \[0, 100000\), got 0 to 1099511627776"),
        (lambda a: a.update(x_test=np.full((4, 6, 6), np.nan, np.float32)), r"x_test holds NaN or infinite pixels"),
        (lambda a: a.update(x_test=np.zeros((4, 7, 6), np.uint8)), r"x_train images \(6, 6\) and x_test images \(7, 6\) differ in shape"),
    ],
)
def test_bad_arrays_are_named(tmp_path, change, match):
    arrays = _arrays()
    change(arrays)
    path = _write(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataFileError, match=rf"d\.npz: {match}"):
        load_npz(path)


def test_not_an_npz_file_and_no_pickles(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataFileError, match=r"bad\.npz: not a readable \.npz file"):
        load_npz(tmp_path / "bad.npz")
    arrays = _arrays()
    arrays["x_train"] = np.array([object()] * 8, dtype=object)
    with pytest.raises(DataFileError, match=r"d\.npz: not a readable \.npz file"):
        load_npz(_write(tmp_path / "d.npz", **arrays))
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "missing.npz")


def test_empty_or_renamed_files_are_unreadable(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "array.npy").rename(tmp_path / "renamed.npz")
    for name in ("empty.npz", "renamed.npz"):
        with pytest.raises(DataFileError, match=rf"{name}: not a readable \.npz file"):
            load_npz(tmp_path / name)


def test_the_test_split_alone(tmp_path):
    arrays = _arrays()
    x_test, y_test = load_test_split(_write(tmp_path / "d.npz", **arrays))
    np.testing.assert_array_equal(x_test, arrays["x_test"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])
