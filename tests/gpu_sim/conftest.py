"""Checks of the numba-cuda twins in the CUDA simulator.

They only run with ``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported;
``tests/test_gpu_backend.py`` runs them in a subprocess with it.  The simulator runs Python per thread,
so the arrays are tiny.  Its numpy-scalar arithmetic wraps uint64 products with an overflow warning:
the hash functions rely on the wrap-around, so the warning is silenced here.
"""

# ruff: noqa: I001
import ffsim  # noqa: F401  (first: before numba, which imports numpy; see ffsim/_runtime.py)

import warnings

import numba
import pytest

if not numba.config.ENABLE_CUDASIM:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(autouse=True)
def _quiet_uint64_overflow():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
        yield
