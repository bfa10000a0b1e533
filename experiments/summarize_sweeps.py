"""Wide markdown tables (one row per swept value, one column per method) from the stored sweep reports.

    python experiments/summarize_sweeps.py experiments/results/sweeps/read-noise [more folders ...]

Reads each folder's report.csv (written by ``ffsim sweep --report``) and prints test error mean ± std
over seeds per method, in the report's order of values.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def wide(folder: Path) -> str:
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
            cells.append("—" if r is None else
                         f"{100 * float(r[metric + '_mean']):.1f} ± {100 * float(r[metric + '_std']):.1f} %")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"### {Path(arg).name}\n\n{wide(Path(arg))}\n")
