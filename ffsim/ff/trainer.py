"""Training runs: epochs, learning-rate schedule, checkpoints and resume, results and plots.

A run directory holds ``checkpoint.npz`` + ``checkpoint.json`` (written atomically after every epoch),
``results.json`` (config, profile hash, seeds, package version, per-epoch errors of both evaluations,
energy and latency) and ``learning_curves.png``.  ``resume=True`` continues from the checkpoint; a run
killed at any moment and resumed ends bit-identical to an uninterrupted one (the checkpoint holds every
weight, optimizer buffer, chip state and random-generator state).  NaN or inf in a mini-batch stops the
run with :class:`TrainingDiverged`; the last checkpoint (from the end of the previous epoch) is kept.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import ffsim
from ffsim.backend import backend_record
from ffsim.crossbar import NonFiniteInput
from ffsim.data import Dataset, load_dataset
from ffsim.ff.config import FFConfig
from ffsim.io import remove_stale_temporaries, to_jsonable, write_bytes_atomic, write_json_atomic, write_png_atomic

__all__ = ["TrainingDiverged", "build_model", "lr_gain", "train"]


class TrainingDiverged(RuntimeError):
    """NaN or inf appeared during training."""


def lr_gain(epoch: int, epochs: int) -> float:
    """Hinton's schedule: 1 for the first half of the epochs, then linearly down (epoch is 1-based)."""
    if epoch <= epochs / 2:
        return 1.0
    return (1 + 2 * (epochs - epoch)) / epochs


def build_model(cfg: FFConfig, in_features: int, num_classes: int):
    rng = np.random.default_rng([cfg.seed, 0])  # weight initialization
    if cfg.model == "ff":
        from ffsim.ff.network import FFNetwork

        return FFNetwork(cfg, in_features, num_classes, rng)
    if cfg.model == "bp":
        from ffsim.bp import BPNetwork

        return BPNetwork(cfg, in_features, num_classes, rng)
    if cfg.model == "ff-unsupervised":
        from ffsim.ff.unsupervised import UnsupervisedFF

        return UnsupervisedFF(cfg, in_features, num_classes, rng)
    from ffsim.ff.recurrent import RecurrentFF

    return RecurrentFF(cfg, in_features, num_classes, rng)


def _backend_used(model):
    """The backend of the model's weight stores (chips or float weights on a device), None for plain numpy."""
    for s in model.stores:
        chip = getattr(s, "chip", None)
        b = chip.backend if chip is not None else getattr(s, "backend", None)
        if b is not None:
            return b
    return None


def _backend_with_graphs(model) -> dict:
    """The run's backend record (:func:`ffsim.backend.backend_record`), with its CUDA graphs' captures and
    replays where the FF step was replayed from graphs (``FFSIM_GPU_GRAPH=1``)."""
    rec = backend_record(_backend_used(model), _engine_backend(model))
    if "_graphs" in model.__dict__:
        from ffsim.gpu import graph

        rec["cuda_graph"] = graph.record(model)
    return rec


def _engine_backend(model):
    """Where the model's engine runs: its layers' backend for the FF models (None: numpy on the host)."""
    layers = getattr(model, "layers", None)
    return getattr(layers[0], "backend", None) if layers else None


class _Done:
    """A step whose statistics are already on the host (models without :meth:`submit_step`)."""

    def __init__(self, stats: dict):
        self._s = stats

    def stats(self) -> dict:
        return self._s


class _Failed:
    """A step that raised while it was submitted; :meth:`stats` raises it again where it is settled."""

    def __init__(self, exc: Exception):
        self._e = exc

    def stats(self) -> dict:
        raise self._e


def _submit(model, x, labels, rng, gain):
    """The mini-batch's step, its statistics read later where the model can defer them
    (:meth:`ffsim.ff.network.FFNetwork.submit_step`), else at once."""
    sub = getattr(model, "submit_step", None)
    return sub(x, labels, rng, gain) if sub is not None else _Done(model.train_step(x, labels, rng, gain))


