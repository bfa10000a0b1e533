"""Time one in-situ pulse update of a 784 x 2000 chip (batch 100) per profile and pulse mode, median of 5.

    python benchmarks/bench_pulse_update.py [--case PROFILE:MODE ...]

Prints, per case, the update's time, its device pulses and the time per device pulse.

The chip is programmed with N(0, 0.3) weights, x ~ N(0, 1), d ~ N(0, 0.1), lr 0.05; one untimed update
first (it compiles the kernels where the cache is cold).  Used for before/after comparisons of the
update kernels in one process on one machine (BENCHMARKS.md, "Numba compilation").
"""

# ruff: noqa: I001, F401
import ffsim  # first, before numpy: sets OPENBLAS_THREAD_TIMEOUT and OMP_WAIT_POLICY (see ffsim/_runtime.py)

import argparse
import time

import numpy as np

from ffsim import Crossbar

CASES = (("pcm", "aggregate"), ("ecram", "aggregate"), ("pcm", "exact"), ("high-variability", "aggregate"),
         ("rram-hfo2", "aggregate"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", help="PROFILE:MODE (default: the five cases of CASES)")
    args = ap.parse_args()
    cases = [tuple(c.split(":")) for c in args.case] if args.case else CASES
    out = []
    for prof, mode in cases:
        r = np.random.default_rng(0)
        c = Crossbar(prof, 784, 2000, fab_seed=1, rng=2, pulse_mode=mode)
        c.program(r.normal(0, 0.3, (784, 2000)))
        x = r.normal(0, 1, (100, 784)).astype(np.float32)
        d = r.normal(0, 0.1, (100, 2000)).astype(np.float32)
        c.pulse_update(x, d, 0.05)
        ts, pulses = [], []
        for _ in range(5):
            p0 = c.ops.device_pulses
            t0 = time.perf_counter()
            c.pulse_update(x, d, 0.05)
            ts.append(time.perf_counter() - t0)
            pulses.append(c.ops.device_pulses - p0)
        t, n = float(np.median(ts)), float(np.median(pulses))
        out.append(f"{prof}/{mode} {1e3 * t:.0f} ms, {n / 1e6:.1f} M pulses, {1e9 * t / max(n, 1):.1f} ns/pulse")
    print("; ".join(out))


if __name__ == "__main__":
    main()
