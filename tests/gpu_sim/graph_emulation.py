"""An emulated CUDA-graph capture for the CUDA simulator (used by ``test_graph.py``).

A stand-in for CuPy (``XP``: numpy arrays of class ``Rec``, a :class:`ffsim.gpu.standin.StandIn`) records
every array operation while a capture is on, and ``EmulatedCapturer`` records the numba-cuda launches too.
Replaying a capture runs the same operations on the same arrays with the same arguments -- what a CUDA
graph does: a captured operation keeps its pointers and scalars, and only the contents of the arrays it
reads may have changed.  As in a real capture, a transfer between host and device, or a scalar read, fails
while a capture is on; so does an operation whose result's size depends on the data (a boolean mask's
gather, ``nonzero``: CuPy reads the size back).  The recorded operations do run during the capture here
(a real capture runs nothing): the capturer saves the model's arrays before and restores them after, so
the capture leaves no trace but the recording.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ffsim.backend import Backend
from ffsim.gpu.standin import Namespace, StandIn, hooked_launches
from ffsim.gpu.standin import raw as _raw

_REC: dict = {"on": None}  # the list being recorded, or None


class CaptureViolation(RuntimeError):
    """What a real stream capture would refuse (a transfer or a host read of a device value)."""


def _replay(entry) -> None:
    if entry[0] == "launch":
        _, real, kernel, grid, block, args = entry
        real(kernel, grid, block, *args)
        return
    _, fn, args, kwargs, result = entry
    r = fn(*_raw(args), **_raw(kwargs))
    if isinstance(r, np.generic):  # a reduction to a scalar: on the device a 0-d array the replay recomputes
        r = np.asarray(r)
    if isinstance(result, Rec) and isinstance(r, np.ndarray) and not np.shares_memory(_raw(result), r):
        np.copyto(_raw(result), r)


_SIZED_BY_DATA = {"nonzero", "flatnonzero", "argwhere", "unique", "compress", "extract"}


def _sized_by_data(name: str, args: tuple) -> bool:
    """An operation whose result's shape depends on array values: CuPy synchronizes to size it (a boolean
    mask's gather, ``nonzero`` and kin, one-argument ``where``), which a stream capture refuses."""
    if name in _SIZED_BY_DATA or (name == "where" and len(args) == 1):
        return True
    if name == "getitem (fancy)":
        keys = args[1] if isinstance(args[1], tuple) else (args[1],)
        return any(isinstance(k, np.ndarray) and k.dtype == np.bool_ for k in keys)
    return False


class Rec(StandIn):
    """A 'device' array: its operations are recorded while a capture is on."""

    METHODS = ("sum", "mean", "max", "min", "any", "all", "argmax", "cumsum", "dot", "std", "var", "fill", "ravel",
               "reshape", "flatten")

    @classmethod
    def _operate(cls, name, fn, args, kwargs, result=True):
        if _REC["on"] is not None and _sized_by_data(name, args):
            raise CaptureViolation(f"{name}: its result's size depends on the data (CuPy reads it back)")
        r = super()._operate(name, fn, args, kwargs, result)
        if _REC["on"] is not None:
            _REC["on"].append(("op", fn, args, kwargs, r if result else None))
        return r

    def _scalar(self, f):
        if _REC["on"] is not None:
            raise CaptureViolation("a device value read on the host during a capture")
        return f(self.view(np.ndarray))


class XP(Namespace):
    ndarray = Rec

    @staticmethod
    def asarray(a, dtype=None):
        if not isinstance(a, Rec):
            if _REC["on"] is not None:
                raise CaptureViolation("an upload during a capture")
            return np.array(a, dtype=dtype, order="C").view(Rec)
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return Rec._operate("astype", np.ndarray.astype, (a, dtype), {})
        return a

    @staticmethod
    def asnumpy(a):
        if _REC["on"] is not None:
            raise CaptureViolation("a download during a capture")
        return np.array(_raw(a))


RECORDING = Backend("gpu", XP(), simulated=True)


def recording_launches():
    """Route ``ffsim.gpu.kernels._launch`` through the recorder (raw arrays to the simulator)."""

    def hook(launch, kernel, grid, block, args):
        if _REC["on"] is not None:
            _REC["on"].append(("launch", launch, kernel, grid, block, tuple(_raw(a) for a in args)))
    return hooked_launches(hook)


class EmulatedCapturer:
    """``ffsim.gpu.graph``'s capturer interface on the recorder: a 'graph' is the list of recorded entries."""

    def __init__(self):
        self.launches = 0
        self.downloads = 0

    @contextlib.contextmanager
    def capturing(self, protect):
        saved = []
        for a in protect:
            if isinstance(a, np.ndarray):
                saved.append((a, np.array(_raw(a))))
            elif hasattr(a, "copy_to_host"):
                saved.append((a, a.copy_to_host()))
        ops: list = []
        box: dict = {}
        _REC["on"] = ops
        try:
            yield box
        finally:
            _REC["on"] = None
            for a, v in saved:
                if isinstance(a, np.ndarray):
                    np.copyto(_raw(a), v)
                else:
                    a.copy_to_device(v)
        box["graph"] = ops

    @contextlib.contextmanager
    def on_stream(self):
        yield

    def upload(self, dev, host):
        np.copyto(_raw(dev), host)
        return host.copy()

    def copy(self, dst, src) -> None:
        np.copyto(_raw(dst), _raw(src))

    def launch(self, graph) -> None:
        self.launches += 1
        for entry in graph:
            _replay(entry)

    def download(self, a, keep=()):
        # in stream order: the copy is taken now (after the replay, before anything queued later)
        out = np.array(_raw(a))
        self.downloads += 1
        return lambda: out
