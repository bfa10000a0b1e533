"""One distilled student under one setting, or the teacher's agreement with itself: the runs behind the
distillation ablations of EXPERIMENTS.md section 7.

    python experiments/mortal_ablation.py --teacher-run DIR --student-fab-seed 2 --epochs 10 \\
        [--teacher-reads K] [--temperature T] [--extra none|shifted|noisy]
    python experiments/mortal_ablation.py --teacher-run DIR --self-agreement

The student (fresh chip of the teacher's profile, fabrication seed ``--student-fab-seed``) is distilled
from the teacher's outputs on the 60k training images without labels (plus, with ``--extra``, a
transformed copy of each: the transfer set doubles) and evaluated on the 10k test images against the
teacher's test-set predictions.  ``--self-agreement`` instead runs the teacher's test-set inference three
times (fresh read and converter noise each time) and reports how often it agrees with itself: the ceiling
of any student's agreement.  One JSON line on stdout.
"""

# ruff: noqa: E402, I001
from __future__ import annotations

import ffsim  # noqa: F401  (first, before numpy: thread settings)

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from ffsim.data import load_dataset
from ffsim.ff.trainer import build_model
from ffsim.mortal import TeacherOracle, agreement, agreement_on_mistakes, distill, evaluate_probs, transfer_images
from ffsim.mortal.run import _load_teacher


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher-run", required=True)
    ap.add_argument("--student-fab-seed", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--teacher-reads", type=int, default=1)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--extra", choices=["none", "shifted", "noisy"], default="none")
    ap.add_argument("--self-agreement", action="store_true")
    args = ap.parse_args()
    x_tr, _, x_te, y_te = load_dataset("mnist").arrays(None, None)
    cfg, teacher = _load_teacher(Path(args.teacher_run))
    te = evaluate_probs(teacher, x_te, y_te)
    out = {"teacher_run": args.teacher_run, "profile": cfg.profile, "teacher_error": te["error_softmax"]}
    if args.self_agreement:
        again = [evaluate_probs(teacher, x_te, y_te) for _ in range(2)]
        out.update(teacher_errors=[te["error_softmax"]] + [e["error_softmax"] for e in again],
                   self_agreement=[agreement(e["probs"], te["probs"]) for e in again])
        print(json.dumps(out))
        return
    x = x_tr
    if args.extra != "none":
        x = np.concatenate([x_tr, transfer_images(x_tr, args.extra, np.random.default_rng(5))])
    student = build_model(dataclasses.replace(cfg, fab_seed=args.student_fab_seed), x_tr.shape[1], 10)
    t0 = time.perf_counter()
    distill(TeacherOracle(teacher), student, x, epochs=args.epochs, batch=cfg.batch_size,
            rng=np.random.default_rng([0, 77]), teacher_reads=args.teacher_reads, temperature=args.temperature)
    ev = evaluate_probs(student, x_te, y_te)
    out.update(student_fab_seed=args.student_fab_seed, epochs=args.epochs, teacher_reads=args.teacher_reads,
               temperature=args.temperature, extra=args.extra, transfer_images=len(x),
               student_error=ev["error_softmax"], agreement=agreement(ev["probs"], te["probs"]),
               agreement_on_teacher_mistakes=agreement_on_mistakes(ev["probs"], te["probs"], y_te),
               distill_wall_s=time.perf_counter() - t0)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
