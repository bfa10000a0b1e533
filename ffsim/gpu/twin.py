"""One body, two targets: CUDA device functions compiled from the CPU kernels' own helpers.

The device physics (a pulse's step, the read-noise table, programming and refresh of a cell, the counter-based
random numbers) is written once, as the Python body of a CPU helper (``@njit(inline='always')``).  Its GPU twin
is that body compiled by numba-cuda as a device function, with the global names of the helpers it calls bound
to *their* twins (:func:`device`).  On a GPU, numba types both compilations alike; in the CUDA simulator a
device function runs as plain Python on numpy scalars (NEP 50 promotion), so the shared bodies convert their
operands explicitly where numba's typing and numpy's scalar rules would differ -- the CUDA simulator then
reproduces the CPU kernels bit for bit (``tests/gpu_sim``).
"""

from __future__ import annotations

import types

from numba import cuda
from numba.core.dispatcher import Dispatcher

__all__ = ["device", "rebound"]


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
