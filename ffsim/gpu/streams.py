"""Independent device work side by side: the chips of an FF step update on streams of their own
(``FFSIM_GPU_STREAMS=1``; off by default until BENCHMARKS.md has its figure).

Why: a pulse update's time on the GPU is set by its busiest cell.  A cell's pulses are applied one after
the other (each pulse's step depends on the state the last one left), and in an FF step on ``pcm`` one cell
of a layer draws up to ~1200 of them while most cells draw none (``benchmarks/update_density.py``), so the
update kernel runs for as long as that one thread's chain of dependent float64 steps while most of the GPU
idles.  On one stream the layers' updates run one after the other and their longest chains add up; the
layers' updates do not depend on each other, so on a stream each they overlap, and an FF step waits for
the longest chain of all layers instead of the sum of each layer's longest.

How: :func:`lanes` forks: an event recorded on the current stream, which every lane's stream waits for
before its first operation (whatever was issued before, the lanes see).  Work issued inside ``with
lane(k):`` goes to lane k's stream (CuPy's current stream there; ffsim's kernel launches and direct
cuBLAS calls follow it).  Leaving :func:`lanes` joins: the current stream waits for an event recorded on
every lane, so whatever is issued afterwards sees the lanes' results.  The streams are non-blocking (no
implicit ordering with the legacy default stream), kept per device and thread and reused.  Inside a
CUDA-graph capture (``ffsim.gpu.graph``), the same fork and join make parallel branches of the graph.

Memory: CuPy's pool is stream-aware (a block freed by a lane is handed out again on that lane only, in
its order), so a lane's temporaries are safe; what a lane reads that was made before the fork must stay
referenced until the join (:meth:`ffsim.crossbar.Crossbar.pulse_updates` holds its plans until then).

Shared counters: the per-site device counters of ``ffsim.gpu.kernels`` (``_Counter``: exact updates, refreshes
with IR drop) serve every chip.  On lanes they stay correct because each such count is read back (a wait on
that lane's stream) before the host issues the next lane's work, so no two lanes add to one at once.

Without a GPU, ``tests/gpu_sim/test_streams.py`` runs the lanes on an emulation of CUDA streams and events
that checks every operation's arrays against a happens-before order (vector clocks): a read of an array
whose last write is not ordered before it, or a write over an unordered read, raises.
"""

from __future__ import annotations

import contextlib
import os
import threading

__all__ = ["ENABLED", "lanes"]

ENABLED = os.environ.get("FFSIM_GPU_STREAMS", "0") == "1"
API = None  # the CUDA stream API (cupy.cuda), imported on first use; the tests put an emulation here
_local = threading.local()


def _api():
    global API
    if API is None:
        import cupy.cuda

        API = cupy.cuda
    return API


def wanted(backend, n: int) -> bool:
    """Whether ``n`` independent pieces of work on ``backend`` go on lanes: enabled, at least two, on a real
    GPU (or on the CUDA simulator with an emulated stream API installed, for the tests)."""
    if not ENABLED or n < 2 or backend is None or not backend.is_gpu:
        return False
    return not backend.simulated or API is not None


def _streams(api, n: int) -> list:
    dev = api.Device().id
    pool = _local.__dict__.setdefault("streams", {}).setdefault(dev, [])
    while len(pool) < n:
        pool.append(api.Stream(non_blocking=True))
    return pool[:n]


@contextlib.contextmanager
def lanes(n: int):
    """Fork ``n`` lanes off the current stream; yields ``lane(k)``, a context manager that makes lane k's
    stream current.  Joins on exit, also when the work inside raised (what was queued still runs)."""
    api = _api()
    main = api.get_current_stream()
    fork = api.Event(block=False, disable_timing=True)
    main.record(fork)
    streams = _streams(api, n)
    for s in streams:
        s.wait_event(fork)

    def lane(k: int):
        return streams[k]

    try:
        yield lane
    finally:
        for s in streams:
            done = api.Event(block=False, disable_timing=True)
            s.record(done)
            main.wait_event(done)
