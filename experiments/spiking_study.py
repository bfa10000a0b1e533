"""Spike-count goodness of a trained FF network: separation of positive from negative data against the
coincidence window and input jitter, and the full MNIST test set at the best window.

Part ``grid`` (first layer of the network, scored alone, as a one-layer 784-500 FF network): for every
coincidence window ``tau`` (membrane time constant), input timing jitter ``sigma`` and background rate,
every (image, label) of the first ``--n-test`` MNIST test images is presented as spikes and the spike-count
goodness Σ count² of the 500 neurons is measured; positive presentations carry the true label, negative ones
the nine wrong labels.  Reported: ROC AUC and d' of positive against negative goodness (pooled over all
presentations, and the per-image rank version: the probability that an image's true label beats one of its
wrong labels), the classification error (label of highest goodness), and the same for the analog goodness
Σ y² of the same layer on the same images.

Physical model (all choices fixed before looking at test images):

* encoding: latency code with a 10 us window (a presentation is one synchronous volley; an input's
  intensity sets only whether it spikes), then every spike delayed by ``5 sigma`` and moved by Gaussian
  jitter of standard deviation ``sigma`` (delayed so that the Gaussian is not clipped at t = 0: the
  library's ``SpikingConfig.jitter_s`` clips at 0, which piles up half of the strongest inputs' spikes
  at exactly t = 0 and so leaves a synchronous half-volley);
* background: optional Poisson spikes on every input at ``--backgrounds`` Hz over the whole slot
  (a dark rate: the uncorrelated activity that a wide window integrates);
* neurons: leaky integrate-and-fire, subtract reset, synaptic current with ``tau_syn = tsyn_ratio * tau``
  (default 0.2): the postsynaptic potential then has the same shape in units of ``tau`` for every window,
  so that what changes with the window is only ``sigma / tau`` (and the background charge within it);
  without a synaptic current a neuron fires on the largest partial sum of a spread volley;
* readout: spike counts over the whole slot (input span ``10 us + 10 sigma``, then ``2 tau``);
* threshold: ``threshold_drive`` (the analog drive equal to the firing threshold; a per-setting calibration
  of the hardware's threshold) is chosen for every (tau, sigma, background) from ``--drives`` by the pooled
  AUC on ``--n-val`` *training* images (the last ones of the training set); test images never choose it.

Part ``full``: the whole MNIST test set (10 000 images x 10 labels) with :func:`ffsim.spiking.evaluate_spiking`
(no jitter, no background) at the shortest window whose validation AUC at sigma = 0 is within
``--window-tol`` of the best (shorter windows are cheaper to simulate), for the one-layer
network and the chained 784-500-500-500 network (scored from ``min_level`` = layer 1 on, as its own
evaluation), each with ``threshold_drive`` chosen on the training images.

Part ``reference`` (numpy, seconds): the analog goodness of the binarized input (every spiking pixel at
full intensity, what a latency volley delivers) beside that of the intensities, on the first ``--n-test``
and on all test images: the part of the spiking gap that is the code's, not the neurons'.

Every random draw comes from ``numpy.random.default_rng([seed, ...])`` keyed by the setting; the seeds, the
run's profile hash and all settings are written with the results (JSON, CSV, PNG in ``--out``).

Run:  python experiments/spiking_study.py grid   (see experiments/spiking.sh)
"""

# ruff: noqa: E402, I001
from __future__ import annotations

import ffsim  # first, before numpy (thread settings, see ffsim/_runtime.py)

import argparse
import copy
import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from ffsim.data import load_dataset
from ffsim.ff.trainer import load_run
from ffsim.io import write_csv_atomic, write_json_atomic, write_png_atomic
from ffsim.spiking import SpikeTrains, SpikingConfig, evaluate_spiking, spiking_layers
from ffsim.spiking.encoders import JITTER_TAIL
from ffsim.spiking.ff_bridge import _encode

WINDOW_S = 1e-5  # latency window: every spike of a presentation in one 50 us time step


# ----------------------------------------------------------------------------------------------
# separation measures


