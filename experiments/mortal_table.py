"""Markdown tables of ``ffsim distill`` results (students, and aging if present).

    python experiments/mortal_table.py experiments/results/mortal-pcm/results.json [more results.json ...]

Several files (runs of the same teacher with different student chips) are merged into one table; the
teacher and the distillation settings must agree.
"""

import json
import sys


def pct(v: float) -> str:
    return f"{100 * v:.2f} %"


def main(paths: list[str]) -> None:
    runs = [json.load(open(p)) for p in paths]
    r = runs[0]
    t = r["rows"][0]
    for other, p in zip(runs[1:], paths[1:], strict=True):
        if other["rows"][0] != t or other["transfer"] != r["transfer"] or other["profile_hash"] != r["profile_hash"]:
            raise SystemExit(f"{p}: another teacher, profile or transfer setting than {paths[0]}")
    tr = r["transfer"]
    print(f"transfer: {tr['kind']}, {tr['size']} images, {tr['distill_epochs']} epochs, teacher reads "
          f"{tr.get('teacher_reads', 1)}, temperature {tr.get('temperature', 1.0)}")
    print(f"teacher (fab seed {t['fab_seed']}): {pct(t['error_softmax'])} softmax / "
          f"{pct(t['error_goodness'])} goodness\n")
    print("| student chip (fab seed) | method | test error (softmax) | Δ vs teacher | agreement | "
          "agreement on the teacher's mistakes | mean KL | transfer energy | device pulses |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in [row for run in runs for row in run["rows"][1:]]:
        print(f"| {row['fab_seed']} | {row['student']} | {pct(row['error_softmax'])} | "
              f"{100 * (row['error_softmax'] - t['error_softmax']):+.2f} pp | {pct(row['agreement'])} | "
              f"{100 * row['agreement_on_teacher_mistakes']:.1f} % | {row['mean_kl_teacher_student']:.4f} | "
              f"{row['transfer_energy_J']:.3g} J | {row['transfer_device_pulses']:.3g} |")
    for run in runs:
        if not run.get("aging"):
            continue
        print()
        print("| after a year of drift (global drift compensation) | test error (softmax) | agreement (aged "
              "teacher: with itself before drift; fresh chip: with the aged teacher) |")
        print("|---|---:|---:|")
        for row in run["aging"]:
            print(f"| {row['student']} | {pct(row['error_softmax'])} | {pct(row['agreement'])} |")


if __name__ == "__main__":
    main(sys.argv[1:])
