"""Agreement of a distilled student with its teacher against the size of the transfer set.

For each size, a fresh student chip (same fabrication seed every time) is distilled from the teacher's
outputs on that many training images (no labels) for the same number of epochs; the student's test
error, agreement with the teacher, agreement on the teacher's mistakes and KL are recorded in a CSV, a
JSON and a plot.

Run:  python experiments/mortal_transfer_size.py --teacher-run DIR --sizes 1000,3000,10000 --out DIR
"""

# ruff: noqa: E402, I001
from __future__ import annotations

import ffsim  # first, before numpy (thread settings)

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from ffsim.data import load_mnist
from ffsim.ff.trainer import build_model
from ffsim.io import write_csv_atomic, write_json_atomic, write_png_atomic
from ffsim.mortal import TeacherOracle, agreement, agreement_on_mistakes, distill, evaluate_probs, mean_kl
from ffsim.mortal.run import _load_teacher


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher-run", required=True)
    ap.add_argument("--sizes", default="1000,3000,10000,30000,60000")
    ap.add_argument("--student-fab-seed", type=int, default=2)
    ap.add_argument("--distill-epochs", type=int, default=10)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cfg, teacher = _load_teacher(Path(args.teacher_run))
    ds = load_mnist()
    x_tr = ds.flat(ds.x_train)
    x_te, y_te = ds.flat(ds.x_test), ds.y_test.astype(np.int64)
    t = evaluate_probs(teacher, x_te, y_te)
    rows = []
    for size in (int(v) for v in args.sizes.split(",")):
        rng = np.random.default_rng([cfg.seed, 77, size])
        x_transfer = x_tr[np.random.default_rng([cfg.seed, 78]).permutation(len(x_tr))[:size]]
        student = build_model(dataclasses.replace(cfg, fab_seed=args.student_fab_seed), 784, 10)
        distill(TeacherOracle(teacher), student, x_transfer, epochs=args.distill_epochs, batch=cfg.batch_size, rng=rng)
        s = evaluate_probs(student, x_te, y_te)
        rows.append({"transfer_size": size, "teacher_error": t["error_softmax"], "student_error": s["error_softmax"],
                     "agreement": agreement(s["probs"], t["probs"]),
                     "agreement_on_teacher_mistakes": agreement_on_mistakes(s["probs"], t["probs"], y_te),
                     "mean_kl": mean_kl(t["probs"], s["probs"])})
        print(rows[-1], flush=True)
    out = Path(args.out)
    write_csv_atomic(out / "agreement_vs_size.csv", rows)
    write_json_atomic(out / "results.json", {"kind": "mortal_transfer_size", "ffsim_version": ffsim.__version__,
                                             "teacher_run": args.teacher_run, "config": cfg.as_dict(),
                                             "student_fab_seed": args.student_fab_seed,
                                             "distill_epochs": args.distill_epochs, "rows": rows})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.semilogx([r["transfer_size"] for r in rows], [100 * r["agreement"] for r in rows], "o-", label="agreement")
    ax.semilogx([r["transfer_size"] for r in rows], [100 * (r["agreement_on_teacher_mistakes"] or 0) for r in rows],
                "s--", label="agreement on the teacher's mistakes")
    ax.set_xlabel("transfer-set size (images, no labels)")
    ax.set_ylabel("%")
    ax.set_title(f"{cfg.profile}: student chip (fab seed {args.student_fab_seed}) vs. teacher", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_png_atomic(out / "agreement_vs_size.png", fig)


if __name__ == "__main__":
    main()
