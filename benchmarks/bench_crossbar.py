"""Crossbar benchmarks W1 and W2: ffsim's time as a ratio to the ideal numpy computation of the same shape.

W1  ``Crossbar.forward`` vs the ideal float32 ``x @ W``.
W2  ``forward`` + ``pulse_update`` vs the ideal ``x @ W`` + outer product ``x.T @ d``.

Both are measured in this process, interleaved (ideal, ffsim, ideal, ffsim, ...), and the median of the
repeats is reported with the ratio.  Memory: the process's peak RSS and the bytes held by the chip.

Run:  python benchmarks/bench_crossbar.py [--profile pcm] [--repeats 30] [--json out.json]
"""

# ruff: noqa: E402, I001, F401
from __future__ import annotations

import ffsim  # first, before numpy: sets OPENBLAS_THREAD_TIMEOUT and OMP_WAIT_POLICY (see ffsim/_runtime.py)

import argparse
import os
import platform
import resource
import sys
import time

import numpy as np

from ffsim import Crossbar, load_profile


def _nbytes(chip: Crossbar) -> int:
    seen, total = set(), 0
    for v in vars(chip).values():
        arrs = [v] if isinstance(v, np.ndarray) else []
        if hasattr(v, "__dataclass_fields__"):
            arrs = [getattr(v, f) for f in v.__dataclass_fields__ if isinstance(getattr(v, f), np.ndarray)]
        for a in arrs:
            base = a if a.base is None else a.base
            if id(base) not in seen and a.strides != (0,) * a.ndim:
                seen.add(id(base))
                total += a.nbytes
    return total


def _median_pair(f_ideal, f_sim, repeats: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        f_ideal()
        f_sim()
    ti, ts = [], []
    for _ in range(repeats):
        a = time.perf_counter()
        f_ideal()
        b = time.perf_counter()
        f_sim()
        c = time.perf_counter()
        ti.append(b - a)
        ts.append(c - b)
    return float(np.median(ti)), float(np.median(ts))


def run(profile: str = "pcm", n_in: int = 784, n_out: int = 2000, batch: int = 256, repeats: int = 30,
        seed: int = 0, fab_seed: int = 1, lr: float = 0.01) -> dict:
    prof = load_profile(profile)
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((n_in, n_out)) / 3).astype(np.float32)
    # layer inputs as in FF: non-negative (ReLU / pixels); updates: zero-mean, FF-gradient-like scale
    x = np.maximum(rng.standard_normal((batch, n_in)), 0).astype(np.float32)
    d = (0.01 * rng.standard_normal((batch, n_out))).astype(np.float32)
    chip = Crossbar(prof, n_in, n_out, fab_seed=fab_seed, rng=np.random.default_rng(seed + 1), w_max=1.0)
    chip.program(W)

    def ideal_fwd():
        return x @ W

    def sim_fwd():
        return chip.forward(x)

    t_ideal_w1, t_sim_w1 = _median_pair(ideal_fwd, sim_fwd, repeats)

    def ideal_step():
        y = x @ W
        g = x.T @ d
        return y, g

    pulses_before = chip.ops.device_pulses
    n_updates = 0

    def sim_step():
        nonlocal n_updates
        y = chip.forward(x)
        chip.pulse_update(x, d, lr)
        n_updates += 1
        return y

    if prof.update.model != "none" or prof.is_ideal:
        t_ideal_w2, t_sim_w2 = _median_pair(ideal_step, sim_step, repeats)
        pulses_per_cell = (chip.ops.device_pulses - pulses_before) / max(n_updates, 1) / (n_in * n_out)
    else:
        t_ideal_w2 = t_sim_w2 = pulses_per_cell = float("nan")
    return {
        "profile": prof.name,
        "profile_hash": prof.profile_hash,
        "shape": [n_in, n_out],
        "batch": batch,
        "repeats": repeats,
        "lr": lr,
        "seeds": {"seed": seed, "fab_seed": fab_seed},
        "W1_ideal_ms": t_ideal_w1 * 1e3,
        "W1_ffsim_ms": t_sim_w1 * 1e3,
        "W1_ratio": t_sim_w1 / t_ideal_w1,
        "W2_ideal_ms": t_ideal_w2 * 1e3,
        "W2_ffsim_ms": t_sim_w2 * 1e3,
        "W2_ratio": t_sim_w2 / t_ideal_w2,
        "W2_device_pulses_per_cell_per_update": pulses_per_cell,
        "chip_state_MB": _nbytes(chip) / 2**20,
        "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": sys.version.split()[0], "numpy": np.__version__,
                    "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
                    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")},
    }


