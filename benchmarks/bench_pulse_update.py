"""Time one in-situ pulse update of a 784 x 2000 chip (batch 100) per profile and pulse mode, median of 5.

    python benchmarks/bench_pulse_update.py

The chip is programmed with N(0, 0.3) weights, x ~ N(0, 1), d ~ N(0, 0.1), lr 0.05; one untimed update
first (it compiles the kernels where the cache is cold).  Used for before/after comparisons of the
update kernels in one process on one machine (BENCHMARKS.md, "Numba compilation").
"""

# ruff: noqa: I001, F401
import ffsim  # first, before numpy: sets OPENBLAS_THREAD_TIMEOUT and OMP_WAIT_POLICY (see ffsim/_runtime.py)

import time

import numpy as np

from ffsim import Crossbar

CASES = (("pcm", "aggregate"), ("ecram", "aggregate"), ("pcm", "exact"), ("high-variability", "aggregate"),
         ("rram-hfo2", "aggregate"))


def main() -> None:
    out = []
    for prof, mode in CASES:
        r = np.random.default_rng(0)
        c = Crossbar(prof, 784, 2000, fab_seed=1, rng=2, pulse_mode=mode)
        c.program(r.normal(0, 0.3, (784, 2000)))
        x = r.normal(0, 1, (100, 784)).astype(np.float32)
        d = r.normal(0, 0.1, (100, 2000)).astype(np.float32)
        c.pulse_update(x, d, 0.05)
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            c.pulse_update(x, d, 0.05)
            ts.append(time.perf_counter() - t0)
        out.append(f"{prof}/{mode} {1e3 * np.median(ts):.0f} ms")
    print("; ".join(out))


if __name__ == "__main__":
    main()
