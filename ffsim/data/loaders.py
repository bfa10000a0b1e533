"""Datasets: the MNIST copy shipped with the package, and loaders for user data (IDX, raw or gzip; npz).

A dataset is four arrays: ``x_train`` (n, ...) and ``x_test`` (m, ...) as uint8 or float images, and
integer labels ``y_train``/``y_test`` in ``[0, num_classes)``.  Malformed files raise
:class:`DatasetError` naming the file and what is wrong (wrong magic number, truncated data, shape
mismatch between images and labels, labels out of range).  Pickles are never loaded.

Where data comes from, in order: an explicit path; ``$FFSIM_DATA_DIR`` (``NAME.npz`` or the four IDX
files ``train-images-idx3-ubyte[.gz]`` etc.); for ``mnist``, the copy inside the package.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["DATA_DIR_ENV", "Dataset", "DatasetError", "load_dataset", "load_idx", "load_idx_folder", "load_mnist",
           "load_npz"]

DATA_DIR_ENV = "FFSIM_DATA_DIR"
MNIST_SHA256 = "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_NAMES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class Dataset:
    """Train/test arrays (and an optional validation split taken from the training set)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int = 10
    source: str = ""
    sha256: str = ""
    x_val: np.ndarray | None = field(default=None, repr=False)
    y_val: np.ndarray | None = field(default=None, repr=False)

    def split_validation(self, n_val: int) -> Dataset:
        """Hold out the last ``n_val`` training cases as validation (the paper tuned on 50k/10k)."""
        n = len(self.y_train)
        if not 0 < n_val < n:
            raise DatasetError(f"{self.name}: validation size must be in 1..{n - 1} (got {n_val})")
        return Dataset(self.name, self.x_train[: n - n_val], self.y_train[: n - n_val], self.x_test, self.y_test,
                       self.num_classes, self.source, self.sha256, self.x_train[n - n_val:], self.y_train[n - n_val:])

    def arrays(self, train_cases: int | None = None, test_cases: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x_train, y_train, x_test, y_test) as float32 vectors and int64 labels, optionally truncated."""
        x_tr, y_tr = self.flat(self.x_train[:train_cases]), self.y_train[:train_cases].astype(np.int64)
        x_te, y_te = self.flat(self.x_test[:test_cases]), self.y_test[:test_cases].astype(np.int64)
        return x_tr, y_tr, x_te, y_te

    def flat(self, x: np.ndarray) -> np.ndarray:
        """Images as float32 vectors in [0, 1] (uint8 data divided by 255)."""
        x = x.reshape(len(x), -1)
        if x.dtype == np.uint8:
            return x.astype(np.float32) / np.float32(255.0)
        return x.astype(np.float32)


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (raw or ``.gz``), checking its magic number and size."""
    path = Path(path)
    try:
        with _open(path) as fh:
            data = fh.read()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot be read ({exc})") from None
    if len(data) < 4:
        raise DatasetError(f"{path}: truncated: {len(data)} bytes, an IDX header needs at least 4")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or not 1 <= data[3] <= 8:
        raise DatasetError(f"{path}: wrong magic number {data[:4].hex()} (an IDX file starts with 00 00, a type "
                           "code in 08/09/0b/0c/0d/0e and the number of dimensions)")
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated header: {len(data)} bytes, expected {header}")
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) < expected:
        raise DatasetError(f"{path}: truncated: {len(data)} bytes, the header's shape {shape} needs {expected}")
    if len(data) > expected:
        raise DatasetError(f"{path}: {len(data) - expected} bytes after the data the header's shape {shape} "
                           "describes")
    arr = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("=")) if dtype.byteorder == ">" else arr.copy()


