"""One body, two targets: CUDA device functions compiled from the CPU kernels' own helpers.

The device physics (a pulse's step, the read-noise table, programming and refresh of a cell, the counter-based
random numbers) is written once, as the Python body of a CPU helper (``@njit(inline='always')``).  Its GPU twin
is that body compiled by numba-cuda as a device function, with the global names of the helpers it calls bound
to *their* twins (:func:`device`).  On a GPU, numba types both compilations alike; in the CUDA simulator a
device function runs as plain Python on numpy scalars (NEP 50 promotion), so the shared bodies convert their
operands explicitly where numba's typing and numpy's scalar rules would differ -- the CUDA simulator then
reproduces the CPU kernels bit for bit (``tests/gpu_sim``).

The kernels are compiled once per machine, not once per process: :func:`jit_kernel` keeps numba-cuda's compiled
code of each signature on disk (its ``cache=True``) with the stamp of :mod:`ffsim._numba_cache` (a kernel is
compiled again when its file, an ffsim module that file imports, or numba-cuda changes).
``FFSIM_GPU_CACHE=0`` turns the disk cache off.
"""

from __future__ import annotations

import os
import types
import warnings

import numba
from numba import cuda
from numba.core.dispatcher import Dispatcher

__all__ = ["CACHE", "device", "disk_cache", "disk_cache_stats", "jit_kernel", "rebound"]

CACHE = os.environ.get("FFSIM_GPU_CACHE", "1") != "0"
_warned: set[str] = set()


def rebound(fn, **names):
    """A copy of the Python function ``fn`` (or of a numba dispatcher's ``py_func``) whose global names in
    ``names`` are bound to the given objects instead of its module's.

    Every name must be one the body uses, and every other name of the body that its module binds to a CPU
    numba function must be given (a GPU body calling a CPU function would compile on a GPU but not run in the
    simulator): a mistake raises ``TypeError`` naming the function and the names."""
    py = getattr(fn, "py_func", fn)
    used = set(py.__code__.co_names)
    extra = sorted(set(names) - used)
    if extra:
        raise TypeError(f"rebound({py.__qualname__}): the body does not use {extra}")
    cpu = sorted(n for n in used - set(names) if isinstance(py.__globals__.get(n), Dispatcher))
    if cpu:
        raise TypeError(f"rebound({py.__qualname__}): CPU functions {cpu} need their device twins")
    g = dict(py.__globals__)
    g.update(names)
    f = types.FunctionType(py.__code__, g, py.__name__, py.__defaults__, py.__closure__)
    f.__qualname__, f.__module__, f.__doc__ = py.__qualname__, py.__module__, py.__doc__
    return f


def device(fn, **names):
    """The CUDA device function compiled from ``fn``'s body (see :func:`rebound` for ``names``)."""
    return cuda.jit(device=True)(rebound(fn, **names))


def jit_kernel(fn):
    """The CUDA kernel ``cuda.jit(fn)``, its compiled code kept on disk (:func:`disk_cache`) where ``CACHE``
    and not in the simulator (which compiles nothing)."""
    k = cuda.jit(fn)
    if CACHE and not numba.config.ENABLE_CUDASIM:
        disk_cache(k)
    return k


def _warn_once(what: str, k, e: BaseException) -> None:
    if what not in _warned:
        _warned.add(what)
        name = getattr(getattr(k, "py_func", None), "__qualname__", k)
        warnings.warn(f"ffsim: GPU kernels' disk cache: {what} failed ({name}: {type(e).__name__}: {e}); "
                      "compiling instead (FFSIM_GPU_CACHE=0 turns the cache off)", RuntimeWarning, stacklevel=3)


def disk_cache(k) -> bool:
    """Turn on numba-cuda's on-disk cache of the kernel dispatcher ``k`` (``enable_caching``), with ffsim's
    stamps (:func:`ffsim._numba_cache.install_cuda`).  The cache only saves time: a failure to set it up,
    to load an entry or to save one warns once per kind (and the kernel is compiled as without it); after a
    failed save that kernel saves no more.  Returns whether the cache is on."""
    from ffsim._numba_cache import install_cuda

    try:
        install_cuda()
        k.enable_caching()
        cache = k._cache
        load, save = cache.load_overload, cache.save_overload
    except Exception as e:  # noqa: BLE001 - no cache is the state before this function
        _warn_once("setting it up", k, e)
        return False
    saving = [True]

    def guarded_load(sig, target_context):
        try:
            return load(sig, target_context)
        except Exception as e:  # noqa: BLE001 - an unreadable entry: compile it again
            _warn_once("loading an entry", k, e)
            return None

    def guarded_save(sig, data):
        if not saving[0]:
            return
        try:
            save(sig, data)
        except Exception as e:  # noqa: BLE001 - the compiled kernel is in memory and launches regardless
            saving[0] = False
            _warn_once("saving an entry", k, e)

    cache.load_overload, cache.save_overload = guarded_load, guarded_save
    return True


def disk_cache_stats() -> dict[str, int]:
    """The disk cache of this process's GPU kernels (those of :mod:`ffsim.gpu.kernels` and
    :mod:`ffsim.gpu.ff_kernels`): how many kernels, how many with the cache on, and their signatures loaded
    from it (hits) and compiled (misses).  All zero in the simulator (it compiles nothing)."""
    from ffsim.gpu import ff_kernels, kernels

    ks = [k for m in (kernels, ff_kernels) for k in vars(m).values()
          if hasattr(k, "_cache_hits") and not k.targetoptions.get("device")]
    return {"kernels": len(ks), "cached": sum(type(k._cache).__name__ == "CUDACache" for k in ks),
            "hits": sum(sum(k._cache_hits.values()) for k in ks),
            "misses": sum(sum(k._cache_misses.values()) for k in ks)}
