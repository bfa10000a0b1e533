"""Wide markdown tables (one row per swept value, one column per method) from the stored sweep reports.

    python experiments/summarize_sweeps.py experiments/results/sweeps/read-noise [more folders ...]
    python experiments/summarize_sweeps.py --energy experiments/results/sweeps/profiles

Reads each folder's report.csv (written by ``ffsim sweep --report``) and prints test error mean ± std
over seeds per method, in the report's order of values; with ``--energy``, the training energy per
sample (mean over seeds, from the chips' op counters) instead.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def wide(folder: Path, energy: bool = False) -> str:
    with open(folder / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    metric = next(k[: -len("_mean")] for k in rows[0] if k.endswith("_mean"))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    values = list(dict.fromkeys(r["value"] for r in rows))
    cell = {(r["method"], r["value"]): r for r in rows}
    lines = [f"| {rows[0]['parameter']} | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for v in values:
        cells = []
        for m in methods:
            r = cell.get((m, v))
            if r is None:
                cells.append("—")
            elif energy:
                cells.append(_joules(float(r["train_energy_J_per_sample"])))
            else:
                cells.append(f"{100 * float(r[metric + '_mean']):.1f} ± {100 * float(r[metric + '_std']):.1f} %")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _joules(j: float) -> str:
    for unit, scale in (("mJ", 1e-3), ("µJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if j >= scale:
            return f"{j / scale:.3g} {unit}"
    return f"{j:.3g} J"


if __name__ == "__main__":
    args = sys.argv[1:]
    energy = "--energy" in args
    for arg in [a for a in args if a != "--energy"]:
        print(f"### {Path(arg).name}\n\n{wide(Path(arg), energy)}\n")