def stages(profile: str = "pcm", n_in: int = 784, n_out: int = 2000, batch: int = 256, repeats: int = 30,
           seed: int = 0) -> dict:
    """Time the stages of one forward pass separately: DAC, the per-tile BLAS products, the ADC stage."""
    from ffsim.crossbar.periphery import adc_accumulate, dac_convert, zeros_like_view

    prof = load_profile(profile)
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((n_in, n_out)) / 3).astype(np.float32)
    x = np.maximum(rng.standard_normal((batch, n_in)), 0).astype(np.float32)
    chip = Crossbar(prof, n_in, n_out, fab_seed=1, rng=np.random.default_rng(seed + 1))
    chip.program(W)
    chip.forward(x)
    tiles = chip._row_tiles
    T = len(tiles)
    xq, xq2, sc = np.empty_like(x), np.empty_like(x), np.empty(batch, np.float32)
    Z = np.empty((T, batch, n_out), np.float32)
    V = np.empty_like(Z) if chip._S2 is not None else zeros_like_view(Z.shape)
    ZR = np.zeros((T, batch, len(chip._col_tiles)), np.float32)
    out = np.empty((batch, n_out), np.float32)
    a = prof.adc
    lsb = 2 * a.out_bound / (2.0**a.bits - 2) if a.bits > 1 else 1.0
    adc = chip._adc_fwd

    def dac():
        dac_convert(x, prof.dac.noise_management == "abs_max", prof.dac.bits, np.float32(prof.dac.input_bound), True,
                    xq, xq2, sc)

    def gemms():
        for t, (lo, hi) in enumerate(tiles):
            np.matmul(xq[:, lo:hi], chip._W[lo:hi], out=Z[t])
            if chip._S2 is not None:
                np.matmul(xq2[:, lo:hi], chip._S2[lo:hi], out=V[t])

    def adcs():
        adc_accumulate(Z, V, ZR, adc.gain, adc.off, adc.kappa, adc.tanh_kappa, chip._col_tile,
                       chip._S2 is not None or a.noise_std > 0, np.float32(a.noise_std**2), a.bits > 0,
                       np.float32(a.out_bound), np.float32(1 / lsb), np.float32(lsb), bool(np.any(adc.kappa > 0)),
                       sc, np.uint64(7), out)

    dac()
    gemms()  # the ADC stage then converts realistic partial sums
    res = {}
    for name, f in (("dac", dac), ("blas_products", gemms), ("adc_stage", adcs)):
        res[name] = _median_pair(lambda: x @ W, f, repeats)
    return {"profile": profile, "row_tiles": T,
            **{f"{k}_ms": v[1] * 1e3 for k, v in res.items()},
            **{f"{k}_ratio": v[1] / v[0] for k, v in res.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", action="append", help="profile(s) to run (default: pcm)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--markdown", action="store_true", help="also print a markdown table")
    ap.add_argument("--stages", action="store_true", help="time the stages of one forward pass instead")
    args = ap.parse_args()
    if args.stages:
        for p in args.profile or ["pcm"]:
            r = stages(p, repeats=args.repeats)
            print(f"{p}: {r['row_tiles']} row tiles; DAC {r['dac_ms']:.2f} ms ({r['dac_ratio']:.2f}x ideal), "
                  f"BLAS products {r['blas_products_ms']:.2f} ms ({r['blas_products_ratio']:.2f}x), "
                  f"ADC stage {r['adc_stage_ms']:.2f} ms ({r['adc_stage_ratio']:.2f}x)")
        return
    results = [run(p, repeats=args.repeats) for p in (args.profile or ["pcm"])]
    for r in results:
        print(f"{r['profile']:>16}  W1 {r['W1_ffsim_ms']:7.2f} ms / ideal {r['W1_ideal_ms']:5.2f} ms = "
              f"{r['W1_ratio']:4.2f}x   W2 {r['W2_ffsim_ms']:7.2f} ms / ideal {r['W2_ideal_ms']:5.2f} ms = "
              f"{r['W2_ratio']:4.2f}x  ({r['W2_device_pulses_per_cell_per_update']:.3f} pulses/cell/update)  "
              f"chip {r['chip_state_MB']:.0f} MB, peak RSS {r['peak_rss_MB']:.0f} MB")
    if args.markdown:
        print("\n| profile | W1 ffsim (ms) | W1 ideal (ms) | W1 ratio | W2 ffsim (ms) | W2 ideal (ms) | W2 ratio "
              "| pulses/cell/update | chip state (MB) | peak RSS (MB) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            print(f"| {r['profile']} | {r['W1_ffsim_ms']:.2f} | {r['W1_ideal_ms']:.2f} | **{r['W1_ratio']:.2f}×** "
                  f"| {r['W2_ffsim_ms']:.1f} | {r['W2_ideal_ms']:.2f} | **{r['W2_ratio']:.2f}×** "
                  f"| {r['W2_device_pulses_per_cell_per_update']:.2f} | {r['chip_state_MB']:.0f} "
                  f"| {r['peak_rss_MB']:.0f} |")
    if args.json:
        from ffsim.io import write_json_atomic

        write_json_atomic(args.json, results)


if __name__ == "__main__":
    main()
