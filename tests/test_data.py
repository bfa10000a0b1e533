"""Datasets: the packaged MNIST, the IDX and npz loaders, and ``$FFSIM_DATA_DIR``."""

from __future__ import annotations

import gzip
import hashlib
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from ffsim.data import (
    DATA_DIR_ENV,
    Dataset,
    DatasetError,
    load_dataset,
    load_idx,
    load_idx_folder,
    load_mnist,
    load_npz,
)

MNIST_SHA256 = "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
# the official t10k label counts (digits 6..9: 958, 1028, 974, 1009; they sum to 10000)
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
               np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


@pytest.fixture(autouse=True)
def _no_data_dir(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(DATA_DIR_ENV, raising=False)
        return load_mnist()


# --------------------------------------------------------------------------------------------------
# helpers


def idx_bytes(arr: np.ndarray) -> bytes:
    """A valid IDX file for ``arr`` (magic 00 00 TYPE NDIM, big-endian uint32 dims, big-endian data)."""
    big = arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.itemsize > 1 else arr
    code = _TYPE_CODES[np.dtype(big.dtype)]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + np.ascontiguousarray(big).tobytes()


def write_idx(path: Path, arr: np.ndarray) -> Path:
    data = idx_bytes(arr)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def tiny_arrays(seed: int = 0, n_train: int = 12, n_test: int = 5, side: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def write_idx_folder(folder: Path, arrays: dict[str, np.ndarray], gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_FILES.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key])
    return folder


def assert_same(ds: Dataset, arrays: dict[str, np.ndarray]) -> None:
    for key, ref in arrays.items():
        got = getattr(ds, key)
        assert got.shape == ref.shape, key
        assert got.dtype == ref.dtype, key
        np.testing.assert_array_equal(got, ref, err_msg=key)


# --------------------------------------------------------------------------------------------------
# packaged MNIST


def test_mnist_shapes_and_dtypes(mnist):
    assert mnist.name == "mnist"
    assert mnist.num_classes == 10
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28) and mnist.x_test.dtype == np.uint8
    assert mnist.y_train.shape == (60000,) and mnist.y_train.dtype == np.uint8
    assert mnist.y_test.shape == (10000,) and mnist.y_test.dtype == np.uint8
    assert mnist.x_val is None and mnist.y_val is None
    for y in (mnist.y_train, mnist.y_test):
        assert y.min() == 0 and y.max() == 9


def test_mnist_class_counts_are_the_official_ones(mnist):
    assert sum(TRAIN_COUNTS) == 60000 and sum(TEST_COUNTS) == 10000
    assert np.bincount(mnist.y_train, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.y_test, minlength=10).tolist() == TEST_COUNTS


def test_mnist_sha256(mnist):
    assert mnist.sha256 == MNIST_SHA256
    ref = resources.files("ffsim.data") / "mnist.npz"
    with resources.as_file(ref) as path:
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == MNIST_SHA256


def test_load_dataset_mnist_is_load_mnist(mnist):
    ds = load_dataset("mnist")
    assert ds.name == "mnist" and ds.sha256 == MNIST_SHA256
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(ds, key), getattr(mnist, key))


def test_mnist_is_not_blank(mnist):
    # real digits: the pixels use the full range and the mean image is not constant
    assert mnist.x_train.max() == 255 and mnist.x_train.min() == 0
    assert 20 < mnist.x_train[:1000].mean() < 50  # MNIST's mean intensity is about 33
    assert not np.array_equal(mnist.x_train[0], mnist.x_train[1])


def test_flat_is_float32_in_unit_interval(mnist):
    f = mnist.flat(mnist.x_test)
    assert f.shape == (10000, 784) and f.dtype == np.float32
    assert f.min() == 0.0 and f.max() == 1.0
    np.testing.assert_array_equal(f[7], mnist.x_test[7].reshape(-1).astype(np.float32) / np.float32(255))
    ft = mnist.flat(mnist.x_train[:100])
    assert ft.shape == (100, 784) and ft.dtype == np.float32


def test_flat_float_input_is_kept():
    ds = Dataset("f", np.zeros((2, 3, 3)), np.zeros(2, np.int64), np.zeros((1, 3, 3)), np.zeros(1, np.int64))
    x = np.linspace(0, 1, 18).reshape(2, 3, 3)
    f = ds.flat(x)
    assert f.dtype == np.float32 and f.shape == (2, 9)
    np.testing.assert_allclose(f, x.reshape(2, 9), rtol=1e-7)


