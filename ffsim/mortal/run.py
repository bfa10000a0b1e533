"""A mortal-computation study: one teacher chip, a family of student chips, copy vs distillation.

For each student chip (its own fabrication seed, same profile) the study measures four students on the
MNIST test set: the weight **copy**, the **distilled** student (FF from the teacher's outputs on a
label-free transfer set), and a **scratch** student trained with the true labels on the same images for
the same number of epochs.  Optionally it **ages** the teacher for a year of drift and compares
distilling the aged teacher into a fresh chip with re-programming a fresh chip from the aged teacher's
read-back weights.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

import ffsim
from ffsim.crossbar import OpCounter
from ffsim.data import load_dataset
from ffsim.ff.config import FFConfig
from ffsim.ff.trainer import build_model, load_run, train
from ffsim.io import remove_stale_temporaries, write_json_atomic
from ffsim.mortal.transfer import (
    TeacherOracle,
    agreement,
    agreement_on_mistakes,
    copy_weights,
    distill,
    error_rate,
    mean_kl,
    train_on,
    transfer_images,
)

__all__ = ["TRANSFER_KINDS", "evaluate_probs", "run_mortal"]

YEAR_S = 365 * 86400.0
TRANSFER_KINDS = ("train", "subset", "noisy", "shifted", "augmented")


def evaluate_probs(model, x: np.ndarray, labels: np.ndarray, batch: int = 1000) -> dict[str, Any]:
    """Softmax probabilities and both error rates of a model on (x, labels)."""
    probs = np.concatenate([model.predict_softmax(x[a:a + batch]) for a in range(0, len(x), batch)])
    good = np.concatenate([model.goodness_scores(x[a:a + batch]) for a in range(0, len(x), batch)])
    return {"probs": probs, "error_softmax": error_rate(probs, labels),
            "error_goodness": float((good.argmax(axis=1) != labels).mean())}


def _compare(name: str, ev: dict, teacher: dict, labels: np.ndarray) -> dict[str, Any]:
    return {"student": name, "error_softmax": ev["error_softmax"], "error_goodness": ev["error_goodness"],
            "agreement": agreement(ev["probs"], teacher["probs"]),
            "agreement_on_teacher_mistakes": agreement_on_mistakes(ev["probs"], teacher["probs"], labels),
            "mean_kl_teacher_student": mean_kl(teacher["probs"], ev["probs"])}


def _energy(ops: OpCounter, profile) -> dict[str, float]:
    return {"energy_J": ops.energy_J(profile.cost)["total"], "device_pulses": ops.device_pulses,
            "program_steps": ops.program_steps}


def _load_teacher(run_dir: Path):
    cfg, model, _ = load_run(run_dir)
    return cfg, model


def run_mortal(cfg: FFConfig, out: str | Path, *, student_fab_seeds: list[int], teacher_run: str | None = None,
               transfer: str = "train", transfer_size: int | None = None, distill_epochs: int = 10,
               aging: bool = False, test_cases: int | None = None, train_cases: int | None = None,
               teacher_reads: int = 1, temperature: float = 1.0, progress: bool = False,
               log=print) -> dict[str, Any]:
    """Train (or load) the teacher, then copy, distill and train from scratch on every student chip.

    ``teacher_reads`` and ``temperature`` are passed to :func:`~ffsim.mortal.transfer.distill` (teacher
    inferences averaged per transfer image; temperature of the soft targets)."""
    if transfer not in TRANSFER_KINDS:  # before any training
        raise ValueError(f"transfer must be one of {', '.join(TRANSFER_KINDS)} (got {transfer!r})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out, ["results.json"])  # (left by a run killed while writing it)
    t_start = time.perf_counter()
    x_tr, y_tr, x_te, y_te = load_dataset("mnist").arrays(train_cases or None, test_cases or None)
    if teacher_run:
        cfg, teacher = _load_teacher(Path(teacher_run))
        log(f"teacher loaded from {teacher_run}")
    else:
        train(cfg, out / "teacher", progress=progress, train_cases=train_cases, test_cases=test_cases, log=log)
        _, teacher = _load_teacher(out / "teacher")
    if cfg.model != "ff":
        raise ValueError(f"distillation needs the supervised model 'ff' (the teacher is {cfg.model!r})")
    profile = cfg.hardware()
    rng = np.random.default_rng([cfg.seed, 77])
    t_eval = evaluate_probs(teacher, x_te, y_te)
    teacher_row = {"student": "teacher", "fab_seed": cfg.fab_seed, "error_softmax": t_eval["error_softmax"],
                   "error_goodness": t_eval["error_goodness"]}
    log(f"teacher (fab seed {cfg.fab_seed}): test error {100 * t_eval['error_softmax']:.2f}% (softmax), "
        f"{100 * t_eval['error_goodness']:.2f}% (goodness)")
    # the transfer set: label-free images; the scratch student gets the true labels of the same images
    idx_rng = np.random.default_rng([cfg.seed, 78])
    order = idx_rng.permutation(len(x_tr))[: transfer_size or len(x_tr)]
    x_base, y_base = x_tr[order], y_tr[order]
    if transfer == "augmented":  # the images and a shifted copy of each: twice the transfer set
        x_transfer = np.concatenate([x_base, transfer_images(x_base, "shifted", idx_rng)])
        y_base = np.concatenate([y_base, y_base])
    else:
        x_transfer = transfer_images(x_base, transfer if transfer != "subset" else "train", idx_rng)
    rows = [teacher_row]
    oracle = TeacherOracle(teacher)
    for s in student_fab_seeds:
        scfg = dataclasses.replace(cfg, fab_seed=int(s))
        # weight copy
        before_t = teacher.ops()
        copied = build_model(scfg, x_tr.shape[1], 10)
        before_s = copied.ops()
        copy_weights(teacher, copied)
        copy_ops = (teacher.ops() - before_t) + (copied.ops() - before_s)
        row = _compare("copy", evaluate_probs(copied, x_te, y_te), t_eval, y_te)
        rows.append({**row, "fab_seed": s, **{f"transfer_{k}": v for k, v in _energy(copy_ops, profile).items()}})
        # distillation
        student = build_model(scfg, x_tr.shape[1], 10)
        before_t = teacher.ops()
        res = distill(oracle, student, x_transfer, epochs=distill_epochs, batch=cfg.batch_size, rng=rng,
                      teacher_reads=teacher_reads, temperature=temperature)
        d_ops = res["student_ops"] + (teacher.ops() - before_t)
        row = _compare("distilled", evaluate_probs(student, x_te, y_te), t_eval, y_te)
        rows.append({**row, "fab_seed": s, **{f"transfer_{k}": v for k, v in _energy(d_ops, profile).items()}})
        # scratch: hard labels, same images, same epochs
        scratch = build_model(scfg, x_tr.shape[1], 10)
        s_ops = train_on(scratch, x_transfer, y_base, epochs=distill_epochs, batch=cfg.batch_size, rng=rng)
        row = _compare("scratch", evaluate_probs(scratch, x_te, y_te), t_eval, y_te)
        rows.append({**row, "fab_seed": s, **{f"transfer_{k}": v for k, v in _energy(s_ops, profile).items()}})
        for r in rows[-3:]:
            log(f"student {r['student']:>9} (fab seed {s}): error {100 * r['error_softmax']:.2f}%, agreement "
                f"{100 * r['agreement']:.2f}%, KL {r['mean_kl_teacher_student']:.4f}")
    aging_rows = []
    if aging:
        for layer in teacher.layers:
            if hasattr(layer.store, "chip"):
                layer.store.chip.advance(YEAR_S, compensate=profile.device.drift.model != "none")
        aged = evaluate_probs(teacher, x_te, y_te)
        aging_rows.append({"student": "teacher after a year", "error_softmax": aged["error_softmax"],
                           "error_goodness": aged["error_goodness"],
                           "agreement": agreement(aged["probs"], t_eval["probs"])})
        s = int(student_fab_seeds[0])
        scfg = dataclasses.replace(cfg, fab_seed=s)
        reprog = build_model(scfg, x_tr.shape[1], 10)
        copy_weights(teacher, reprog)
        aging_rows.append(_compare("fresh chip re-programmed from the aged teacher", evaluate_probs(reprog, x_te, y_te),
                                   aged, y_te))
        fresh = build_model(scfg, x_tr.shape[1], 10)
        distill(TeacherOracle(teacher), fresh, x_transfer, epochs=distill_epochs, batch=cfg.batch_size, rng=rng,
                teacher_reads=teacher_reads, temperature=temperature)
        aging_rows.append(_compare("fresh chip distilled from the aged teacher", evaluate_probs(fresh, x_te, y_te),
                                   aged, y_te))
    results = {
        "kind": "mortal_transfer", "ffsim_version": ffsim.__version__, "config": cfg.as_dict(),
        "profile": profile.name, "profile_hash": profile.profile_hash,
        "seeds": {"seed": cfg.seed, "teacher_fab_seed": cfg.fab_seed, "student_fab_seeds": list(student_fab_seeds)},
        "transfer": {"kind": transfer, "size": len(x_transfer), "distill_epochs": distill_epochs,
                     "teacher_reads": teacher_reads, "temperature": temperature},
        "test_cases": len(y_te), "rows": rows, "aging": aging_rows, "wall_time_s": time.perf_counter() - t_start,
    }
    write_json_atomic(out / "results.json", results)
    return results