def _avg_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``a`` with ties given their average rank."""
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    first = np.r_[True, s[1:] != s[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(a))
    ranks[order] = avg[group]
    return ranks


def separation(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUC (pooled and per image), d' and error of ``scores`` (n_images, n_classes) against the true labels."""
    n, C = scores.shape
    pos_mask = np.zeros((n, C), bool)
    pos_mask[np.arange(n), labels] = True
    pos, neg = scores[pos_mask], scores[~pos_mask]
    r = _avg_ranks(np.concatenate([pos, neg]))
    auc = (r[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    sd = math.sqrt((pos.var() + neg.var()) / 2)
    dprime = (pos.mean() - neg.mean()) / sd if sd > 0 else float("nan")
    true = scores[np.arange(n), labels][:, None]
    wins = ((true > scores) + 0.5 * (true == scores))[~pos_mask].reshape(n, C - 1)
    top = scores.max(axis=1, keepdims=True)
    return {"auc": float(auc), "auc_image": float(wins.mean()), "dprime": float(dprime),
            "error": float((scores.argmax(axis=1) != labels).mean()),
            "ties": float(((scores == top).sum(axis=1) > 1).mean())}


# ----------------------------------------------------------------------------------------------
# networks and presentations


def one_layer(net):
    """The network's first layer as a one-layer FF network scored from layer 0 (shares the weights)."""
    one = copy.copy(net)
    one.layers = net.layers[:1]
    one.head_from = 0
    return one


def analog_goodness(net, x: np.ndarray) -> np.ndarray:
    return np.concatenate([net.goodness_scores(x[a:a + 1000]) for a in range(0, len(x), 1000)])


def spike_goodness(net1, x: np.ndarray, cfg: SpikingConfig, sigma_s: float, bg_hz: float,
                   rng: np.random.Generator, batch: int = 500) -> tuple[np.ndarray, np.ndarray, dict]:
    """Σ count² and total count of the one-layer network ``net1`` for every (image, label) of ``x``, with
    delayed, unclipped Gaussian jitter and Poisson background (see the module doc).  ``cfg``: window,
    neurons, threshold (its ``jitter_s`` and ``tail_s`` are not used: the tail is part of the trains)."""
    (layer,) = spiking_layers(net1, dataclasses.replace(cfg, tail_s=0.0, jitter_s=0.0))
    C = net1.num_classes
    tail = 2.0 * cfg.tau_s
    span = cfg.window_s + 2 * JITTER_TAIL * sigma_s
    dur = span + tail
    g_all, n_all = np.zeros((len(x), C)), np.zeros((len(x), C))
    info = {"input_spikes": 0, "background_spikes": 0, "dropped_input_spikes": 0, "brian2_s": 0.0,
            "slot_s": None}
    for a in range(0, len(x), batch):
        xb = x[a:a + batch].astype(np.float32)
        volley, gain = _encode(net1, xb, dataclasses.replace(cfg, jitter_s=0.0, window_s=cfg.window_s), None)
        t = volley.time_s + JITTER_TAIL * sigma_s
        if sigma_s > 0:
            t = np.clip(t + rng.normal(0.0, sigma_s, size=t.shape), 0.0, span)
        s, i = volley.sample, volley.input
        if bg_hz > 0:
            k = rng.poisson(bg_hz * dur, size=volley.n_samples * volley.n_inputs)
            flat = np.repeat(np.arange(k.size, dtype=np.int64), k)
            bs, bi = np.divmod(flat, volley.n_inputs)
            s, i = np.r_[s, bs], np.r_[i, bi]
            t = np.r_[t, rng.uniform(0.0, dur, size=flat.size)]
            info["background_spikes"] += int(flat.size)
        info["input_spikes"] += len(volley)
        trains = SpikeTrains(s, i, t, volley.n_samples, volley.n_inputs, dur)
        resp = layer.run(trains, gain=gain, keep_spikes=False)
        g_all[a:a + len(xb)] = resp.goodness(net1.layers[0].kind).reshape(len(xb), C)
        n_all[a:a + len(xb)] = resp.spike_count.reshape(len(xb), C)
        info["dropped_input_spikes"] += resp.dropped_input_spikes
        info["brian2_s"] += resp.wall_s
        info["slot_s"] = resp.slot_s
    return g_all, n_all, info


def neuron_cfg(tau_s: float, drive: float, args) -> SpikingConfig:
    return SpikingConfig(window_s=WINDOW_S, tau_s=tau_s, tau_syn_s=args.tsyn_ratio * tau_s,
                         threshold_drive=drive, reset="subtract", dt_s=args.dt_us * 1e-6,
                         codegen_target=args.codegen, batch_images=500)


def floats(s: str) -> list[float]:
    return [float(v) for v in s.split(",") if v.strip()]


# ----------------------------------------------------------------------------------------------
# parts


def run_grid(args, net, meta, x_val, y_val, x_te, y_te, out: Path) -> dict:
    net1 = one_layer(net)
    analog_test = separation(analog_goodness(net1, x_te), y_te)
    analog_val = separation(analog_goodness(net1, x_val), y_val)
    print(f"analog one-layer: test {analog_test}  val {analog_val}", flush=True)
    rows = []
    t_all = time.perf_counter()
    for ib, bg in enumerate(floats(args.backgrounds)):
        for ij, sig_ms in enumerate(floats(args.jitters)):
            for it, tau_ms in enumerate(floats(args.taus)):
                tau, sig = tau_ms * 1e-3, sig_ms * 1e-3
                t0 = time.perf_counter()
                val = []
                for idr, d in enumerate(floats(args.drives)):
                    rng = np.random.default_rng([args.seed, 1, ib, ij, it, idr])
                    g, _, _ = spike_goodness(net1, x_val, neuron_cfg(tau, d, args), sig, bg, rng)
                    val.append((separation(g, y_val), d))
                best_val, drive = max(val, key=lambda v: (v[0]["auc"], -v[0]["error"]))
                rng = np.random.default_rng([args.seed, 2, ib, ij, it])
                g, cnt, info = spike_goodness(net1, x_te, neuron_cfg(tau, drive, args), sig, bg, rng)
                sep, sep_c = separation(g, y_te), separation(cnt, y_te)
                row = {"background_hz": bg, "jitter_ms": sig_ms, "tau_ms": tau_ms,
                       "tau_syn_ms": args.tsyn_ratio * tau_ms, "threshold_drive": drive,
                       "auc": sep["auc"], "auc_image": sep["auc_image"], "dprime": sep["dprime"],
                       "error": sep["error"], "ties": sep["ties"],
                       "auc_count": sep_c["auc"], "dprime_count": sep_c["dprime"], "error_count": sep_c["error"],
                       "analog_auc": analog_test["auc"], "analog_auc_image": analog_test["auc_image"],
                       "analog_dprime": analog_test["dprime"], "analog_error": analog_test["error"],
                       "val_auc": best_val["auc"], "val_error": best_val["error"],
                       "val_auc_by_drive": {str(d): v["auc"] for v, d in val},
                       "mean_output_spikes": float(cnt.mean()), "slot_ms": info["slot_s"] * 1e3,
                       "input_spikes": info["input_spikes"], "background_spikes": info["background_spikes"],
                       "dropped_input_spikes": info["dropped_input_spikes"], "brian2_s": info["brian2_s"],
                       "wall_s": time.perf_counter() - t0}
                rows.append(row)
                print(f"bg {bg:g} Hz  sigma {sig_ms:g} ms  tau {tau_ms:g} ms  drive {drive:g}: AUC {sep['auc']:.4f} "
                      f"(img {sep['auc_image']:.4f}) d' {sep['dprime']:.3f} err {sep['error']:.4f}  "
                      f"[val AUC {best_val['auc']:.4f}]  {row['wall_s']:.1f} s", flush=True)
    csv_rows = [{k: v for k, v in r.items() if k != "val_auc_by_drive"} for r in rows]
    doc = {**meta, "part": "grid", "network": "one-layer 784-500 (first layer of the run, scored from layer 0)",
           "n_test": len(x_te), "test_images": f"MNIST test [0, {len(x_te)})",
           "n_val": len(x_val), "val_images": f"MNIST train [{60000 - len(x_val)}, 60000) (threshold_drive chosen "
           "by the pooled AUC there)",
           "encoding": {"latency_window_s": WINDOW_S, "jitter": "Gaussian, after a delay of 5 sigma (unclipped)",
                        "background": "Poisson on every input over the whole slot"},
           "neurons": {"reset": "subtract", "tau_syn_over_tau": args.tsyn_ratio, "dt_s": args.dt_us * 1e-6,
                       "tail": "2 tau", "codegen_target": args.codegen},
           "drives": floats(args.drives), "analog_test": analog_test, "analog_val": analog_val,
           "rows": rows, "wall_s": time.perf_counter() - t_all}
    write_json_atomic(out / "grid.json", doc)
    write_csv_atomic(out / "grid.csv", csv_rows)
    plot_grid(doc, out / "grid.png")
    return doc


def plot_grid(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["rows"]
    bgs = sorted({r["background_hz"] for r in rows})
    jits = sorted({r["jitter_ms"] for r in rows})
    fig, axes = plt.subplots(len(bgs), 3, figsize=(13, 3.6 * len(bgs)), squeeze=False)
    an = doc["analog_test"]
    for ib, bg in enumerate(bgs):
        for col, (key, akey, name) in enumerate((("auc", "auc", "ROC AUC (pooled)"), ("dprime", "dprime", "d'"),
                                                 ("error", "error", "test error"))):
            ax = axes[ib, col]
            for j in jits:
                sel = sorted((r for r in rows if r["background_hz"] == bg and r["jitter_ms"] == j),
                             key=lambda r: r["tau_ms"])
                ax.plot([r["tau_ms"] for r in sel], [r[key] for r in sel], "o-", label=f"jitter {j:g} ms")
            ax.axhline(an[akey], color="k", ls="--", label="analog goodness")
            ax.set_xscale("log")
            ax.set_xlabel("coincidence window tau (ms)")
            ax.set_ylabel(name)
            if key == "error":
                ax.set_yscale("log")
            ax.set_title(f"{name}, background {bg:g} Hz/input")
            ax.grid(alpha=0.3)
        axes[ib, 0].legend(fontsize=8)
    fig.suptitle(f"spike-count goodness (sum count^2) of the first layer, MNIST test images 0..{doc['n_test'] - 1}; "
                 f"tau_syn = {doc['neurons']['tau_syn_over_tau']:g} tau")
    fig.tight_layout()
    write_png_atomic(path, fig)


def run_full(args, net, meta, x_val, y_val, x_te, y_te, out: Path) -> dict:
    grid = __import__("json").loads((out / "grid.json").read_text())
    zero = [r for r in grid["rows"] if r["jitter_ms"] == 0 and r["background_hz"] == 0]
    top = max(r["val_auc"] for r in zero)
    best = min((r for r in zero if r["val_auc"] >= top - args.window_tol), key=lambda r: r["tau_ms"])
    tau = best["tau_ms"] * 1e-3
    print(f"window chosen on the validation images: tau {best['tau_ms']} ms (val AUC {best['val_auc']:.4f}; "
          f"best {top:.4f})", flush=True)
    results = {}
    for name in args.full_nets.split(","):
        model = one_layer(net) if name == "one-layer" else net
        val = []
        drives = floats(args.drives) if name == "one-layer" else floats(args.chain_drives)
        for d in drives:
            ev = evaluate_spiking(model, x_val, y_val, neuron_cfg(tau, d, args))
            val.append((separation(ev.spike_scores, y_val), ev.error_spiking, d))
            print(f"  {name} val drive {d:g}: AUC {val[-1][0]['auc']:.4f} err {ev.error_spiking:.4f} "
                  f"({ev.wall_s:.1f} s)", flush=True)
        best_val, _, drive = max(val, key=lambda v: (v[0]["auc"], -v[1]))
        cfg = neuron_cfg(tau, drive, args)
        n = len(x_te)
        t0 = time.perf_counter()
        ev = evaluate_spiking(model, x_te, y_te, cfg)
        wall = time.perf_counter() - t0
        sp, an = separation(ev.spike_scores, y_te), separation(ev.analog_scores, y_te)
        res = {"network": name, "tau_ms": best["tau_ms"], "threshold_drive": drive,
               "val_auc_by_drive": {str(d): v["auc"] for v, _, d in val}, "val_error_by_drive":
               {str(d): e for _, e, d in val}, "n_test": n, "error_spiking": ev.error_spiking,
               "error_count": ev.error_count, "error_analog": ev.error_analog,
               "gap_pp": 100 * (ev.error_spiking - ev.error_analog), "agreement": ev.agreement,
               "tie_fraction": ev.tie_fraction, "spiking": sp, "analog": an,
               "dropped_input_spikes": ev.dropped_input_spikes, "brian2_s": ev.brian2_s, "wall_s": wall,
               "wall_s_per_10k": wall * 10000 / n, "config": ev.config}
        results[name] = res
        print(f"{name}: n {n} tau {best['tau_ms']} ms drive {drive:g}: spiking {ev.error_spiking:.4f} analog "
              f"{ev.error_analog:.4f} (gap {res['gap_pp']:+.2f} pp) agreement {ev.agreement:.4f} AUC "
              f"{sp['auc']:.4f} vs {an['auc']:.4f}  wall {wall:.1f} s (Brian2 {ev.brian2_s:.1f} s)", flush=True)
        doc = {**meta, "part": "full", "test_images": f"MNIST test [0, {n})", "n_val": len(x_val),
               "val_images": f"MNIST train [{60000 - len(x_val)}, 60000)", "window_from_grid": best,
               "results": results}
        write_json_atomic(out / "full.json", doc)
    write_csv_atomic(out / "full.csv", [{k: v for k, v in r.items() if not isinstance(v, dict)}
                                        for r in results.values()])
    return doc


def binarized_goodness(net, x: np.ndarray) -> np.ndarray:
    """The network's analog goodness (``goodness_scores``) of the input that a latency volley delivers: every
    pixel that spikes (intensity > 0) at full intensity."""
    xb = (x > 0).astype(np.float32)
    return analog_goodness(net, xb)


def run_reference(args, net, meta, x_te, y_te, out: Path) -> dict:
    """Analog goodness of the intensities and of the binarized input (numpy, no spikes), one-layer and chained,
    on the grid's images and on the whole test set: how much of the spiking gap is the latency code's
    binarization of the input."""
    res = {}
    for name, model in (("one-layer", one_layer(net)), ("chained", net)):
        for n in sorted({min(args.n_test, len(x_te)), len(x_te)}):
            x, y = x_te[:n], y_te[:n]
            res[f"{name} first {n}"] = {"analog": separation(analog_goodness(model, x), y),
                                        "analog_binarized_input": separation(binarized_goodness(model, x), y)}
            print(name, n, res[f"{name} first {n}"], flush=True)
    doc = {**meta, "part": "reference", "results": res}
    write_json_atomic(out / "reference.json", doc)
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("grid", "full", "reference"))
    ap.add_argument("--run", default="experiments/results/ideal-3x500", help="trained 'ffsim train' folder")
    ap.add_argument("--out", default="experiments/results/spiking")
    ap.add_argument("--n-test", type=int, default=500, help="first N MNIST test images (grid); full: 10000")
    ap.add_argument("--n-val", type=int, default=200, help="last N MNIST training images choose threshold_drive")
    ap.add_argument("--taus", default="0.5,1,2,5,10,20", help="coincidence windows, ms")
    ap.add_argument("--jitters", default="0,0.1,0.5,2", help="input jitter (standard deviation), ms")
    ap.add_argument("--backgrounds", default="0,5", help="Poisson background rate of every input, Hz")
    ap.add_argument("--drives", default="0.125,0.25,0.5,1", help="threshold_drive candidates")
    ap.add_argument("--chain-drives", default="0.25,0.5,1", help="threshold_drive candidates, chained network")
    ap.add_argument("--full-nets", default="one-layer,chained", help="full part: one-layer and/or chained")
    ap.add_argument("--window-tol", type=float, default=0.001,
                    help="full: the shortest window whose validation AUC (jitter 0, no background) is within this "
                         "of the best")
    ap.add_argument("--tsyn-ratio", type=float, default=0.2, help="tau_syn / tau")
    ap.add_argument("--dt-us", type=float, default=50.0, help="simulation time step, us")
    ap.add_argument("--codegen", default="cython", choices=("cython", "numpy"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    _, net, results = load_run(args.run)
    x_tr, y_tr, x_te, y_te = load_dataset("mnist").arrays(None, 10000)
    assert len(x_tr) == 60000, len(x_tr)
    x_val, y_val = x_tr[-args.n_val:], y_tr[-args.n_val:].astype(np.int64)
    if args.part != "reference":
        x_te, y_te = x_te[:args.n_test], y_te[:args.n_test]
    y_te = y_te.astype(np.int64)
    meta = {"run": args.run, "profile": results.get("config", {}).get("profile"),
            "profile_hash": results.get("profile_hash"), "seed": args.seed,
            "seeds": "numpy default_rng([seed, 1, i_background, i_jitter, i_tau, i_drive]) for validation, "
                     "[seed, 2, i_background, i_jitter, i_tau] for test (grid); full: deterministic (no jitter)",
            "ffsim_version": ffsim.__version__, "args": vars(args)}
    if args.part == "grid":
        run_grid(args, net, meta, x_val, y_val, x_te, y_te, out)
    elif args.part == "full":
        run_full(args, net, meta, x_val, y_val, x_te, y_te, out)
    else:
        run_reference(args, net, meta, x_te, y_te, out)


if __name__ == "__main__":
    main()
