"""numpy arrays that stand in for CuPy's device arrays: the GPU backend's host code run without a GPU.

Under the CUDA simulator the GPU backend's arrays are plain numpy arrays, so what the host code asks of
the device (operations, transfers, reads of device values) passes unseen.  A subclass of :class:`StandIn`
sees every operation on its arrays through one method, :meth:`StandIn._operate`, and every read of a
device value on the host through :meth:`StandIn._scalar`; the tools built on it decide what to do there:

* ``benchmarks/gpu_opcount.py`` counts the operations a step asks of a GPU;
* ``tests/gpu_sim/graph_emulation.py`` records a step's operations and replays them (an emulated CUDA
  graph) and refuses transfers and host reads while it records;
* ``tests/gpu_sim/test_device_discipline.py`` refuses a host array that meets a device array.

Basic indexing gives views without an operation, as on a GPU; fancy indexing, assignment, ``astype``,
``copy``, ufuncs, array functions and the methods a subclass lists in ``METHODS`` are operations.  Like
CuPy, an operation's result is a device array, reductions to one value included (0-d)."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np

__all__ = ["Namespace", "StandIn", "hooked_launches", "is_fancy", "raw"]


def raw(a):
    """``a`` with every stand-in array in it (also inside tuples, lists and dicts) as a plain ndarray view."""
    if isinstance(a, StandIn):
        return a.view(np.ndarray)
    if isinstance(a, tuple | list):
        return type(a)(raw(v) for v in a)
    if isinstance(a, dict):
        return {k: raw(v) for k, v in a.items()}
    return a


def is_fancy(key) -> bool:
    """Whether an index is fancy (an array or list among its parts): a gather on a GPU, not a view."""
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, np.ndarray | list) for k in keys)


class StandIn(np.ndarray):
    """A 'device' array.  Subclasses override :meth:`_operate` (and :meth:`_scalar`, :meth:`_wrap`)."""

    METHODS: tuple[str, ...] = ()  # ndarray methods that are operations of this stand-in ("sum", "reshape", ...)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for m in cls.METHODS:
            def method(self, *a, _m=m, **k):
                return type(self)._operate(f".{_m}", getattr(np.ndarray, _m), (self, *a), k)
            setattr(cls, m, method)

    @classmethod
    def _operate(cls, name: str, fn, args: tuple, kwargs: dict, result: bool = True):
        """Run ``fn(*args, **kwargs)`` on the plain arrays; ``name`` says what it is (``"add"``,
        ``"add.reduce"``, ``"matmul"``, ``".sum"``, ``"getitem (fancy)"``, ``"setitem"``, ``"astype"``,
        ``"copy"``); ``result`` is False where the operation is an assignment."""
        return cls._wrap(fn(*raw(args), **raw(kwargs)))

    @classmethod
    def _wrap(cls, r):
        """A result as a stand-in array (a reduction's scalar as a 0-d one)."""
        if isinstance(r, np.ndarray) and not isinstance(r, cls):
            return r.view(cls)
        if isinstance(r, np.generic):
            return np.asarray(r).view(cls)
        return r

    def _scalar(self, f):
        """A device value read on the host (``float``, ``int``, ``bool``, ``item``)."""
        return f(self.view(np.ndarray))

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kw):
        if out:
            kw["out"] = tuple(out)
        name = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        return type(self)._operate(name, getattr(ufunc, method), inputs, kw)

    def __array_function__(self, func, types, args, kwargs):
        return type(self)._operate(func.__name__, func, args, kwargs)

    def __getitem__(self, key):
        if is_fancy(key):
            return type(self)._operate("getitem (fancy)", np.ndarray.__getitem__, (self, key), {})
        return type(self)._wrap(np.ndarray.__getitem__(self.view(np.ndarray), raw(key)))

    def __setitem__(self, key, value):
        type(self)._operate("setitem", np.ndarray.__setitem__, (self, key, value), {}, result=False)

    def astype(self, dtype, *a, **k):
        return type(self)._operate("astype", np.ndarray.astype, (self, dtype, *a), k)

    def copy(self, *a, **k):
        return type(self)._operate("copy", np.ndarray.copy, (self, *a), k)

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __bool__(self):
        return self._scalar(bool)

    def item(self, *a):
        return self._scalar(lambda v: v.item(*a))


class Namespace(SimpleNamespace):
    """An ``xp`` for a stand-in: numpy's functions as operations of the subclass's ``ndarray`` (a
    :class:`StandIn` class): ``xp.f(*args)`` is ``ndarray._operate("f", numpy.f, args, kwargs)``; numpy's
    types and constants as they are.  Subclasses add ``asarray`` and ``asnumpy`` (the transfers)."""

    ndarray: type = StandIn

    def __getattr__(self, name):
        f = getattr(np, name)
        if not callable(f) or isinstance(f, type):
            return f
        cls = self.ndarray

        def g(*args, **kwargs):
            return cls._operate(name, f, args, kwargs)
        return g


@contextlib.contextmanager
def hooked_launches(hook):
    """Route ``ffsim.gpu.kernels._launch`` (every numba-cuda launch) through ``hook(launch, kernel, grid, block,
    args)`` first, ``launch`` being the real one and ``args`` as the caller gave them; the kernel then runs on
    the plain arrays (the CUDA simulator indexes them element by element: a stand-in's indexing would be
    seen as operations, and slow)."""
    from ffsim.gpu import kernels

    real = kernels._launch

    def launch(kernel, grid, block, *args):
        hook(real, kernel, grid, block, args)
        return real(kernel, grid, block, *(raw(a) for a in args))

    kernels._launch = launch
    try:
        yield
    finally:
        kernels._launch = real
