"""Process-wide threading settings that keep BLAS and the Numba kernels from fighting for cores.

ffsim alternates BLAS matrix products (OpenBLAS threads) with Numba parallel kernels (OpenMP threads).
By default both runtimes keep their worker threads spinning for a while after a parallel region, so on
a machine with few cores each steals time from the other: the forward pass of the W1 benchmark ran
about 2x slower than with the settings below (BENCHMARKS.md).  Unless the variables are already set
(or ``FFSIM_NO_THREAD_TUNING=1``), importing ffsim sets:

* ``OMP_WAIT_POLICY=PASSIVE``: OpenMP workers sleep when idle (read when Numba starts its OpenMP pool);
* ``OPENBLAS_THREAD_TIMEOUT=4``: OpenBLAS workers sleep after 2^4 cycles instead of 2^28; OpenBLAS
  reads it when it is loaded, so it only takes effect if ffsim is imported before numpy (the ``ffsim``
  command does this; scripts can export it).
"""

from __future__ import annotations

import os
import sys
import warnings


class PerformanceWarning(UserWarning):
    """A setting that makes ffsim run slower than it could."""


def configure_threads() -> None:
    if os.environ.get("FFSIM_NO_THREAD_TUNING"):
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    elif "OPENBLAS_THREAD_TIMEOUT" not in os.environ and (os.cpu_count() or 1) <= 8:
        warnings.warn(
            "numpy was imported before ffsim, so OpenBLAS keeps its worker threads spinning after each matrix "
            "product and they compete with ffsim's Numba kernels (about 2x slower on few cores). Import ffsim "
            "first or export OPENBLAS_THREAD_TIMEOUT=4 (FFSIM_NO_THREAD_TUNING=1 silences this).",
            PerformanceWarning,
            stacklevel=3,
        )
