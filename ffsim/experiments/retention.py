"""Crossbar retention demo: program a matrix on a chip, read it back as time passes.

At each time point the chip's MVM output for a fixed batch of inputs is compared with the ideal
``x @ W`` (relative Frobenius error), without and (for drifting devices) with global drift compensation,
and the stored weights are read back cell by cell.  Energy and latency per input vector come from the
chip's op counter and the profile's ``[cost]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import ffsim
from ffsim.crossbar import Crossbar
from ffsim.profiles import HardwareProfile, load_profile

__all__ = ["DEFAULT_TIMES_S", "format_retention", "run_retention"]

DEFAULT_TIMES_S = (0.0, 1.0, 3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run_retention(
    profile: HardwareProfile | str,
    *,
    in_features: int = 784,
    out_features: int = 256,
    batch: int = 256,
    seed: int = 0,
    fab_seed: int = 1,
    times_s: tuple[float, ...] = DEFAULT_TIMES_S,
) -> dict[str, Any]:
    """Run the demo; returns a JSON-able result with config, seeds, profile hash and one row per time."""
    prof = load_profile(profile)
    for name, v in (("in_features", in_features), ("out_features", out_features), ("batch", batch)):
        if v < 1:
            raise ValueError(f"{name} must be at least 1 (got {v})")
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((in_features, out_features)) / 3.0).astype(np.float32)
    x = rng.random((batch, in_features), dtype=np.float32)
    ideal = x @ W
    chip = Crossbar(prof, in_features, out_features, fab_seed=fab_seed, rng=rng, w_max=1.0)
    chip.program(W)
    drift = prof.device.drift.model != "none"
    rows = []
    for t in sorted(times_s):
        chip.advance(t - chip.time_s, compensate=False)
        before = chip.ops.copy()
        y = chip.forward(x)
        fwd_ops = chip.ops - before
        row = {"time_s": t, "output_rel_error": _rel(y, ideal)}
        if drift:
            chip.advance(0.0, compensate=True)
            row["output_rel_error_compensated"] = _rel(chip.forward(x), ideal)
        row["weight_rel_error"] = _rel(chip.read_weights(), W)
        e = fwd_ops.energy_J(prof.cost)
        lat = fwd_ops.latency_s(prof.cost)
        row["energy_per_vector_J"] = e["total"] / batch
        row["latency_per_vector_s"] = lat["total"] / batch
        rows.append(row)
    return {
        "kind": "crossbar_retention",
        "ffsim_version": ffsim.__version__,
        "profile": prof.name,
        "profile_hash": prof.profile_hash,
        "config": {"in_features": in_features, "out_features": out_features, "batch": batch,
                   "times_s": list(times_s), "w_max": 1.0, "weights": "N(0, 1/9)", "inputs": "U[0, 1)"},
        "seeds": {"seed": seed, "fab_seed": fab_seed},
        "rows": rows,
        "ops_total": chip.ops.as_dict(),
        "energy_total_J": chip.ops.energy_J(prof.cost),
    }


def _fmt_time(t: float) -> str:
    for unit, s in (("y", 365 * 86400.0), ("d", 86400.0), ("h", 3600.0), ("s", 1.0)):
        if t >= s:
            return f"{t / s:g} {unit}"
    return "0 s"


def format_retention(res: dict[str, Any]) -> str:
    rows = res["rows"]
    comp = "output_rel_error_compensated" in rows[0]
    head = f"{'time':>8}  {'MVM error':>10}" + (f"  {'compensated':>11}" if comp else "") + \
        f"  {'weight error':>12}  {'energy/vector':>13}  {'latency/vector':>14}"
    lines = [f"profile {res['profile']} (hash {res['profile_hash'][:12]}), "
             f"{res['config']['in_features']}x{res['config']['out_features']}, seeds {res['seeds']}", head]
    for r in rows:
        line = f"{_fmt_time(r['time_s']):>8}  {r['output_rel_error']:>10.4f}"
        if comp:
            line += f"  {r['output_rel_error_compensated']:>11.4f}"
        line += f"  {r['weight_rel_error']:>12.4f}  {r['energy_per_vector_J'] * 1e9:>10.3f} nJ" \
                f"  {r['latency_per_vector_s'] * 1e9:>11.1f} ns"
        lines.append(line)
    return "\n".join(lines)
