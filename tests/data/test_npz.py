"""Your own data as ``.npz``: loaded and checked, one clear error per problem."""

import io
import itertools
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from funcnn.data import DataFileError, load_dataset, load_npz, load_test_split, npz


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def _arrays(n=8, shape=(6, 6), dtype=np.uint8, classes=3):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, *shape)).astype(dtype)
    return {
        "x_train": images,
        "y_train": rng.integers(0, classes, n),
        "x_test": images[:4],
        "y_test": np.arange(4) % classes,
    }


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
        (
            lambda a: a.update(x_train=a["x_train"][:, 0]),
            r"x_train must be uint8 or floating images of shape \(N, H, W\) or \(N, H, W, C\), got uint8 \(8, 6\)",
        ),
        (
            lambda a: a.update(x_train=a["x_train"].astype(np.int32)),
            r"x_train must be uint8 or floating images .* got int32",
        ),
        (
            lambda a: a.update(y_train=a["y_train"][:5]),
            r"y_train must hold one integer label per image \(8\), got int64 \(5,\)",
        ),
        (
            lambda a: a.update(y_test=np.zeros(4, np.float32)),
            r"y_test must hold one integer label per image \(4\), got float32",
        ),
        (
            lambda a: a.update(y_train=a["y_train"] - 5),
            r"y_train labels must lie in \[0, 100000\), got -5 to -3",
        ),
        (
            lambda a: a.update(y_test=np.array([0, 1, 2, 2**40])),
            r"y_test labels must lie in \[0, 100000\), got 0 to 1099511627776",
        ),
        (
            lambda a: a.update(x_test=np.full((4, 6, 6), np.nan, np.float32)),
            r"x_test holds NaN or infinite pixels",
        ),
        (
            lambda a: a.update(x_test=np.zeros((4, 7, 6), np.uint8)),
            r"x_train images \(6, 6\) and x_test images \(7, 6\) differ in shape",
        ),
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


def test_a_file_with_only_the_test_split_serves_evaluation_but_not_training(tmp_path):
    arrays = _arrays()
    path = tmp_path / "test_only.NPZ"
    with path.open("wb") as file:  # np.savez would append ".npz" to the name
        np.savez(file, x_test=arrays["x_test"], y_test=arrays["y_test"])
    x_test, y_test = load_test_split(path)
    np.testing.assert_array_equal(x_test, arrays["x_test"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])
    with pytest.raises(DataFileError, match=r"test_only\.NPZ: missing arrays \['x_train', 'y_train'\]"):
        load_dataset(path)


@pytest.mark.parametrize("splits", [(), ("val",), ("test", "test"), "train", ("train", "eval")])
def test_load_npz_refuses_splits_it_does_not_know(tmp_path, splits):
    path = _write(tmp_path / "d.npz", **_arrays())
    with pytest.raises(ValueError, match=r'^load_npz: argument `splits` must be "train" and/or "test", each once, got '):
        load_npz(path, splits)


