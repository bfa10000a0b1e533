"""A pytest plugin that records every Numba compilation of a test run: which kernel, for which argument types,
how long (Numba's ``numba:compile`` events; a kernel's time includes what it compiles in).

It finds the compilations that a cold cache makes the test suite pay for, e.g. one kernel compiled for
several layouts of the same arrays (BENCHMARKS.md, "Numba compilation").  Clear the cache first:

    find ffsim tests -name '*.nbi' -o -name '*.nbc' | xargs rm -f
    PYTHONPATH=benchmarks python -m pytest -q -p compile_times -p no:cacheprovider \\
        --deselect tests/test_gpu_backend.py::test_cuda_twins_in_the_simulator

The report (total, then each function's compilations, slowest first) goes to ``$COMPILE_TIMES_OUT``
(default ``compile_times.txt``).  A CUDA-simulator subprocess is not recorded: hence the deselection.
"""

from __future__ import annotations

import collections
import os
import time

import numba.core.event as ev

_records: list[tuple[str, str, float]] = []


class _Listener(ev.Listener):
    def __init__(self):
        self._start: dict[tuple[int, str], float] = {}

    @staticmethod
    def _key(event) -> tuple[int, str]:
        return id(event.data["dispatcher"]), str(event.data["args"])

    def on_start(self, event):
        self._start[self._key(event)] = time.perf_counter()

    def on_end(self, event):
        t0 = self._start.pop(self._key(event), None)
        if t0 is None:
            return
        d = event.data["dispatcher"]
        py = getattr(d, "py_func", None)
        name = f"{py.__module__}.{py.__qualname__}" if py is not None else str(d)
        _records.append((name, str(event.data["args"]), time.perf_counter() - t0))


_listener = _Listener()


def pytest_configure(config):
    ev.register("numba:compile", _listener)


def pytest_unconfigure(config):
    ev.unregister("numba:compile", _listener)


def pytest_sessionfinish(session, exitstatus):
    by_name: dict[str, list[tuple[float, str]]] = collections.defaultdict(list)
    for name, args, t in _records:
        by_name[name].append((t, args))
    rows = sorted(by_name.items(), key=lambda kv: -sum(t for t, _ in kv[1]))
    lines = [f"total compile {sum(t for _, _, t in _records):.1f} s, {len(_records)} compilations"]
    for name, calls in rows:
        lines.append(f"{sum(t for t, _ in calls):7.1f} s {len(calls):3d}x {name}")
        lines += [f"      {t:6.1f} s {args}" for t, args in sorted(calls, reverse=True)]
    path = os.environ.get("COMPILE_TIMES_OUT", "compile_times.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