def test_split_validation_takes_the_last_training_cases(mnist):
    ds = mnist.split_validation(10000)
    assert len(ds.x_train) == len(ds.y_train) == 50000
    assert len(ds.x_val) == len(ds.y_val) == 10000
    np.testing.assert_array_equal(ds.x_train, mnist.x_train[:50000])
    np.testing.assert_array_equal(ds.y_train, mnist.y_train[:50000])
    np.testing.assert_array_equal(ds.x_val, mnist.x_train[50000:])
    np.testing.assert_array_equal(ds.y_val, mnist.y_train[50000:])
    np.testing.assert_array_equal(ds.x_test, mnist.x_test)
    np.testing.assert_array_equal(ds.y_test, mnist.y_test)
    assert ds.name == "mnist" and ds.sha256 == MNIST_SHA256 and ds.num_classes == 10
    assert len(mnist.y_train) == 60000  # the original is untouched


@pytest.mark.parametrize("n_val", [0, 60000, -1, 70000])
def test_split_validation_bad_size(mnist, n_val):
    with pytest.raises(DatasetError) as ei:
        mnist.split_validation(n_val)
    assert str(n_val) in str(ei.value)
    assert "validation" in str(ei.value)


# --------------------------------------------------------------------------------------------------
# IDX: valid files


@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_round_trip(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 7
    path = write_idx(tmp_path / ("img-idx3-ubyte" + (".gz" if gz else "")), arr)
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03"  # the header of a ubyte 3-d IDX file
    assert raw[4:16] == b"\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04"
    got = load_idx(path)
    assert got.dtype == np.uint8 and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, arr)
    got[0, 0, 0] = 99  # a writable copy, not a view on a read-only buffer
    assert got[0, 0, 0] == 99


@pytest.mark.parametrize("gz", [False, True])
def test_idx_labels_round_trip(tmp_path, gz):
    arr = np.array([0, 9, 3, 3, 7], dtype=np.uint8)
    path = write_idx(tmp_path / ("lab-idx1-ubyte" + (".gz" if gz else "")), arr)
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    assert raw[:8] == b"\x00\x00\x08\x01\x00\x00\x00\x05"
    got = load_idx(path)
    assert got.dtype == np.uint8 and got.shape == (5,)
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("dtype", [">i2", ">i4", ">f4", ">f8", "i1"])
def test_idx_other_types_are_big_endian_and_returned_native(tmp_path, dtype):
    arr = (np.arange(6).reshape(2, 3) - 2).astype(dtype) * 3
    path = write_idx(tmp_path / "x.idx", arr)
    got = load_idx(path)
    assert got.shape == (2, 3)
    assert got.dtype.isnative
    assert got.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trip(tmp_path, gz):
    arrays = tiny_arrays()
    folder = write_idx_folder(tmp_path / "digits", arrays, gz=gz)
    ds = load_idx_folder(folder)
    assert_same(ds, arrays)
    assert ds.source == str(folder)
    ds2 = load_dataset(folder)
    assert_same(ds2, arrays)
    assert ds2.name == "digits"
    ds3 = load_dataset(str(folder))
    assert_same(ds3, arrays)


def test_idx_folder_accepts_dotted_names_and_mixed_compression(tmp_path):
    arrays = tiny_arrays(seed=3)
    write_idx(tmp_path / "train-images.idx3-ubyte", arrays["x_train"])
    write_idx(tmp_path / "train-labels.idx1-ubyte.gz", arrays["y_train"])
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", arrays["x_test"])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", arrays["y_test"])
    assert_same(load_idx_folder(tmp_path), arrays)


# --------------------------------------------------------------------------------------------------
# IDX: malformed files, one test per problem


def _err(fn, *args) -> str:
    with pytest.raises(DatasetError) as ei:
        fn(*args)
    return str(ei.value)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_wrong_magic(tmp_path, gz):
    good = idx_bytes(np.zeros((2, 2, 2), np.uint8))
    bad = bytes([0x08, 0x03, 0x00, 0x00]) + good[4:]  # magic written little-endian
    path = tmp_path / ("bad-magic" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(bad) if gz else bad)
    msg = _err(load_idx, path)
    assert str(path) in msg
    assert "magic" in msg.lower()


@pytest.mark.parametrize("magic", [b"\x00\x00\x07\x03", b"\x00\x00\x08\x00", b"\x00\x00\x08\x09", b"\x01\x00\x08\x03"])
def test_idx_wrong_magic_variants(tmp_path, magic):
    path = tmp_path / "m"
    path.write_bytes(magic + b"\x00\x00\x00\x01" * 3 + b"\x00")
    msg = _err(load_idx, path)
    assert str(path) in msg and "magic" in msg.lower()


