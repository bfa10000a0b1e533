"""What TF32 products for the noise and coincidence GEMMs would change in an FF training, on the CPU.

On a GPU the products of a ``pcm`` in-situ step are ~1 ms of its GPU time (BENCHMARKS.md), FP32 without
tensor cores.  Two kinds of product only set the parameters of random draws: the read-noise variance
(x_q² · S2, the variance of each output's read noise) and the pulse update's expected coincidences
(e_tot = AᵀC and e_net, the Poisson means of the pulse counts).  With TF32 tensor cores (``FFSIM_GPU_TF32=1``)
their inputs keep 10 of float32's 23 mantissa bits.  This script trains the same network twice on the
CPU backend with the same seeds -- once as is, once with the inputs of those products cut to TF32 (the low
13 mantissa bits dropped: truncation, the larger of the hardware's possible errors) -- and a third time
with another seed, for the spread that the seed alone gives.  The signal products (x_q · W) are never
changed.

    python benchmarks/tf32_effect.py --profile ecram --mode insitu --layers 500,500,500 --epochs 2
    python benchmarks/tf32_effect.py --profile pcm --mode hybrid --layers 500,500,500 --epochs 2
"""

# ruff: noqa: E402, I001
from __future__ import annotations

import ffsim  # noqa: F401  (before numpy)

import argparse
import json
import tempfile
import time

import numpy as np

from ffsim.backend import select_backend, set_default_backend
from ffsim.crossbar import Crossbar
from ffsim.ff import FFConfig
from ffsim.ff.trainer import train


def to_tf32(a: np.ndarray) -> None:
    """Cut float32 ``a`` to TF32 in place (10 mantissa bits kept, the rest dropped)."""
    u = a.view(np.uint32)
    u &= np.uint32(0xFFFFE000)


def tf32_on() -> tuple:
    """Route the noise-variance and coincidence products' inputs through :func:`to_tf32` (CPU backend)."""
    real_tiles = Crossbar._tile_gemms
    k = select_backend("cpu").kernels
    real_factors = k.pulse_factors

    def tile_gemms(self, x, M, out, in_tiles, noise=False):
        if noise:  # the read-noise variance (what FFSIM_GPU_TF32 puts on tensor cores)
            x, M = np.array(x, dtype=np.float32), np.array(M, dtype=np.float32)
            to_tf32(x)
            to_tf32(M)
        return real_tiles(self, x, M, out, in_tiles, noise=noise)

    def pulse_factors(X, D, coef, A, As, C, Cs):  # the coincidence products' inputs
        real_factors(X, D, coef, A, As, C, Cs)
        for a in (A, As, C, Cs):
            to_tf32(a)

    Crossbar._tile_gemms = tile_gemms
    k.pulse_factors = pulse_factors
    return real_tiles, real_factors


def tf32_off(saved) -> None:
    Crossbar._tile_gemms = saved[0]
    select_backend("cpu").kernels.pulse_factors = saved[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="ecram")
    ap.add_argument("--mode", default="insitu", help="insitu (pulse updates: the coincidences) or hybrid "
                    "(reprogrammed cells; with a read-noisy profile such as pcm: the noise variance)")
    ap.add_argument("--layers", default="500,500,500")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-cases", type=int, default=30000)
    ap.add_argument("--test-cases", type=int, default=10000)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    layers = tuple(int(v) for v in args.layers.split(","))
    set_default_backend("cpu")
    print("| products | seed | test error (goodness) | test error (softmax) | device pulses |")
    print("|---|---:|---:|---:|---:|")
    rows = []
    for label, seed, tf32 in (("fp32", 0, False), ("tf32 noise/coincidence inputs", 0, True), ("fp32", 1, False)):
        cfg = FFConfig(layers=layers, epochs=args.epochs, batch_size=100, profile=args.profile, mode=args.mode,
                       seed=seed)
        saved = tf32_on() if tf32 else None
        t0 = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory() as out:
                r = train(cfg, out, progress=False, train_cases=args.train_cases, test_cases=args.test_cases,
                          log=lambda m: None)
        finally:
            if saved:
                tf32_off(saved)
        f = r["final"]
        rows.append({"products": label, "seed": seed, "test_error_goodness": f["test_error_goodness"],
                     "test_error_softmax": f["test_error_softmax"], "seconds": time.perf_counter() - t0,
                     "device_pulses": r["ops_total"]["device_pulses"]})
        print(f"| {label} | {seed} | {100 * f['test_error_goodness']:.2f} % | {100 * f['test_error_softmax']:.2f} % | "
              f"{r['ops_total']['device_pulses']:.4g} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"profile": args.profile, "mode": args.mode, "layers": layers, "epochs": args.epochs,
                       "train_cases": args.train_cases, "test_cases": args.test_cases, "runs": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
