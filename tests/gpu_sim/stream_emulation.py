"""CUDA streams and events emulated on the host, with a happens-before check of every device array access.

The GPU backend's work on several streams (``ffsim.gpu.streams``) is correct only if every operation reads
arrays whose last write is ordered before it (by stream order, an event waited for, or a host
synchronization that the issuing host saw), and writes only over reads so ordered.  Run on one thread
without a GPU, everything happens in issue order and a missing wait goes unseen; here each stream keeps a
vector clock, each operation is stamped with its stream's clock, and each device array (a :class:`Tracked`
stand-in, by the memory that owns it) remembers its last write and the reads since: an access that is not
ordered after them raises :class:`Race`.

:class:`Emulation` stands in for ``cupy.cuda`` (``Stream``, ``Event``, ``get_current_stream``, ``Device``);
:data:`TRACKED` is a GPU backend (the kernels in the CUDA simulator) whose arrays are tracked, and
:func:`track_launches` treats every array a kernel is given as read and written on the current stream.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ffsim.backend import Backend
from ffsim.gpu.standin import Namespace, StandIn, hooked_launches, raw

__all__ = ["EMU", "TRACKED", "Emulation", "Race", "Tracked", "track_launches"]


class Race(AssertionError):
    """An array access not ordered after an earlier conflicting one."""


class _Stream:
    def __init__(self, emu: Emulation, name: str):
        self.emu, self.name = emu, name
        self.vc: dict[str, int] = {}
        self.ops = 0

    def tick(self) -> tuple[str, int]:
        for k, v in self.emu.host.items():  # issued after the host saw that work complete
            if self.vc.get(k, 0) < v:
                self.vc[k] = v
        self.vc[self.name] = self.vc.get(self.name, 0) + 1
        self.ops += 1
        return self.name, self.vc[self.name]

    def sees(self, stamp: tuple[str, int]) -> bool:
        return self.vc.get(stamp[0], 0) >= stamp[1] or self.emu.host.get(stamp[0], 0) >= stamp[1]

    def record(self, event=None):
        event = event if event is not None else _Event()
        self.tick()
        event.vc = dict(self.vc)
        return event

    def wait_event(self, event) -> None:
        for k, v in event.vc.items():
            if self.vc.get(k, 0) < v:
                self.vc[k] = v

    def synchronize(self) -> None:
        for k, v in self.vc.items():
            if self.emu.host.get(k, 0) < v:
                self.emu.host[k] = v

    def __enter__(self):
        self.emu.current.append(self)
        return self

    def __exit__(self, *exc):
        self.emu.current.pop()


class _Event:
    def __init__(self, block: bool = False, disable_timing: bool = False, interprocess: bool = False):
        self.vc: dict[str, int] = {}


class Emulation:
    """``cupy.cuda``'s stream API on the host, with the clocks of :class:`Race` checks."""

    def __init__(self):
        self.host: dict[str, int] = {}  # what the host has seen complete
        self.null = _Stream(self, "null")
        self.current = [self.null]
        self.made: list[_Stream] = []
        self.Event = _Event
        self.meta: dict[int, tuple[np.ndarray, dict]] = {}  # per owning array: its last write, the reads since

    def Stream(self, non_blocking: bool = False):  # noqa: N802 - cupy.cuda.Stream
        s = _Stream(self, f"s{len(self.made) + 1}")
        self.made.append(s)
        return s

    def get_current_stream(self):
        return self.current[-1]

    @staticmethod
    def Device():  # noqa: N802 - cupy.cuda.Device
        return SimpleNamespace(id=0)

    # --- the checks ---
    def access(self, reads, writes) -> None:
        """One operation on the current stream reading ``reads`` and writing ``writes`` (arrays)."""
        s = self.current[-1]
        stamp = s.tick()
        for a in reads:
            m = self._meta(a)
            if m["w"] is not None and not s.sees(m["w"]):
                raise Race(f"read on {s.name} of an array written on {m['w'][0]} (op {m['w'][1]}) unordered")
        for a in writes:
            m = self._meta(a)
            for prev in ([m["w"]] if m["w"] is not None else []) + m["r"]:
                if not s.sees(prev):
                    raise Race(f"write on {s.name} over an access on {prev[0]} (op {prev[1]}) unordered")
        for a in reads:
            self._meta(a)["r"].append(stamp)
        for a in writes:
            m = self._meta(a)
            m["w"], m["r"] = stamp, []

    def _meta(self, a) -> dict:
        o = _owner(a)
        e = self.meta.get(id(o))
        if e is None or e[0] is not o:
            e = self.meta[id(o)] = (o, {"w": None, "r": []})  # (the owner kept: its id stays its own)
        return e[1]

    def host_read(self, a) -> None:
        """The host reads ``a`` (CuPy copies on the current stream and waits for it)."""
        self.access([a], [])
        self.current[-1].synchronize()


EMU_BOX: list[Emulation] = []  # the emulation in use (set by the tests)


def EMU() -> Emulation | None:  # noqa: N802
    return EMU_BOX[-1] if EMU_BOX else None


def _owner(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _arrays(objs) -> list:
    out = []
    for a in objs:
        if isinstance(a, Tracked):
            out.append(a)
        elif isinstance(a, tuple | list):
            out += _arrays(a)
        elif isinstance(a, dict):
            out += _arrays(list(a.values()))
    return out


class Tracked(StandIn):
    """A 'device' array whose every access is checked by the emulation in use (none: unchecked)."""

    METHODS = ("sum", "mean", "max", "min", "any", "all", "argmax", "cumsum", "dot", "std", "var")

    @classmethod
    def _operate(cls, name, fn, args, kwargs, result=True):
        emu = EMU()
        if emu is not None:
            o = kwargs.get("out")
            outs = list(o) if isinstance(o, tuple | list) else [] if o is None else [o]
            if not result:  # an assignment: its first argument is written
                outs.append(args[0])
            reads = [a for a in _arrays(list(args) + list(kwargs.values())) if not any(a is o for o in outs)]
            emu.access(reads, _arrays(outs))
        r = super()._operate(name, fn, args, kwargs, result)
        if emu is not None and result:
            ins = {id(_owner(a)) for a in _arrays(list(args) + list(kwargs.values()))}
            emu.access([], [a for a in _arrays([r]) if id(_owner(a)) not in ins])  # (a view writes nothing)
        return r

    def _scalar(self, f):
        emu = EMU()
        if emu is not None:
            emu.host_read(self)
        return f(self.view(np.ndarray))


class _XP(Namespace):
    ndarray = Tracked

    @staticmethod
    def asarray(a, dtype=None):
        if isinstance(a, Tracked):
            if dtype is None or np.dtype(dtype) == a.dtype:
                return a
            return a.astype(dtype)
        r = np.array(raw(a), dtype=dtype, order="C").view(Tracked)
        emu = EMU()
        if emu is not None:
            emu.access([], [r])
        return r

    @staticmethod
    def asnumpy(a):
        emu = EMU()
        if emu is not None and isinstance(a, Tracked):
            emu.host_read(a)
        return np.array(raw(a))


TRACKED = Backend("gpu", _XP(), simulated=True)


def track_launches():
    """Every kernel launch reads and writes each array it is given, on the current stream."""

    def hook(launch, kernel, grid, block, args):
        emu = EMU()
        if emu is not None:
            arrs = _arrays(args)
            emu.access(arrs, arrs)
    return hooked_launches(hook)
