"""Spiking twin of a small recurrent FF network: spike goodness against the analog goodness evaluation.

A 784-40-40 recurrent FF network (Hinton 2022, §3.4) is trained on the first ``--train-cases`` MNIST training
images (``--epochs``, learning rate ``--lr``, seed 0; a few seconds), then the first ``--n-test`` test images
are classified by :func:`ffsim.spiking.evaluate_spiking_recurrent` for every setting of ``SETTINGS``:

* ``default``: :class:`~ffsim.spiking.SpikingConfig` defaults (threshold_drive 0.5, tau 2 ms), 4 relay spikes
  per unit of normalized activity;
* ``fine``: threshold_drive 0.1 and 8 spikes per unit (finer spike counts and relay);
* ``near-analog``: threshold_drive 0.05, 16 spikes per unit, tau 200 ms (no leak within a volley) and a 10 ms
  tail, where the count of a volley of drive ``z`` is ``floor(z / threshold_drive)``: the twin should
  then follow the analog network on the input that the latency code delivers (every nonzero pixel at full
  intensity).

Reported for each: the spiking, damped-state, spike-count and analog errors, the agreement of the spiking and
the analog predictions, the agreement with the analog goodness of the binarized images (the part of the gap
that is the code's), mean spike goodness with the true and with wrong labels, and mean spikes per layer and
iteration.  Deterministic (no jitter; the training draws from ``numpy.random.default_rng([0, ...])``).

Run:  python experiments/spiking_recurrent.py [--n-test 100]
"""

# ruff: noqa: E402, I001
from __future__ import annotations

import ffsim  # first, before numpy (thread settings, see ffsim/_runtime.py)

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ffsim.data import load_dataset
from ffsim.ff import FFConfig
from ffsim.ff.recurrent import RecurrentFF
from ffsim.spiking import SpikingConfig, evaluate_spiking_recurrent

SETTINGS = {
    "default": (SpikingConfig(), 4.0),
    "fine": (SpikingConfig(threshold_drive=0.1), 8.0),
    "near-analog": (SpikingConfig(threshold_drive=0.05, tau_s=0.2, tail_s=1e-2), 16.0),
}


def train(train_cases: int, epochs: int, lr: float) -> RecurrentFF:
    """The recurrent network trained as ``ffsim train`` would, without its evaluations and files."""
    x_tr, y_tr, _, _ = load_dataset("mnist").arrays(train_cases, 1)
    cfg = FFConfig(model="ff-recurrent", layers=(40, 40), epochs=epochs, lr=lr, seed=0)
    net = RecurrentFF(cfg, 784, 10, np.random.default_rng([0, 0]))
    neg_rng = np.random.default_rng([0, 2])
    for epoch in range(epochs):
        order = np.random.default_rng([0, 1, epoch]).permutation(len(y_tr))
        for b in range(0, len(y_tr) - cfg.batch_size + 1, cfg.batch_size):
            idx = order[b:b + cfg.batch_size]
            net.train_step(x_tr[idx], y_tr[idx], neg_rng, 1.0)
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-cases", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--out", default="experiments/results/spiking-recurrent")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    net = train(args.train_cases, args.epochs, args.lr)
    train_s = time.perf_counter() - t0
    _, _, x, y = load_dataset("mnist").arrays(1, args.n_test)
    analog_binary = net.goodness_scores((x > 0).astype(np.float32)).argmax(axis=1)
    results = {"args": vars(args), "ffsim_version": ffsim.__version__, "train_s": train_s,
               "net": net.cfg.as_dict(), "settings": {}}
    lines = [f"784-40-40 recurrent FF, {args.epochs} epochs on {args.train_cases} images (lr {args.lr}), "
             f"{args.n_test} test images; trained in {train_s:.1f} s",
             f"analog error of the binarized images: {np.mean(analog_binary != y):.3f}"]
    for name, (cfg, q) in SETTINGS.items():
        ev = evaluate_spiking_recurrent(net, x, y, cfg, spikes_per_unit=q)
        pred = ev.spike_scores.argmax(axis=1)
        rec = {k: getattr(ev, k) for k in ("error_spiking", "error_state", "error_count", "error_analog", "agreement",
                                           "tie_fraction", "goodness_true", "goodness_wrong", "spikes_true",
                                           "spikes_wrong", "dropped_input_spikes", "brian2_s", "wall_s", "config")}
        rec["agreement_with_analog_of_binarized"] = float(np.mean(pred == analog_binary))
        rec["agreement_state_with_analog"] = float(np.mean(ev.state_scores.argmax(axis=1)
                                                           == ev.analog_scores.argmax(axis=1)))
        rec["mean_spikes_per_iteration_and_layer"] = ev.step_spikes.mean(axis=(2, 3)).tolist()
        results["settings"][name] = rec
        lines.append(f"{name:12s} error spiking {ev.error_spiking:.3f} state {ev.error_state:.3f} count "
                     f"{ev.error_count:.3f} analog {ev.error_analog:.3f} | agreement {ev.agreement:.3f} "
                     f"(binarized {rec['agreement_with_analog_of_binarized']:.3f}) | goodness true/wrong "
                     f"{ev.goodness_true:.1f}/{ev.goodness_wrong:.1f} | {ev.wall_s:.1f} s")
        print(lines[-1], flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
