"""How sparse an FF step's in-situ updates are: per layer and mini-batch, the share of cells that draw a
pulse and the pulses per pulsed cell (CPU backend; the GPU draws the same numbers).

The GPU's update kernels are shaped by this (``ffsim.gpu.kernels.COMPACT``: a warp with one busy cell runs as
long as that cell).  Each update's expected coincidences ``Etot`` give the expected share of pulsed cells
``mean(1 - exp(-Etot))``; the pulses are the update's device pulses.

    python benchmarks/update_density.py --profile pcm --batches 4

The last line compares the layers' longest pulse chains one after the other (one stream) and side by side
(each layer's update on a stream of its own, ``FFSIM_GPU_STREAMS=1``).
"""

# ruff: noqa: E402, I001, F401
from __future__ import annotations

import ffsim  # first, before numpy (see ffsim/_runtime.py)

import argparse

import numpy as np

import ffsim.devices.pulse as pulse
from ffsim.data import load_mnist
from ffsim.ff import FFConfig
from ffsim.ff.trainer import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="pcm")
    ap.add_argument("--layers", default="2000,2000,2000,2000")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=100)
    args = ap.parse_args()
    rows = []
    real = pulse.pulse_aggregate

    def counted(Etot, *rest):
        n = real(Etot, *rest)
        lam = Etot.astype(np.float64)
        pulsed = float((1.0 - np.exp(-np.maximum(lam, 0.0))).mean())
        rows.append((Etot.shape, pulsed, int(n), n / max(pulsed * Etot.size, 1e-300), float(lam.max())))
        return n

    layers = tuple(int(v) for v in args.layers.split(","))
    cfg = FFConfig(layers=layers, epochs=1, batch_size=args.batch_size, profile=args.profile, mode="insitu", seed=0)
    model = build_model(cfg, 784, 10)
    for layer in model.layers:
        layer.store.chip._k.pulse_aggregate = counted  # (the chip's kernel namespace, CPU backend)
    ds = load_mnist()
    B = args.batch_size
    x = ds.flat(ds.x_train)[: args.batches * B]
    y = ds.y_train[: args.batches * B].astype(np.int64)
    rng = np.random.default_rng([0, 2])
    print("| mini-batch | layer | cells | pulsed cells (expected share) | device pulses | pulses per pulsed cell | "
          "max expected pulses in a cell |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    chains = []  # per mini-batch: (Σ over layers of the layer's largest expected count, the largest of all)
    for b in range(args.batches):
        rows.clear()
        model.train_step(x[b * B:(b + 1) * B], y[b * B:(b + 1) * B], rng, 1.0)
        for k, (shape, share, n, per, mx) in enumerate(rows):
            print(f"| {b + 1} | {k + 1} | {shape[0]}×{shape[1]} | {100 * share:.2f} % | {n} | {per:.2f} | {mx:.1f} |")
        chains.append((sum(r[4] for r in rows), max((r[4] for r in rows), default=0.0)))
    # A layer's update lasts as long as its longest chain of dependent pulses: on one stream the layers'
    # longest chains add up, side by side (ffsim.gpu.streams) the step waits for the longest of all.
    tot, top = sum(c[0] for c in chains), sum(c[1] for c in chains)
    print(f"\nlongest pulse chains (expected counts), summed over the {len(chains)} mini-batches: layers one after "
          f"the other {tot:.0f}, side by side {top:.0f} ({tot / max(top, 1e-300):.2f}x)")


if __name__ == "__main__":
    main()