def _chips(model) -> list:
    return [s.chip for s in model.stores if getattr(s, "chip", None) is not None]


def _save_checkpoint(out: Path, model, state: dict[str, Any]) -> None:
    arrays = {f"model.{k}": v for k, v in model.state().items()}
    chip_scalars = []
    for i, chip in enumerate(_chips(model)):
        a, sc = chip._checkpoint()
        arrays.update({f"chip{i}.{k}": v for k, v in a.items()})
        chip_scalars.append(sc)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    # the arrays first, then the JSON that names them: a checkpoint.json always describes a complete npz
    write_bytes_atomic(out / "checkpoint.npz", buf.getvalue())
    write_json_atomic(out / "checkpoint.json", {**state, "chips": chip_scalars})


def _load_checkpoint(out: Path, model) -> dict[str, Any]:
    with open(out / "checkpoint.json") as fh:
        state = json.load(fh)
    with np.load(out / "checkpoint.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    model.load_state({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    for i, (chip, sc) in enumerate(zip(_chips(model), state["chips"], strict=True)):
        prefix = f"chip{i}."
        chip._restore({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}, sc)
    return state


def load_run(run_dir: str | os.PathLike, in_features: int = 784, num_classes: int = 10):
    """A finished ``ffsim train`` folder: its configuration, the model with its chips as they were at the end
    of training, and the stored results (``in_features``/``num_classes``: those of the run's dataset)."""
    run_dir = Path(run_dir)
    try:
        results = json.loads((run_dir / "results.json").read_text())
    except FileNotFoundError:
        raise ValueError(f"{run_dir}: no results.json (not a finished 'ffsim train' folder)") from None
    if not (run_dir / "checkpoint.json").is_file() or not (run_dir / "checkpoint.npz").is_file():
        raise ValueError(f"{run_dir}: no checkpoint.json/checkpoint.npz (the trained chips are not stored)")
    cfg = FFConfig.from_dict(results["config"])
    model = build_model(cfg, in_features, num_classes)
    _load_checkpoint(run_dir, model)
    return cfg, model, results


def _energy(ops, profile) -> dict[str, float]:
    e = ops.energy_J(profile.cost)
    t = ops.latency_s(profile.cost)
    return {"energy_J": e["total"], "energy_breakdown_J": e, "latency_s": t["total"]}


def _plot(out: Path, history: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, label in (("train_running_error", "train (running, softmax)"),
                       ("test_error_softmax", "test, softmax"), ("test_error_goodness", "test, goodness"),
                       ("val_error_softmax", "validation, softmax"), ("val_error_goodness", "validation, goodness")):
        ys = [h.get(key) for h in history]
        pts = [(e, 100 * y) for e, y in zip(ep, ys, strict=True) if y is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_png_atomic(out / "learning_curves.png", fig)


def _same_run(meta: dict) -> dict:
    """What must match for a resume: everything but where the dataset file was read from (its sha256
    identifies the data), so that a run folder can be resumed from another checkout or machine."""
    return {**meta, "dataset": {k: v for k, v in meta.get("dataset", {}).items() if k != "source"}}


_RUN_FILES = ("checkpoint.npz", "checkpoint.json", "results.json", "learning_curves.png")


def train(cfg: FFConfig, out: str | os.PathLike, *, dataset: Dataset | str = "mnist", resume: bool = False,
          progress: bool = True, train_cases: int | None = None, test_cases: int | None = None,
          log=None) -> dict[str, Any]:
    """Run (or resume) an FF training and write its results; returns the results dict."""
    out = Path(out)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    if cfg.validation:
        ds = ds.split_validation(cfg.validation)
    x_tr, y_tr, x_te, y_te = ds.arrays(train_cases or None, test_cases or None)
    x_val = ds.flat(ds.x_val) if ds.x_val is not None else None
    y_val = ds.y_val.astype(np.int64) if ds.y_val is not None else None
    profile = cfg.hardware()
    model = build_model(cfg, x_tr.shape[1], ds.num_classes)
    data_rng = np.random.default_rng([cfg.seed, 1])
    neg_rng = np.random.default_rng([cfg.seed, 2])
    history: list[dict] = []
    start_epoch = 1
    out.mkdir(parents=True, exist_ok=True)
    # a run killed while writing (SIGKILL) leaves its temporary file: the run that takes the folder over removes it
    remove_stale_temporaries(out, _RUN_FILES)
    meta = {"config": cfg.as_dict(), "train_cases": len(y_tr), "test_cases": len(y_te),
            "dataset": {"name": ds.name, "sha256": ds.sha256, "source": ds.source}}
    if resume and (out / "checkpoint.json").is_file():
        state = _load_checkpoint(out, model)
        if _same_run(state["meta"]) != _same_run(to_jsonable(meta)):
            raise ValueError(f"{out}: --resume with a different configuration than the checkpoint's "
                             "(remove --resume to start over in another folder)")
        data_rng.bit_generator.state = state["data_rng"]
        neg_rng.bit_generator.state = state["neg_rng"]
        history = state["history"]
        start_epoch = state["epoch"] + 1
        log(f"resuming {out} after epoch {state['epoch']}")
    elif resume:
        log(f"no checkpoint in {out}: starting from scratch")
    # on the GPU backend the FF engine takes device batches: the images move to the device once
    engine = _engine_backend(model)
    x_batches = x_tr
    if engine is not None and engine.is_gpu and getattr(model, "device_batches", False):
        x_batches, x_eval = engine.asarray(x_tr), engine.asarray
    else:
        def x_eval(a):
            return a
    x_te_eval = x_eval(x_te)
    x_val_eval = x_eval(x_val) if x_val is not None else None
    B = cfg.batch_size
    n_batches = len(y_tr) // B
    if n_batches == 0:
        raise ValueError(f"batch_size {B} is larger than the {len(y_tr)} training cases")
    for epoch in range(start_epoch, cfg.epochs + 1):
        gain = lr_gain(epoch, cfg.epochs)
        order = data_rng.permutation(len(y_tr))
        t0 = time.perf_counter()
        ops0 = model.ops()
        loss_sum = 0.0
        running_err = 0
        seen = 0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n_batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False,
                       file=sys.stderr, dynamic_ncols=True)
        # one step in flight: mini-batch k + 1 is submitted before k's statistics are read, so on a GPU the
        # host prepares the next step while the device runs this one (the same steps, in the same order)
        order_dev = engine.asarray(order) if x_batches is not x_tr else None  # (no upload per mini-batch)
        in_flight = None
        for bi in range(n_batches + 1):
            step = None
            if bi < n_batches and not isinstance(in_flight, _Failed):  # (a failed step stops the run first)
                idx = order[bi * B:(bi + 1) * B]
                try:
                    xb = x_tr[idx] if order_dev is None else x_batches[order_dev[bi * B:(bi + 1) * B]]
                    step = _submit(model, xb, y_tr[idx], neg_rng, gain)
                except NonFiniteInput as exc:
                    step = _Failed(exc)
            if in_flight is None:
                in_flight = step
                continue
            try:
                stats = in_flight.stats()
                bad = None if np.isfinite(stats["loss"]) else f"non-finite loss ({stats['loss']})"
            except NonFiniteInput as exc:
                bad = f"NaN or inf reached the chip ({exc})"
            in_flight = step
            if bad:
                if bar:
                    bar.close()
                kept = (f"the last checkpoint in {out} (end of epoch {epoch - 1}) is kept" if epoch > 1
                        else "no checkpoint was written (the first epoch did not finish)")
                raise TrainingDiverged(f"{bad} in epoch {epoch}, mini-batch {bi}/{n_batches}; {kept}. "
                                       "Lower the learning rate (--lr) or check the profile.")
            loss_sum += stats["loss"]
            running_err += stats["running_errors"]
            seen += stats["n"]
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / bi:.3f}", err=f"{100 * running_err / seen:.2f}%")
        if bar:
            bar.close()
        train_time = time.perf_counter() - t0
        train_ops = model.ops() - ops0
        rec: dict[str, Any] = {"epoch": epoch, "lr_gain": gain, "train_loss": loss_sum / n_batches,
                               "train_running_error": running_err / max(seen, 1), "train_time_s": train_time}
        rec.update({f"train_{k}_per_sample": v for k, v in _energy(train_ops, profile).items()
                    if k != "energy_breakdown_J"})
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            t1 = time.perf_counter()
            if cfg.eval_train_cases:
                sub = slice(0, min(cfg.eval_train_cases, len(y_tr)))
                rec.update({f"train_{k}": v for k, v in model.evaluate(x_batches[sub], y_tr[sub]).items()})
            if x_val is not None:
                rec.update({f"val_{k}": v for k, v in model.evaluate(x_val_eval, y_val).items()})
            for which in ("softmax", "goodness"):  # separately: their inference costs differ (1 vs 10 passes)
                ops1 = model.ops()
                rec.update({f"test_{k}": v for k, v in model.evaluate(x_te_eval, y_te, which=(which,)).items()})
                e = _energy(model.ops() - ops1, profile)
                if rec.get(f"test_error_{which}") is not None:
                    rec[f"inference_energy_J_per_image_{which}"] = e["energy_J"] / len(y_te)
                    rec[f"inference_latency_s_per_image_{which}"] = e["latency_s"] / len(y_te)
            rec["eval_time_s"] = time.perf_counter() - t1
        for k in ("train_energy_J_per_sample", "train_latency_s_per_sample"):
            if k in rec:
                rec[k] /= max(seen, 1)
        history.append(rec)
        msg = f"epoch {epoch}: loss {rec['train_loss']:.4f}, running error {100 * rec['train_running_error']:.2f}%"
        if "test_error_softmax" in rec:
            parts = [f"{100 * rec[k]:.2f}% ({name})" for k, name in (("test_error_goodness", "goodness"),
                                                                      ("test_error_softmax", "softmax"))
                     if rec.get(k) is not None]
            msg += ", test error " + " / ".join(parts)
        log(msg + f" [{train_time:.1f} s]")
        _save_checkpoint(out, model, {"epoch": epoch, "meta": to_jsonable(meta), "history": history,
                                      "data_rng": data_rng.bit_generator.state,
                                      "neg_rng": neg_rng.bit_generator.state})
        results = _results(cfg, profile, meta, history, model)
        write_json_atomic(out / "results.json", results)
        _plot(out, history, f"{cfg.model} {list(cfg.layers)} on {cfg.profile} ({cfg.mode}), seed {cfg.seed}")
    results = _results(cfg, profile, meta, history, model)
    write_json_atomic(out / "results.json", results)
    return results


def _results(cfg: FFConfig, profile, meta: dict, history: list[dict], model) -> dict[str, Any]:
    last = history[-1] if history else {}
    return {
        "kind": "ff_training",
        "ffsim_version": ffsim.__version__,
        **meta,
        "profile": profile.name,
        "profile_hash": profile.profile_hash,
        "mode": cfg.mode,
        "seeds": {"seed": cfg.seed, "fab_seed": cfg.fab_seed},
        "backend": _backend_with_graphs(model),
        "history": history,
        "final": {k: last.get(k) for k in ("test_error_goodness", "test_error_softmax", "val_error_goodness",
                                           "val_error_softmax", "train_energy_J_per_sample",
                                           "inference_energy_J_per_image_softmax",
                                           "inference_energy_J_per_image_goodness")},
        "ops_total": model.ops().as_dict(),
    }