def test_idx_truncated_header(tmp_path):
    path = tmp_path / "short-header-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + b"\x00\x00\x00\x02" + b"\x00\x00")  # 3 dims announced, 1.5 given
    msg = _err(load_idx, path)
    assert str(path) in msg
    assert "truncated" in msg and "header" in msg


def test_idx_shorter_than_magic(tmp_path):
    path = tmp_path / "tiny"
    path.write_bytes(b"\x00\x00")
    msg = _err(load_idx, path)
    assert str(path) in msg and "truncated" in msg


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_data(tmp_path, gz):
    data = idx_bytes(np.ones((3, 4, 4), np.uint8))[:-5]
    path = tmp_path / ("trunc" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    msg = _err(load_idx, path)
    assert str(path) in msg
    assert "truncated" in msg
    assert "(3, 4, 4)" in msg  # the header's shape


def test_idx_trailing_bytes(tmp_path):
    path = tmp_path / "trailing"
    path.write_bytes(idx_bytes(np.ones((3, 4, 4), np.uint8)) + b"\x00" * 5)
    msg = _err(load_idx, path)
    assert str(path) in msg
    assert "5 bytes after" in msg


def test_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "corrupt.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.ones((3, 4, 4), np.uint8)))[:20])
    msg = _err(load_idx, path)
    assert str(path) in msg and "cannot be read" in msg


def test_idx_missing_file(tmp_path):
    path = tmp_path / "nope-idx3-ubyte"
    msg = _err(load_idx, path)
    assert str(path) in msg and "no such file" in msg


def test_idx_folder_images_labels_count_mismatch(tmp_path):
    arrays = tiny_arrays()
    arrays["y_train"] = arrays["y_train"][:-2]  # 12 images, 10 labels
    folder = write_idx_folder(tmp_path / "mismatch", arrays)
    msg = _err(load_idx_folder, folder)
    assert "12" in msg and "10" in msg
    # the message names the file at fault (the module promises "naming the file"), not only its folder
    assert IDX_FILES["y_train"] in msg or IDX_FILES["x_train"] in msg, msg


def test_idx_folder_labels_out_of_range(tmp_path):
    arrays = tiny_arrays()
    arrays["y_test"][2] = 12
    folder = write_idx_folder(tmp_path / "range", arrays)
    msg = _err(load_idx_folder, folder)
    assert "12" in msg and "[0, 10)" in msg
    assert IDX_FILES["y_test"] in msg, msg  # the file at fault is named


def test_idx_folder_labels_within_more_classes_are_accepted(tmp_path):
    arrays = tiny_arrays()
    arrays["y_test"][2] = 12
    folder = write_idx_folder(tmp_path / "wide", arrays)
    ds = load_idx_folder(folder, num_classes=13)
    assert ds.num_classes == 13 and ds.y_test[2] == 12


def test_idx_folder_missing_files_are_listed(tmp_path):
    arrays = tiny_arrays()
    folder = write_idx_folder(tmp_path / "partial", arrays)
    (folder / IDX_FILES["y_test"]).unlink()
    (folder / IDX_FILES["x_test"]).unlink()
    msg = _err(load_idx_folder, folder)
    assert str(folder) in msg
    assert IDX_FILES["y_test"] in msg and IDX_FILES["x_test"] in msg
    assert IDX_FILES["x_train"] not in msg and IDX_FILES["y_train"] not in msg


def test_idx_folder_empty(tmp_path):
    msg = _err(load_idx_folder, tmp_path)
    assert all(stem in msg for stem in IDX_FILES.values())
    msg2 = _err(load_dataset, tmp_path)
    assert all(stem in msg2 for stem in IDX_FILES.values())


def test_idx_folder_malformed_member_names_that_file(tmp_path):
    arrays = tiny_arrays()
    folder = write_idx_folder(tmp_path / "f", arrays)
    bad = folder / IDX_FILES["x_test"]
    bad.write_bytes(bad.read_bytes()[:-1])
    msg = _err(load_dataset, folder)
    assert str(bad) in msg and "truncated" in msg


# --------------------------------------------------------------------------------------------------
# npz


def test_npz_round_trip(tmp_path):
    arrays = tiny_arrays(seed=5)
    arrays["y_train"] = arrays["y_train"].astype(np.int64)
    path = tmp_path / "small.npz"
    np.savez(path, **arrays)
    ds = load_npz(path)
    assert_same(ds, arrays)
    assert ds.name == "small" and ds.source == str(path)
    assert ds.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert_same(load_dataset(path), arrays)
    assert_same(load_dataset(str(path)), arrays)
    assert load_npz(path, name="other").name == "other"


def test_npz_float_images_round_trip(tmp_path):
    arrays = tiny_arrays(seed=6)
    arrays["x_train"] = arrays["x_train"].astype(np.float32) / 255
    arrays["x_test"] = arrays["x_test"].astype(np.float32) / 255
    path = tmp_path / "f.npz"
    np.savez_compressed(path, **arrays)
    ds = load_npz(path)
    assert_same(ds, arrays)
    np.testing.assert_array_equal(ds.flat(ds.x_train), arrays["x_train"].reshape(12, -1))


def test_npz_missing_arrays_are_listed(tmp_path):
    arrays = tiny_arrays()
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=arrays["x_train"], y_train=arrays["y_train"], images=arrays["x_test"])
    msg = _err(load_npz, path)
    assert str(path) in msg
    assert "x_test" in msg and "y_test" in msg
    assert "missing" in msg


