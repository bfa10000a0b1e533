"""The array-backend seam: numpy on the CPU, CuPy and numba-cuda kernels on a GPU.

``select_backend(name)`` returns a :class:`Backend`: the array module ``xp`` the state arrays live in,
``to_device`` / ``to_host`` to move arrays, and ``kernels``, the physics kernels with the signatures of
the Numba CPU kernels (the CPU kernels themselves, or their numba-cuda twins in :mod:`ffsim.gpu`).

The name comes from the argument, else from the environment variable ``FFSIM_BACKEND``, else ``cpu``.
``gpu`` needs numba's CUDA support with a CUDA device and CuPy (for the arrays and cuBLAS), or the CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported: the arrays stay numpy and the
numba-cuda kernels run in the simulator, which is how the tests check them without a GPU).  Where
``gpu`` is asked for and neither is present, one line goes to stderr (once per process) and the CPU
backend is used.  The CPU path imports neither numba.cuda nor CuPy.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

__all__ = ["BACKENDS", "ENV_VAR", "Backend", "backend_record", "requested_backend", "select_backend",
           "set_default_backend"]

BACKENDS = ("cpu", "gpu")
ENV_VAR = "FFSIM_BACKEND"

_notice_printed = False
_cache: dict[str, Backend] = {}


@dataclass(frozen=True, eq=False)
class Backend:
    """Where a chip's arrays live and which kernels act on them.

    ``name``: ``'cpu'`` or ``'gpu'``; ``xp``: numpy or cupy; ``simulated``: the numba-cuda kernels run in
    the CUDA simulator (``xp`` is then numpy).
    """

    name: str
    xp: ModuleType
    simulated: bool = False
    _kernels: list = field(default_factory=list, repr=False)

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"

    def asarray(self, a: Any, dtype=None) -> Any:
        """``a`` as an array of this backend (a copy to the device where it is not one already).

        On the GPU backend the result is always C-contiguous (zero-stride host views are materialized).
        """
        if not self.is_gpu:
            return np.asarray(a, dtype=dtype)
        if self.xp is np:
            return np.ascontiguousarray(a, dtype=dtype)
        if isinstance(a, self.xp.ndarray):
            return self.xp.ascontiguousarray(a, dtype=dtype)
        return self.xp.asarray(np.ascontiguousarray(a, dtype=dtype))

    to_device = asarray

    def to_host(self, a: Any) -> np.ndarray:
        """``a`` as a numpy array (a copy from the device where needed)."""
        if self.xp is not np and isinstance(a, self.xp.ndarray):
            return self.xp.asnumpy(a)
        return np.asarray(a)

    @property
    def kernels(self) -> SimpleNamespace:
        """The physics kernels (same names and signatures on every backend)."""
        if not self._kernels:
            self._kernels.append(_gpu_kernels() if self.is_gpu else _cpu_kernels())
        return self._kernels[0]


def _cpu_kernels() -> SimpleNamespace:
    from ffsim.crossbar.kernels import column_sums, ir_loads, rebuild_caches
    from ffsim.crossbar.periphery import adc_accumulate, dac_convert
    from ffsim.devices.program import program_masked
    from ffsim.devices.pulse import pulse_aggregate, pulse_exact, pulse_factors, pulse_maxima
    from ffsim.devices.refresh import refresh_pairs
    from ffsim.ff import kernels as ff
    from ffsim.ff.weights import _smoothed_step

    return SimpleNamespace(dac_convert=dac_convert, adc_accumulate=adc_accumulate, rebuild_caches=rebuild_caches,
                           ir_loads=ir_loads, column_sums=column_sums, program_masked=program_masked,
                           pulse_aggregate=pulse_aggregate, pulse_exact=pulse_exact, refresh_pairs=refresh_pairs,
                           pulse_maxima=pulse_maxima, pulse_factors=pulse_factors, smoothed_step=_smoothed_step,
                           **{n: getattr(ff, n) for n in ff.FF_KERNELS})


def _gpu_kernels() -> SimpleNamespace:
    from ffsim.gpu import kernels

    return kernels.namespace()


def requested_backend(name: str | None = None) -> str:
    """The backend asked for: ``name``, else ``$FFSIM_BACKEND``, else ``'cpu'`` (validated)."""
    if name is None:
        env = os.environ.get(ENV_VAR)
        if env is None or env.strip() == "":
            return "cpu"
        value = env.strip().lower()
        if value not in BACKENDS:
            raise ValueError(f"{ENV_VAR}={env!r} is not a backend; allowed values: {', '.join(BACKENDS)}")
        return value
    value = str(name).strip().lower()
    if value not in BACKENDS:
        raise ValueError(f"backend {name!r} is not one of {', '.join(BACKENDS)} (also settable with {ENV_VAR})")
    return value


def set_default_backend(name: str) -> None:
    """Make ``name`` the backend of every chip built later without an explicit one (``ffsim train --backend``).

    It is written to ``$FFSIM_BACKEND``, so worker processes started afterwards (sweeps) inherit it.
    """
    os.environ[ENV_VAR] = requested_backend(name)


def backend_record(used: Backend | None, engine: Backend | None = None) -> dict[str, Any]:
    """What a run records: where its weights ran (chips, or the float weights of ``ideal`` mode: ``'cpu'``
    or ``'gpu'``, simulated or not; ``used`` None means the CPU), where its engine (the FF/BP arithmetic
    between weight operations: ``engine``, None meaning numpy on the host) ran, and what was asked for; on
    the GPU also the settings in force (:func:`ffsim.gpu.settings`: ``FFSIM_GPU_TF32`` changes results)."""
    b, e = used or _cpu(), engine or _cpu()
    rec = {"weights": b.name, "simulated": b.simulated, "engine": e.name, "requested": requested_backend()}
    if b.is_gpu or e.is_gpu:
        from ffsim.gpu import settings

        rec["gpu_settings"] = settings()
    return rec


def _probe_kernel(a):  # compiled by _probe_gpu
    a[0] = 0


def _probe_gpu() -> tuple[ModuleType | None, bool, str]:
    """(xp, simulated, reason): the array module for the GPU backend, or None and why there is none."""
    import numba

    if numba.config.ENABLE_CUDASIM:
        return np, True, ""
    try:
        from numba import cuda
    except Exception as e:  # noqa: BLE001 - any import failure means no GPU support
        return None, False, f"numba.cuda unavailable: {e}"
    try:
        if not cuda.is_available():
            return None, False, "numba.cuda finds no CUDA driver or device"
    except Exception as e:  # noqa: BLE001
        return None, False, f"numba.cuda: {e}"
    try:
        # compile one tiny kernel now: a numba-cuda that cannot (no libNVVM; numba-cuda 0.30 under numpy 2.5,
        # which removed np.row_stack) would otherwise fail deep inside the first chip operation
        cuda.jit("void(float32[::1])")(_probe_kernel)
    except Exception as e:  # noqa: BLE001
        hint = " (numba-cuda 0.30 needs numpy < 2.5)" if "row_stack" in str(e) else ""
        return None, False, f"numba-cuda cannot compile a kernel: {type(e).__name__}: {e}{hint}"
    try:
        import cupy
    except Exception as e:  # noqa: BLE001
        return None, False, f"CuPy not importable: {e}"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, False, "CuPy sees no CUDA device"
    except Exception as e:  # noqa: BLE001
        return None, False, f"CuPy: {e}"
    return cupy, False, ""


def _notice(reason: str) -> None:
    global _notice_printed
    if not _notice_printed:
        _notice_printed = True
        print(f"ffsim: no CUDA GPU found ({reason}); running on the CPU", file=sys.stderr, flush=True)


def select_backend(name: str | Backend | None = None) -> Backend:
    """The backend to run on (see the module docstring); falls back to the CPU, with a one-line notice,
    where ``'gpu'`` is asked for and no GPU (nor the CUDA simulator) is present."""
    if isinstance(name, Backend):
        return name
    want = requested_backend(name)
    if want == "gpu":
        if "gpu" in _cache:
            return _cache["gpu"]
        xp, simulated, reason = _probe_gpu()
        if xp is not None:
            _cache["gpu"] = Backend("gpu", xp, simulated)
            return _cache["gpu"]
        _notice(reason)
        _cache["gpu"] = _cpu()
        return _cache["gpu"]
    return _cpu()


def _cpu() -> Backend:
    if "cpu" not in _cache:
        _cache["cpu"] = Backend("cpu", np, False)
    return _cache["cpu"]