def _check(name: str, source: str, arrays: dict[str, np.ndarray], num_classes: int,
           files: dict[str, str] | None = None) -> None:
    """Consistency of the four arrays; ``files`` names the file each array came from (IDX folders)."""
    where = files or {}

    def src(*keys: str) -> str:
        named = [where[k] for k in keys if k in where]
        return ", ".join(named) if named else source

    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        xk, yk = f"x_{split}", f"y_{split}"
        if y.ndim != 1:
            raise DatasetError(f"{src(yk)}: y_{split} must be one label per case, got shape {y.shape}")
        if x.ndim < 2:
            raise DatasetError(f"{src(xk)}: x_{split} must hold one array per case, got shape {x.shape}")
        if len(x) != len(y):
            raise DatasetError(f"{src(xk, yk)}: x_{split} has {len(x)} cases but y_{split} has {len(y)} labels")
        if not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"{src(yk)}: y_{split} must be integer labels, got dtype {y.dtype}")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            bad = y[(y < 0) | (y >= num_classes)][0]
            raise DatasetError(f"{src(yk)}: y_{split} has label {bad} outside [0, {num_classes})")
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            raise DatasetError(f"{src(xk)}: x_{split} contains NaN or inf")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DatasetError(f"{src('x_train', 'x_test')}: train images {arrays['x_train'].shape[1:]} and test "
                           f"images {arrays['x_test'].shape[1:]} differ in shape")


def load_npz(path: str | os.PathLike, name: str | None = None, num_classes: int = 10) -> Dataset:
    """A dataset from an ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (no pickles)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in npz.files]
            if missing:
                raise DatasetError(f"{path}: missing arrays {missing} (has {sorted(npz.files)})")
            arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except DatasetError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DatasetError(f"{path}: not a readable .npz without pickles ({exc})") from None
    _check(name or path.stem, str(path), arrays, num_classes)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Dataset(name or path.stem, **arrays, num_classes=num_classes, source=str(path), sha256=digest)


def _find_idx(folder: Path) -> dict[str, Path] | None:
    found = {}
    for key, stems in _IDX_NAMES.items():
        for stem in stems:
            for cand in (folder / stem, folder / f"{stem}.gz"):
                if cand.is_file():
                    found[key] = cand
                    break
            if key in found:
                break
    return found if found else None


def load_idx_folder(folder: str | os.PathLike, name: str = "mnist", num_classes: int = 10) -> Dataset:
    folder = Path(folder)
    found = _find_idx(folder) or {}
    missing = [_IDX_NAMES[k][0] for k in _IDX_NAMES if k not in found]
    if missing:
        raise DatasetError(f"{folder}: missing IDX files {missing} (raw or .gz)")
    arrays = {k: load_idx(p) for k, p in found.items()}
    _check(name, str(folder), arrays, num_classes, files={k: str(p) for k, p in found.items()})
    return Dataset(name, **arrays, num_classes=num_classes, source=str(folder))


def load_mnist() -> Dataset:
    """MNIST: ``$FFSIM_DATA_DIR`` if it holds it, else the official 60k/10k copy shipped with ffsim."""
    return load_dataset("mnist")


def load_dataset(name_or_path: str | os.PathLike = "mnist", num_classes: int = 10) -> Dataset:
    """Load a dataset by path (``.npz`` file or a folder of IDX files) or by name.

    A name is looked up in ``$FFSIM_DATA_DIR`` (``NAME.npz``, or IDX files in ``NAME/`` or in the folder
    itself); ``mnist`` falls back to the copy inside the package.
    """
    s = str(name_or_path)
    p = Path(s)
    if p.suffix == ".npz" or p.is_file():
        return load_npz(p, num_classes=num_classes)
    if p.is_dir():
        return load_idx_folder(p, name=p.name, num_classes=num_classes)
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        d = Path(env)
        if (d / f"{s}.npz").is_file():
            return load_npz(d / f"{s}.npz", name=s, num_classes=num_classes)
        for folder in (d / s, d):
            if _find_idx(folder):
                return load_idx_folder(folder, name=s, num_classes=num_classes)
    if s == "mnist":
        ref = resources.files("ffsim.data") / "mnist.npz"
        with resources.as_file(ref) as path:
            ds = load_npz(path, name="mnist", num_classes=10)
        if ds.sha256 != MNIST_SHA256:
            raise DatasetError(f"{path}: the packaged MNIST copy is corrupted (sha256 {ds.sha256})")
        return ds
    where = f" or in ${DATA_DIR_ENV}={env}" if env else f" (set ${DATA_DIR_ENV} or give a path)"
    raise DatasetError(f"dataset '{s}' not found as a file or folder{where}")
