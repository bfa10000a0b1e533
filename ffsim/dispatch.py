"""One compiled variant of a Numba kernel for arrays of any strides.

Numba compiles a kernel once per combination of its arguments' types, and an array's type includes its
layout: ``'C'`` for a contiguous array, ``'A'`` for any other.  A chip's per-device parameters (``g_max``,
the pulse steps and nonlinearities, the stuck map, the write noise) are contiguous arrays where the profile
gives them a device-to-device spread and zero-stride views of one value where it does not, so the profiles
between them asked for up to six compilations of the same pulse kernel (each ~30 s on a 2-core machine).

:func:`any_layout` wraps a kernel so that the arguments it names are always compiled as ``'A'`` arrays,
whatever their strides: every profile runs the same machine code, compiled (or loaded from Numba's cache)
once.  The other arguments keep their own types.  Named this way, the arrays did not change the kernels'
times (BENCHMARKS.md, "Numba compilation").
"""

from __future__ import annotations

import functools
import inspect

import numba
import numpy as np

__all__ = ["AnyLayout", "any_layout"]

# the flag bits that make an array's Numba layout: C_CONTIGUOUS, F_CONTIGUOUS
_LAYOUT_BITS = 0x1 | 0x2


class AnyLayout:
    """A Numba CPU kernel whose named array arguments are compiled with layout ``'A'``.

    Calls go straight to the compiled entry point of the signature, looked up by a key made of each
    argument's Python type and, for arrays, dtype, rank and flags (without the contiguity of the named
    ones); a new key compiles (or loads from the cache) that signature once.  Keyword arguments are bound
    to their positions.
    """

    def __init__(self, dispatcher, names: tuple[str, ...]):
        self.dispatcher = dispatcher
        self._sig = inspect.signature(dispatcher.py_func)
        params = list(self._sig.parameters)
        unknown = [n for n in names if n not in params]
        if unknown:
            raise ValueError(f"{dispatcher.py_func.__qualname__} has no parameter(s) {unknown}; "
                             f"its parameters: {params}")
        self._any = frozenset(params.index(n) for n in names)
        self._entries: dict[tuple, object] = {}
        functools.update_wrapper(self, dispatcher.py_func)

    def __getattr__(self, name):  # py_func, signatures, overloads, ... of the Numba dispatcher
        return getattr(self.dispatcher, name)

    def _key(self, args) -> tuple:
        key = []
        for k, a in enumerate(args):
            if isinstance(a, np.ndarray):
                flags = a.flags.num & ~_LAYOUT_BITS if k in self._any else a.flags.num
                key.append((a.dtype.num, a.ndim, flags & ~0x4))  # (without OWNDATA)
            else:
                key.append(type(a))
        return tuple(key)

    def signature_for(self, args) -> tuple:
        """The Numba argument types this wrapper compiles for ``args``."""
        types = []
        for k, a in enumerate(args):
            t = numba.typeof(a, numba.core.typing.typeof.Purpose.argument)
            if k in self._any and isinstance(t, numba.types.Array):
                t = t.copy(layout="A")
            types.append(t)
        return tuple(types)

    def __call__(self, *args, **kwargs):
        if kwargs:
            args = self._sig.bind(*args, **kwargs).args
        key = self._key(args)
        entry = self._entries.get(key)
        if entry is None:
            sig = self.signature_for(args)
            if sig not in self.dispatcher.overloads:
                self.dispatcher.compile(sig)
            entry = self._entries[key] = self.dispatcher.overloads[sig].entry_point
        return entry(*args)


def any_layout(*names: str):
    """Decorator: compile the arguments ``names`` of a Numba kernel as arrays of any layout (see module)."""

    def wrap(dispatcher) -> AnyLayout:
        return AnyLayout(dispatcher, names)

    return wrap