# Hostile files: sizes are checked from the .npy headers before anything is inflated.


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npy_header(shape, dtype=np.uint8):
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _write_zip(path, members, forged_sizes=()):
    """``members``: name -> bytes or an iterable of byte chunks; ``forged_sizes``: name -> the
    ``file_size`` its zip directory entry claims instead of the real one."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            with zf.open(name, "w") as handle:
                for chunk in [data] if isinstance(data, bytes) else data:
                    handle.write(chunk)
        for name, size in dict(forged_sizes).items():
            zf.getinfo(name).file_size = size  # the central directory is written on close
    return path


def _members(**replace):
    members = {f"{key}.npy": _npy(value) for key, value in _arrays().items()}
    members.update({f"{key}.npy": value for key, value in replace.items()})
    return members


def _refused_cost(path, match):
    """Refuse ``path`` with ``match``: the peak bytes Python and numpy allocated and the seconds taken."""
    start = time.perf_counter()
    tracemalloc.start()
    try:
        with pytest.raises(DataFileError, match=match):
            load_npz(path)
        return tracemalloc.get_traced_memory()[1], time.perf_counter() - start
    finally:
        tracemalloc.stop()


def test_a_huge_declared_shape_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.delenv("FUNCNN_MAX_DATA_BYTES", raising=False)
    path = _write_zip(tmp_path / "d.npz", _members(x_train=_npy_header((10**12, 28, 28))))
    match = (
        r"d\.npz: x_train declares shape \(1000000000000, 28, 28\) uint8 \(713\.0 TiB\); the arrays to "
        r"read total 713\.0 TiB, over the [\d.]+ [KMGT]?i?B bound \(the memory available\); "
        r"pass max_bytes= or set \$FUNCNN_MAX_DATA_BYTES \(bytes\) to raise it"
    )
    peak, seconds = _refused_cost(path, match)
    assert peak < 1 << 20 and seconds < 0.5
    # With no bound known, the zip directory still gives the header away: nothing is allocated.
    monkeypatch.setattr(npz, "_memory_available", lambda: None)
    match = r"d\.npz: x_train\.npy inflates to 128 bytes, but its header declares 784000000000128 \(128 header \+ 784000000000000 data\): refused unread"
    peak, seconds = _refused_cost(path, match)
    assert peak < 1 << 20 and seconds < 0.5


@pytest.mark.parametrize(
    "forged, match",
    [
        (
            False,
            r"x_train\.npy inflates to 50000128 bytes, but its header declares 416 \(128 header \+ 288 data\): refused unread",
        ),
        (True, r"not a readable \.npz file \(BadZipFile: Bad CRC-32 for file 'x_train\.npy'\)"),
    ],
    ids=["honest directory", "forged directory"],
)
def test_a_zip_bomb_is_refused_without_inflating_it(tmp_path, forged, match):
    """A header declaring 8 6x6 images, followed by 50 MB of zeros (a 50 kB file): refused from
    the directory's size or, with that size forged to match the header, by zipfile's CRC check
    after just the declared 288 bytes."""
    bomb = itertools.chain([_npy_header((8, 6, 6))], itertools.repeat(bytes(1_000_000), 50))
    path = _write_zip(tmp_path / "d.npz", _members(x_train=bomb), {"x_train.npy": 416} if forged else {})
    assert path.stat().st_size < 200_000
    peak, seconds = _refused_cost(path, rf"d\.npz: {match}")
    assert peak < 1 << 20 and seconds < 0.5


@pytest.mark.parametrize(
    "delta, match",
    [
        (-36, r"not a readable \.npz file \(BadZipFile: Bad CRC-32 for file 'x_train\.npy'\)"),
        (
            36,
            r"x_train\.npy inflates to 452 bytes, but its header declares 416 \(128 header \+ 288 data\): refused unread",
        ),
    ],
    ids=["smaller", "larger"],
)
def test_a_forged_directory_size_is_refused(tmp_path, delta, match):
    """Smaller than the real size: zipfile stops there and the CRC fails; larger: the header says less."""
    members = _members()
    path = _write_zip(tmp_path / "d.npz", members, {"x_train.npy": len(members["x_train.npy"]) + delta})
    with pytest.raises(DataFileError, match=rf"d\.npz: {match}"):
        load_npz(path)


def test_a_bound_from_max_bytes_or_the_environment(tmp_path, monkeypatch):
    """The arrays total 288 + 64 + 144 + 32 = 528 bytes; the test split alone 176."""
    monkeypatch.delenv("FUNCNN_MAX_DATA_BYTES", raising=False)
    path = _write(tmp_path / "d.npz", **_arrays())
    over = r"d\.npz: {key} declares shape {shape} (uint8|int64) \({size} B\); the arrays to read total {total} B, over the {bound} B bound \({source}\); pass max_bytes= or set \$FUNCNN_MAX_DATA_BYTES \(bytes\) to raise it"
    with pytest.raises(
        DataFileError,
        match=over.format(
            key="x_train", shape=r"\(8, 6, 6\)", size=288, total=528, bound=527, source="max_bytes"
        ),
    ):
        load_npz(path, max_bytes=527)
    assert len(load_dataset(path, max_bytes=528)) == 4
    with pytest.raises(
        DataFileError,
        match=over.format(
            key="x_test", shape=r"\(4, 6, 6\)", size=144, total=176, bound=175, source="max_bytes"
        ),
    ):
        load_test_split(path, max_bytes=175)
    assert len(load_test_split(path, max_bytes=176)) == 2
    monkeypatch.setenv("FUNCNN_MAX_DATA_BYTES", "527")
    with pytest.raises(
        DataFileError,
        match=over.format(
            key="x_train",
            shape=r"\(8, 6, 6\)",
            size=288,
            total=528,
            bound=527,
            source=r"\$FUNCNN_MAX_DATA_BYTES",
        ),
    ):
        load_dataset(path)
    assert len(load_npz(path, max_bytes=528)) == 4  # the keyword wins
    monkeypatch.setenv("FUNCNN_MAX_DATA_BYTES", "528")
    assert len(load_npz(path)) == 4
    monkeypatch.setenv("FUNCNN_MAX_DATA_BYTES", "lots")
    with pytest.raises(
        DataFileError, match=r"d\.npz: \$FUNCNN_MAX_DATA_BYTES='lots' must be a whole number of bytes"
    ):
        load_npz(path)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, ">f8"])
def test_savez_files_load_exactly_as_np_load(tmp_path, save, order, dtype):
    arrays = _arrays(shape=(5, 7, 3), dtype=np.float32)
    arrays["x_train"] = np.asarray(arrays["x_train"], dtype=dtype, order=order)
    arrays["x_test"] = np.asarray(arrays["x_test"], dtype=dtype, order=order)
    save(tmp_path / "d.npz", **arrays)
    loaded = load_npz(tmp_path / "d.npz")
    with np.load(tmp_path / "d.npz") as reference:
        for got, key in zip(loaded, npz.KEYS, strict=True):
            want = reference[key]
            assert (
                got.dtype,
                got.shape,
                got.flags.f_contiguous,
                got.flags.c_contiguous,
                got.flags.writeable,
            ) == (
                want.dtype,
                want.shape,
                want.flags.f_contiguous,
                want.flags.c_contiguous,
                want.flags.writeable,
            )
            assert got.tobytes(order="A") == want.tobytes(order="A") == arrays[key].tobytes(order="A")
