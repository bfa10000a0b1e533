"""Spiking evaluation benchmark: MNIST test images x 10 labels on Brian2 (cython), one-layer and chained.

For the trained ``ideal-3x500`` network (784-500-500-500) and its first layer alone (784-500, scored from
layer 0), measured in one process:

* ``compile``: the first Brian2 run of one batch (``--batch`` images x 10 labels) in an empty Cython cache
  (a fresh temporary ``FFSIM_CACHE_DIR``), minus the same run again with the code cached: the one-off cost
  of generating and compiling the simulation code;
* ``spiking``: :func:`ffsim.spiking.evaluate_spiking` of ``--images`` test images x 10 labels with the code
  cached (encoding, Brian2 build and run, counting; the analog scores it also computes are included);
* ``numpy analog``: the network's own goodness evaluation of the same images (``goodness_scores``: ten
  float32 numpy forward passes), the ideal computation that the spiking twin replaces.

Each row reports seconds, seconds extrapolated to the full test set (10 000 images; "extrapolated" when
fewer were run), and the ratio spiking / numpy analog measured in the same run.

Run:  python benchmarks/bench_spiking.py [--images 10000] [--tau-ms 1] [--drive 0.25] [--tsyn-ratio 0.2]
"""

# ruff: noqa: E402, I001, F401
from __future__ import annotations

import ffsim  # first, before numpy: thread settings (see ffsim/_runtime.py)

import argparse
import copy
import os
import resource
import tempfile
import time

import numpy as np

from ffsim.data import load_dataset
from ffsim.ff.trainer import load_run
from ffsim.spiking import SpikingConfig, evaluate_spiking
from ffsim.spiking.coincidence import CACHE_DIR_ENV


def one_layer(net):
    one = copy.copy(net)
    one.layers = net.layers[:1]
    one.head_from = 0
    return one


def analog_s(model, x: np.ndarray) -> float:
    t0 = time.perf_counter()
    for a in range(0, len(x), 1000):
        model.goodness_scores(x[a:a + 1000])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="experiments/results/ideal-3x500")
    ap.add_argument("--images", type=int, default=10000, help="test images (x 10 labels); 10000 = the full set")
    ap.add_argument("--batch", type=int, default=500, help="images per Brian2 run")
    ap.add_argument("--tau-ms", type=float, default=1.0, help="coincidence window (membrane tau), ms")
    ap.add_argument("--tsyn-ratio", type=float, default=0.2, help="tau_syn / tau")
    ap.add_argument("--drive", type=float, default=0.25, help="threshold_drive, one-layer network")
    ap.add_argument("--chain-drive", type=float, default=0.25, help="threshold_drive, chained network")
    ap.add_argument("--nets", default="one-layer,chained")
    args = ap.parse_args()
    _, net, _ = load_run(args.run)
    _, _, x, y = load_dataset("mnist").arrays(1, args.images)
    scale = 10000 / len(x)
    tag = "" if len(x) == 10000 else f" (extrapolated from {len(x)})"
    print(f"Spiking evaluation, {args.run}, {len(x)} MNIST test images x 10 labels, cython, tau {args.tau_ms} ms, "
          f"tau_syn {args.tsyn_ratio * args.tau_ms:g} ms, batch {args.batch} images, {os.cpu_count()} CPUs")
    print("| network | compile s | spiking s | spiking s / 10k images | numpy analog s | ratio spiking / numpy "
          "| spiking error | analog error |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    old = os.environ.get(CACHE_DIR_ENV)
    for name in args.nets.split(","):
        model = one_layer(net) if name == "one-layer" else net
        drive = args.drive if name == "one-layer" else args.chain_drive
        cfg = SpikingConfig(tau_s=args.tau_ms * 1e-3, tau_syn_s=args.tsyn_ratio * args.tau_ms * 1e-3,
                            threshold_drive=drive, codegen_target="cython", batch_images=args.batch)
        warm = x[:args.batch]
        with tempfile.TemporaryDirectory(prefix="ffsim-bench-") as cache:
            os.environ[CACHE_DIR_ENV] = cache
            try:
                t0 = time.perf_counter()
                evaluate_spiking(model, warm, None, cfg)
                first = time.perf_counter() - t0
                t0 = time.perf_counter()
                evaluate_spiking(model, warm, None, cfg)
                compile_s = first - (time.perf_counter() - t0)
                t0 = time.perf_counter()
                ev = evaluate_spiking(model, x, y, cfg)
                spk = time.perf_counter() - t0
            finally:
                if old is None:
                    os.environ.pop(CACHE_DIR_ENV, None)
                else:
                    os.environ[CACHE_DIR_ENV] = old
        ana = analog_s(model, x)
        sizes = "-".join(str(v) for v in [784, *[layer.store.W.shape[1] for layer in model.layers]])
        print(f"| {name} {sizes} (drive {drive:g}) | {compile_s:.1f} | {spk:.1f} | {spk * scale:.1f}{tag} | "
              f"{ana:.3f} | {spk / ana:.0f} | {100 * ev.error_spiking:.2f} % | {100 * ev.error_analog:.2f} % |",
              flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
