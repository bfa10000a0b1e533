"""FF training-epoch benchmark: 784-2000x4 (default), batch 100, one epoch of MNIST (600 mini-batches).

Measured in one process:

* ``numpy floor``: only the matrix products an FF epoch needs (per mini-batch and layer: the positive +
  neutral pass, the negative pass, and the weight gradient), in float32 numpy;
* ``ideal``: ffsim's FF in ``ideal`` mode (float weights; everything Hinton's algorithm does);
* ``pcm in-situ`` (and other profile/mode pairs): weights on chips, updates by pulse trains.

Each row reports seconds per epoch (training only, no evaluation), the ratio to the numpy floor and to
ffsim's ideal mode, and the process's peak RSS.

Run:  python benchmarks/bench_ff.py [--layers 2000,2000,2000,2000] [--batches 600] [--case pcm:insitu ...]
"""

# ruff: noqa: E402, I001, F401
from __future__ import annotations

import ffsim  # first, before numpy: sets OPENBLAS_THREAD_TIMEOUT and OMP_WAIT_POLICY (see ffsim/_runtime.py)

import argparse
import resource
import time

import numpy as np

from ffsim.data import load_mnist
from ffsim.ff import FFConfig
from ffsim.ff.trainer import build_model


def numpy_floor(sizes: list[int], batch: int, batches: int, rng: np.random.Generator) -> float:
    pairs = zip(sizes[:-1], sizes[1:], strict=True)
    Ws = [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32) for a, b in pairs]
    x2 = rng.random((2 * batch, sizes[0]), dtype=np.float32)
    t0 = time.perf_counter()
    for _ in range(batches):
        h2, h1 = x2, x2[:batch]
        for W in Ws:
            y2 = h2 @ W  # positive + neutral pass
            y1 = h1 @ W  # negative pass
            _ = np.concatenate([h2[:batch], h1]).T @ np.concatenate([y2[:batch], y1])  # gradient
            h2, h1 = y2, y1
    return time.perf_counter() - t0


def ff_epoch(layers: tuple[int, ...], profile: str, mode: str, batches: int, batch: int, seed: int = 0) -> float:
    ds = load_mnist()
    x = ds.flat(ds.x_train)[: batches * batch]
    y = ds.y_train[: batches * batch].astype(np.int64)
    cfg = FFConfig(layers=layers, epochs=1, batch_size=batch, profile=profile, mode=mode, seed=seed)
    model = build_model(cfg, 784, 10)
    rng = np.random.default_rng([seed, 2])
    model.train_step(x[:batch], y[:batch], rng, 1.0)  # warm up (compilation)
    t0 = time.perf_counter()
    for b in range(batches):
        model.train_step(x[b * batch:(b + 1) * batch], y[b * batch:(b + 1) * batch], rng, 1.0)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="2000,2000,2000,2000")
    ap.add_argument("--batches", type=int, default=600, help="mini-batches (600 = one MNIST epoch)")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--case", action="append", help="PROFILE:MODE rows after ideal (default pcm:insitu)")
    args = ap.parse_args()
    layers = tuple(int(v) for v in args.layers.split(","))
    sizes = [784, *layers]
    floor = numpy_floor(sizes, args.batch_size, args.batches, np.random.default_rng(0))
    rows = [("numpy floor", floor)]
    t_ideal = ff_epoch(layers, "ideal", "ideal", args.batches, args.batch_size)
    rows.append(("ideal (ideal mode)", t_ideal))
    for case in args.case or ["pcm:insitu"]:
        prof, mode = case.split(":")
        rows.append((f"{prof} ({mode})", ff_epoch(layers, prof, mode, args.batches, args.batch_size)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"FF epoch, 784-{'-'.join(map(str, layers))}, batch {args.batch_size}, {args.batches} mini-batches")
    print("| run | s/epoch | vs numpy floor | vs ideal mode |")
    print("|---|---:|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t:.1f} | {t / floor:.2f}× | {t / t_ideal:.2f}× |")
    print(f"peak RSS of the process: {rss:.0f} MB")


if __name__ == "__main__":
    main()
