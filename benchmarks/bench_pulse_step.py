"""The CPU cost of one device pulse: the step kernel alone, without the update around it.

    python benchmarks/bench_pulse_step.py [--cells 100000] [--pulses 1000]

Each thread runs chains of ``--pulses`` pulses on one cell (the same ``_step_device`` the update kernels
call, with its noise word), for ``--cells`` cells, with every pulse up or with each pulse's direction
drawn (half down), one cell at a time or eight cells interleaved; and, for scale, ``math.exp`` alone on
independent arguments.  Prints ns per pulse on all threads.
"""

# ruff: noqa: I001, F401
import ffsim  # first, before numpy: sets OPENBLAS_THREAD_TIMEOUT and OMP_WAIT_POLICY (see ffsim/_runtime.py)

import argparse
import math
import time

import numpy as np
from numba import njit, prange

from ffsim.devices.physics import P_SMAX, P_SMIN, update_params
from ffsim.devices.pulse import _M32, _step_device
from ffsim.devices.rng import mix64, word_at
from ffsim.profiles import load_profile

_HALF = np.float32(0.5)
_DW = np.float32(0.01)
_ONE = np.float32(1.0)


@njit(parallel=True, error_model="numpy")
def chains(prm, R, cells, n, pu, lanes):
    tot = 0.0
    for c0 in prange(cells // lanes):
        a = np.full(lanes, _HALF, dtype=np.float32)
        ck = np.empty(lanes, dtype=np.uint64)
        for m in range(lanes):
            ck[m] = mix64(np.uint64(c0 * lanes + m))
        for k in range(n):
            for m in range(lanes):
                w = word_at(ck[m], np.uint64(k))
                d = 1 if np.float64(w >> np.uint64(32)) * (1.0 / 4294967296.0) < pu else -1
                a[m] = np.float32(_step_device(prm, R, a[m], d, _DW, _DW, _HALF, _HALF, _ONE, ck[m], w & _M32))
        tot += a.sum()
    return tot


@njit(parallel=True, error_model="numpy")
def exps(cells, n):
    tot = 0.0
    for c in prange(cells):
        acc = 0.0
        x = 0.001 * c
        for k in range(n):
            acc += math.exp(x + k * 1e-6)
        tot += acc
    return tot


def _ns(f, *args) -> float:
    f(*args[:-4], 16, 4, *args[-2:]) if f is chains else f(16, 4)
    t0 = time.perf_counter()
    f(*args)
    return (time.perf_counter() - t0) / (args[-4] * args[-3] if f is chains else args[0] * args[1]) * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=100000)
    ap.add_argument("--pulses", type=int, default=1000)
    ap.add_argument("--profile", action="append", help="default: pcm, rram-hfo2, ecram")
    args = ap.parse_args()
    print(f"math.exp alone: {_ns(exps, args.cells, args.pulses):.2f} ns per call")
    for name in args.profile or ("pcm", "rram-hfo2", "ecram"):
        prm = update_params(load_profile(name))
        R = prm[P_SMAX] - prm[P_SMIN]
        row = []
        for lanes in (1, 8):
            for pu, label in ((1.0, "all up"), (0.5, "half down")):
                row.append(f"{lanes} cell(s), {label}: {_ns(chains, prm, R, args.cells, args.pulses, pu, lanes):.2f}")
        print(f"{name} ns per pulse: " + "; ".join(row))


if __name__ == "__main__":
    main()