_UNPICKLED: list = []


def _mark_unpickled(marker: str) -> dict:
    Path(marker).write_text("unpickled")
    _UNPICKLED.append(marker)
    return {}


class _Trap:
    """Unpickling this object calls _mark_unpickled: evidence that a pickle was loaded."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (_mark_unpickled, (self.marker,))


def test_npz_with_pickled_object_array_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "UNPICKLED"
    arrays = tiny_arrays()
    obj = np.empty(len(arrays["y_train"]), dtype=object)
    for i in range(len(obj)):
        obj[i] = _Trap(str(marker))
    path = tmp_path / "pickled.npz"
    np.savez(path, x_train=arrays["x_train"], y_train=obj, x_test=arrays["x_test"], y_test=arrays["y_test"])
    with pytest.raises(DatasetError) as ei:
        load_npz(path)
    assert str(path) in str(ei.value)
    with pytest.raises(DatasetError):
        load_dataset(path)
    assert not marker.exists() and not _UNPICKLED
    # the trap works: loading the same file with pickles allowed does run it
    with np.load(path, allow_pickle=True) as npz:
        npz["y_train"]
    assert marker.exists() and _UNPICKLED
    _UNPICKLED.clear()


def test_npz_with_nan_images_is_rejected(tmp_path):
    arrays = tiny_arrays()
    x = arrays["x_train"].astype(np.float32) / 255
    x[3, 1, 2] = np.nan
    arrays["x_train"] = x
    arrays["x_test"] = arrays["x_test"].astype(np.float32)
    path = tmp_path / "nan.npz"
    np.savez(path, **arrays)
    msg = _err(load_npz, path)
    assert str(path) in msg and "x_train" in msg and "NaN" in msg


def test_npz_with_inf_test_images_is_rejected(tmp_path):
    arrays = tiny_arrays()
    arrays["x_train"] = arrays["x_train"].astype(np.float64)
    x = arrays["x_test"].astype(np.float64)
    x[0, 0, 0] = -np.inf
    arrays["x_test"] = x
    path = tmp_path / "inf.npz"
    np.savez(path, **arrays)
    msg = _err(load_npz, path)
    assert str(path) in msg and "x_test" in msg and "inf" in msg


def test_npz_train_test_shape_mismatch(tmp_path):
    arrays = tiny_arrays()
    arrays["x_test"] = np.zeros((5, 5, 5), np.uint8)
    path = tmp_path / "shapes.npz"
    np.savez(path, **arrays)
    msg = _err(load_npz, path)
    assert str(path) in msg
    assert "(4, 4)" in msg and "(5, 5)" in msg


def test_npz_images_labels_count_mismatch(tmp_path):
    arrays = tiny_arrays()
    arrays["y_test"] = arrays["y_test"][:3]
    path = tmp_path / "count.npz"
    np.savez(path, **arrays)
    msg = _err(load_npz, path)
    assert str(path) in msg and "5" in msg and "3" in msg and "y_test" in msg


@pytest.mark.parametrize("bad", [12, -1])
def test_npz_labels_out_of_range(tmp_path, bad):
    arrays = tiny_arrays()
    arrays["y_train"] = arrays["y_train"].astype(np.int32)
    arrays["y_train"][4] = bad
    path = tmp_path / "range.npz"
    np.savez(path, **arrays)
    msg = _err(load_npz, path)
    assert str(path) in msg and f"label {bad}" in msg and "y_train" in msg


def test_npz_float_labels_rejected(tmp_path):
    arrays = tiny_arrays()
    arrays["y_train"] = arrays["y_train"].astype(np.float32)
    path = tmp_path / "flabels.npz"
    np.savez(path, **arrays)
    msg = _err(load_npz, path)
    assert str(path) in msg and "integer" in msg


@pytest.mark.parametrize("content", [b"", b"this is not a zip file at all", b"\x93NUMPY garbage"])
def test_npz_not_an_npz(tmp_path, content):
    path = tmp_path / "junk.npz"
    path.write_bytes(content)
    msg = _err(load_npz, path)
    assert str(path) in msg
    msg2 = _err(load_dataset, path)
    assert str(path) in msg2


def _valid_npz_bytes(tmp_path) -> bytes:
    path = tmp_path / "valid.npz"
    np.savez(path, **tiny_arrays())
    return path.read_bytes()


def test_npz_truncated_file(tmp_path):
    # e.g. an interrupted download: a zip whose end is missing
    path = tmp_path / "truncated.npz"
    path.write_bytes(_valid_npz_bytes(tmp_path)[:600])
    msg = _err(load_npz, path)
    assert str(path) in msg
    msg2 = _err(load_dataset, path)
    assert str(path) in msg2


def test_npz_corrupted_member(tmp_path):
    # a flipped byte inside an array: the zip's CRC check fails when the array is read
    data = bytearray(_valid_npz_bytes(tmp_path))
    data[200] ^= 0xFF
    path = tmp_path / "corrupted.npz"
    path.write_bytes(bytes(data))
    msg = _err(load_npz, path)
    assert str(path) in msg


def test_npz_missing_file(tmp_path):
    path = tmp_path / "absent.npz"
    msg = _err(load_dataset, path)
    assert str(path) in msg and "no such file" in msg


# --------------------------------------------------------------------------------------------------
# $FFSIM_DATA_DIR


def test_data_dir_npz_is_preferred_for_mnist(tmp_path, monkeypatch):
    arrays = tiny_arrays(seed=11)
    np.savez(tmp_path / "mnist.npz", **arrays)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    for ds in (load_dataset("mnist"), load_mnist()):
        assert_same(ds, arrays)
        assert ds.name == "mnist"
        assert ds.source == str(tmp_path / "mnist.npz")
        assert ds.sha256 == hashlib.sha256((tmp_path / "mnist.npz").read_bytes()).hexdigest() != MNIST_SHA256


@pytest.mark.parametrize("gz", [False, True])
def test_data_dir_idx_files_are_used_for_mnist(tmp_path, monkeypatch, gz):
    arrays = tiny_arrays(seed=12)
    write_idx_folder(tmp_path, arrays, gz=gz)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    ds = load_dataset("mnist")
    assert_same(ds, arrays)
    assert ds.name == "mnist" and ds.source == str(tmp_path)
    assert_same(load_mnist(), arrays)


def test_data_dir_idx_subfolder_named_after_dataset(tmp_path, monkeypatch):
    arrays = tiny_arrays(seed=13)
    write_idx_folder(tmp_path / "mnist", arrays)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert_same(load_dataset("mnist"), arrays)


def test_data_dir_other_names(tmp_path, monkeypatch):
    arrays = tiny_arrays(seed=14)
    np.savez(tmp_path / "digits.npz", **arrays)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    ds = load_dataset("digits")
    assert_same(ds, arrays)
    assert ds.name == "digits"


def test_data_dir_without_mnist_falls_back_to_the_packaged_copy(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    ds = load_dataset("mnist")
    assert ds.sha256 == MNIST_SHA256 and ds.x_train.shape == (60000, 28, 28)


def test_data_dir_broken_mnist_is_reported_not_skipped(tmp_path, monkeypatch):
    arrays = tiny_arrays()
    arrays["y_train"][0] = 42
    np.savez(tmp_path / "mnist.npz", **arrays)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    msg = _err(load_dataset, "mnist")
    assert str(tmp_path / "mnist.npz") in msg and "42" in msg


def test_unknown_dataset_name_mentions_the_variable(tmp_path, monkeypatch):
    msg = _err(load_dataset, "no-such-dataset")
    assert "no-such-dataset" in msg and DATA_DIR_ENV in msg
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    msg = _err(load_dataset, "no-such-dataset")
    assert "no-such-dataset" in msg and DATA_DIR_ENV in msg and str(tmp_path) in msg
