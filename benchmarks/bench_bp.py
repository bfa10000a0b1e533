"""BP epoch benchmark: the 784-256-128-10 MLP trained in-situ with batch 64 (aihwkit's comparison network).

For each profile, one epoch of MNIST (937 mini-batches of 64) of backprop in ``insitu`` mode (forward,
transposed reads, pulse updates on the chips) against the same network's ``ideal`` mode measured in the
same process.  Target: in-situ ≤ 4× ideal on every shipped profile.  (aihwkit 1.2 on this kind of
machine: 20–25 s per epoch for ConstantStep, ReRam and ECRAM presets, 65–85 s for its PCM preset,
against about 1 s for digital torch.)

Run:  python benchmarks/bench_bp.py [--batches 937] [--profile pcm ...]
"""

# ruff: noqa: E402, I001, F401
from __future__ import annotations

import ffsim  # first, before numpy: thread settings (see ffsim/_runtime.py)

import argparse
import time

import numpy as np

from ffsim.data import load_mnist
from ffsim.ff import FFConfig
from ffsim.ff.trainer import build_model

PROFILES = ("ideal", "digital-int8", "pcm", "rram-hfo2", "ecram", "high-variability")


def epoch_time(profile: str, mode: str, batches: int, batch: int = 64) -> tuple[float, float]:
    ds = load_mnist()
    x, y = ds.flat(ds.x_train)[: batches * batch], ds.y_train[: batches * batch].astype(np.int64)
    cfg = FFConfig(model="bp", layers=(256, 128), profile=profile, mode=mode, batch_size=batch)
    model = build_model(cfg, 784, 10)
    rng = np.random.default_rng(0)
    model.train_step(x[:batch], y[:batch], rng, 1.0)  # compile
    t0 = time.perf_counter()
    for b in range(batches):
        model.train_step(x[b * batch:(b + 1) * batch], y[b * batch:(b + 1) * batch], rng, 1.0)
    dt = time.perf_counter() - t0
    ops = model.ops()
    return dt, ops.device_pulses / max(batches, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=937)
    ap.add_argument("--profile", action="append")
    args = ap.parse_args()
    t_ideal, _ = epoch_time("ideal", "ideal", args.batches)
    print(f"BP 784-256-128-10, batch 64, {args.batches} mini-batches")
    print("| profile | mode | s/epoch | vs ideal mode | device pulses per mini-batch |")
    print("|---|---|---:|---:|---:|")
    print(f"| ideal | ideal | {t_ideal:.2f} | 1.00× | 0 |")
    for prof in args.profile or PROFILES:
        t, pulses = epoch_time(prof, "insitu", args.batches)
        print(f"| {prof} | insitu | {t:.2f} | {t / t_ideal:.2f}× | {pulses:.0f} |")


if __name__ == "__main__":
    main()
