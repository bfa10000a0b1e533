"""Test error of a trained chip as time passes after training (conductance drift).

The chips of a trained model are let drift for increasing times after the end of training and the model
is evaluated at each time, first as the chips are (no compensation), then with global drift
compensation: the periphery re-measures a reference read of every chip and rescales its outputs
(``Crossbar.advance(..., compensate=True)``).  Only the chips change; the digital parts (biases, the
softmax head) are as trained.  ``ffsim drift RUN`` runs this on a finished ``ffsim train`` folder.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["drift_curve", "drift_run"]


def _chips(model) -> list:
    return [s.chip for s in model.stores if getattr(s, "chip", None) is not None]


def _check_times(times_s) -> list[float]:
    times = [float(t) for t in times_s]
    if not times:
        raise ValueError("drift times: give at least one time (seconds after training)")
    bad = [t for t in times if not (math.isfinite(t) and t >= 0)]
    if bad:
        raise ValueError(f"drift times must be finite and >= 0 seconds (got {bad})")
    return sorted(set(times))


def drift_curve(model, x: np.ndarray, labels: np.ndarray, times_s, *, compensate: bool = True,
                which: tuple[str, ...] = ("softmax",)) -> list[dict[str, Any]]:
    """Evaluate ``model`` at each time (seconds after now) as its chips drift.

    Parameters
    ----------
    model : a trained FF or BP model (its chips are modified: they age).
    x, labels : evaluation images and labels.
    times_s : times after training in seconds; evaluated in increasing order.
    compensate : also evaluate with global drift compensation at each time (profiles with drift only).
    which : evaluations, ``"softmax"`` and/or ``"goodness"``.

    Returns
    -------
    One row per time: ``time_s``, ``error_<which>`` and, with compensation, ``error_<which>_compensated``.
    """
    times = _check_times(times_s)
    chips = _chips(model)
    can_compensate = compensate and bool(chips) and chips[0].profile.device.drift.model != "none"
    t = 0.0
    rows = []
    for t_eval in times:
        for chip in chips:
            chip.advance(t_eval - t, compensate=False)
        t = t_eval
        ev = model.evaluate(x, labels, which=which)
        row: dict[str, Any] = {"time_s": t_eval, **{f"error_{w}": ev[f"error_{w}"] for w in which}}
        if can_compensate:
            for chip in chips:
                chip.advance(0.0, compensate=True)
            ev = model.evaluate(x, labels, which=which)
            row.update({f"error_{w}_compensated": ev[f"error_{w}"] for w in which})
        rows.append(row)
    return rows


def drift_run(run_dir: str | Path, times_s, *, compensate: bool = True, which: tuple[str, ...] = ("softmax",),
              test_cases: int | None = None, dataset: str = "mnist") -> dict[str, Any]:
    """:func:`drift_curve` on a finished ``ffsim train`` folder; stores ``drift.json`` and ``drift.csv`` there."""
    from ffsim.data import load_dataset
    from ffsim.ff.trainer import load_run
    from ffsim.io import remove_stale_temporaries, write_csv_atomic, write_json_atomic

    run_dir = Path(run_dir)
    times = _check_times(times_s)
    remove_stale_temporaries(run_dir, ["drift.json", "drift.csv"])  # (left by a drift run killed while writing)
    ds = load_dataset(dataset)
    _, _, x_te, y_te = ds.arrays(1, test_cases)
    cfg, model, results = load_run(run_dir, x_te.shape[1], ds.num_classes)
    if "goodness" in which and cfg.model not in ("ff", "ff-recurrent"):
        raise ValueError(f"drift: the goodness evaluation needs a supervised FF model (the run is {cfg.model!r})")
    rows = drift_curve(model, x_te, y_te, times, compensate=compensate, which=which)
    out = {"run": str(run_dir), "config": cfg.as_dict(), "profile_hash": results.get("profile_hash"),
           "test_cases": len(y_te), "compensate": compensate, "which": list(which), "rows": rows}
    write_json_atomic(run_dir / "drift.json", out)
    write_csv_atomic(run_dir / "drift.csv", rows)
    return out
