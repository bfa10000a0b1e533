"""Markdown tables of an ``ffsim distill`` result (students, and aging if present).

    python experiments/mortal_table.py experiments/results/mortal-pcm/results.json
"""

import json
import sys


def pct(v: float) -> str:
    return f"{100 * v:.2f} %"


def main(path: str) -> None:
    r = json.load(open(path))
    t = r["rows"][0]
    print(f"teacher (fab seed {t['fab_seed']}): {pct(t['error_softmax'])} softmax / "
          f"{pct(t['error_goodness'])} goodness\n")
    print("| student chip (fab seed) | method | test error (softmax) | Δ vs teacher | agreement | "
          "agreement on the teacher's mistakes | mean KL | transfer energy | device pulses |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in r["rows"][1:]:
        print(f"| {row['fab_seed']} | {row['student']} | {pct(row['error_softmax'])} | "
              f"{100 * (row['error_softmax'] - t['error_softmax']):+.2f} pp | {pct(row['agreement'])} | "
              f"{100 * row['agreement_on_teacher_mistakes']:.1f} % | {row['mean_kl_teacher_student']:.4f} | "
              f"{row['transfer_energy_J']:.3g} J | {row['transfer_device_pulses']:.3g} |")
    if r.get("aging"):
        print()
        print("| after a year of drift (global drift compensation) | test error (softmax) | agreement (aged "
              "teacher: with itself before drift; fresh chip: with the aged teacher) |")
        print("|---|---:|---:|")
        for row in r["aging"]:
            print(f"| {row['student']} | {pct(row['error_softmax'])} | {pct(row['agreement'])} |")


if __name__ == "__main__":
    main(sys.argv[1])
