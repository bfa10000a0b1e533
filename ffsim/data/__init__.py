"""Datasets: MNIST shipped with the package; IDX and npz loaders for user data."""

from ffsim.data.loaders import (
    DATA_DIR_ENV,
    Dataset,
    DatasetError,
    load_dataset,
    load_idx,
    load_idx_folder,
    load_mnist,
    load_npz,
)

__all__ = ["DATA_DIR_ENV", "Dataset", "DatasetError", "load_dataset", "load_idx", "load_idx_folder", "load_mnist",
           "load_npz"]
