"""Parameter sweeps of FF and BP runs on dask.distributed, resumable, with reports.

A study file (TOML) names the shared settings, the methods compared, one swept quantity and the seeds::

    [study]
    name = "pcm-read-noise"
    seeds = [0, 1, 2]
    train_cases = 20000          # optional: a subset of MNIST, to keep sweeps CPU-feasible
    test_cases = 5000

    [base]                       # fields of ffsim.ff.FFConfig shared by every run
    profile = "pcm"
    layers = [500, 500]
    epochs = 3

    [[variants]]                 # the methods compared (each adds FFConfig fields)
    label = "FF in-situ"
    model = "ff"
    mode = "insitu"

    [sweep]                      # a profile key path (profile_overrides) or an FFConfig field
    parameter = "device.read_noise.q_coeff"
    values = [0.0, 0.0044, 0.0088, 0.0176]

A joint sweep moves several quantities together, one row of ``values`` per point, plotted against an
optional named axis::

    [sweep]
    parameters = ["device.read_noise.q_coeff", "device.variation.g_max_rel_std"]
    values = [[0.0, 0.0], [0.0088, 0.1], [0.0176, 0.2]]
    axis = "severity (x pcm)"
    axis_values = [0, 1, 2]

    [drift]                      # optional: after training, evaluate again at these times (s)
    times_s = [1, 3600, 86400, 31536000]

Every run is keyed by the sha256 of its full specification; a worker stores ``runs/KEY.json``
atomically when its run is complete (and the run itself checkpoints each epoch), so an interrupted sweep
resumes where it stopped and a run whose worker is killed is retried by the scheduler and ends once.
``ffsim sweep STUDY.toml --report`` rebuilds the tables (CSV, markdown) and plots from the stored runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from ffsim.io import remove_stale_temporaries, write_csv_atomic, write_json_atomic, write_png_atomic, write_text_atomic

__all__ = ["expand_study", "load_study", "report", "run_one", "run_sweep", "spec_key"]

YEAR_S = 365 * 86400.0
# swept quantities whose value 0 means "ideal" (continuous levels, an ideal converter): tabulated last
ZERO_MEANS_IDEAL = ("adc.bits", "dac.bits", "device.levels")


# ---------------------------------------------------------------------------------------------
# study files


def load_study(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a study file; errors name the file and the key."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            study = tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such study file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    allowed = {"study", "base", "variants", "sweep", "drift"}
    unknown = sorted(set(study) - allowed)
    if unknown:
        raise ValueError(f"{path}: unknown sections {unknown} (allowed: {sorted(allowed)})")
    s = study.get("study", {})
    if not isinstance(s.get("name"), str) or not s["name"]:
        raise ValueError(f"{path}: [study] name is required")
    seeds = s.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(isinstance(v, int) for v in seeds)):
        raise ValueError(f"{path}: [study] seeds must be a non-empty list of integers (got {seeds!r})")
    variants = study.get("variants") or [{"label": "run"}]
    for k, v in enumerate(variants):
        if "label" not in v:
            raise ValueError(f"{path}: [[variants]] entry {k + 1} needs a label")
    sw = study.get("sweep")
    if sw is not None:
        _check_sweep(path, sw)
    study["_path"] = str(path)
    # build every configuration once now, so that a bad field fails before any run starts
    for spec in expand_study(study):
        _config_of(spec)
    return study


def _check_sweep(path: Path, sw: dict[str, Any]) -> None:
    values = sw.get("values")
    if not isinstance(values, list) or not values:
        raise ValueError(f"{path}: [sweep] values must be a non-empty list (got {values!r})")
    unknown = sorted(set(sw) - {"parameter", "parameters", "values", "axis", "axis_values"})
    if unknown:
        raise ValueError(f"{path}: [sweep] unknown keys {unknown} "
                         "(allowed: parameter, parameters, values, axis, axis_values)")
    if ("parameter" in sw) == ("parameters" in sw):
        raise ValueError(f"{path}: [sweep] needs either parameter (one quantity) or parameters (a joint sweep)")
    if "parameter" in sw:
        if not isinstance(sw["parameter"], str):
            raise ValueError(f"{path}: [sweep] parameter must be a string (got {sw['parameter']!r})")
        if "axis" in sw or "axis_values" in sw:
            raise ValueError(f"{path}: [sweep] axis and axis_values belong to joint sweeps (parameters = [...])")
        return
    params = sw["parameters"]
    if not (isinstance(params, list) and params and all(isinstance(p, str) for p in params)):
        raise ValueError(f"{path}: [sweep] parameters must be a non-empty list of strings (got {params!r})")
    for k, row in enumerate(values):
        if not (isinstance(row, list) and len(row) == len(params)):
            raise ValueError(f"{path}: [sweep] values[{k}] must be a list of {len(params)} values, one per "
                             f"parameter (got {row!r})")
    xs = sw.get("axis_values")
    if xs is not None and not (isinstance(xs, list) and len(xs) == len(values)
                               and all(isinstance(x, int | float) for x in xs)):
        raise ValueError(f"{path}: [sweep] axis_values must be {len(values)} numbers, one per row of values "
                         f"(got {xs!r})")


def _sweep_points(sw: dict[str, Any] | None) -> list[tuple[Any, Any, dict[str, Any]]]:
    """(parameter field of the spec, value field of the spec, extra spec fields) for every point."""
    if sw is None:
        return [(None, None, {})]
    if "parameter" in sw:
        return [(sw["parameter"], v, {}) for v in sw["values"]]
    xs = sw.get("axis_values") or list(range(len(sw["values"])))
    axis = sw.get("axis", " + ".join(sw["parameters"]))
    return [(list(sw["parameters"]), list(row), {"axis": axis, "x": x})
            for row, x in zip(sw["values"], xs, strict=True)]


def _apply(cfg: dict[str, Any], param: str, value: Any) -> None:
    if param.split(".")[0] in PROFILE_SECTIONS:
        cfg["profile_overrides"] = _merge(cfg.get("profile_overrides", {}), _nested(param, value))
    else:
        cfg[param] = value


def _nested(path: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cur = out
    parts = path.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def _merge(a: dict, b: dict) -> dict:
    out = json.loads(json.dumps(a))
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


PROFILE_SECTIONS = ("device", "update", "dac", "adc", "tile", "cost")


def expand_study(study: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run of a study: variants × swept values × seeds, each a JSON-able specification."""
    s = study.get("study", {})
    base = dict(study.get("base", {}))
    specs = []
    for variant in study.get("variants") or [{"label": "run"}]:
        fields = {k: v for k, v in variant.items() if k != "label"}
        for param, value, extra in _sweep_points(study.get("sweep")):
            for seed in s.get("seeds", [0]):
                cfg = _merge(base, fields)
                cfg["seed"] = seed
                if isinstance(param, list):
                    for p, v in zip(param, value, strict=True):
                        _apply(cfg, p, v)
                elif param is not None:
                    _apply(cfg, param, value)
                spec = {"study": s["name"], "label": variant["label"], "parameter": param, "value": value,
                        "seed": seed, "config": cfg, "train_cases": s.get("train_cases"),
                        "test_cases": s.get("test_cases"), "drift": study.get("drift"), **extra}
                specs.append(spec)
    return specs


def spec_key(spec: dict[str, Any]) -> str:
    """Hash of a run's full specification (its identity in the results folder)."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _config_of(spec: dict[str, Any]):
    from ffsim.ff import FFConfig

    cfg_fields = dict(spec["config"])
    if "layers" in cfg_fields:
        cfg_fields["layers"] = tuple(cfg_fields["layers"])
    cfg = FFConfig(**cfg_fields)
    cfg.hardware()  # validate the profile with its overrides
    return cfg


# ---------------------------------------------------------------------------------------------
# one run (executed on a worker)


def run_one(spec: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Train one run (resuming its own checkpoint if a previous attempt died) and store its summary."""
    from ffsim.ff.trainer import load_run, train

    key = spec_key(spec)
    out = Path(out_dir)
    cfg = _config_of(spec)
    run_dir = out / "runs" / key
    res = train(cfg, run_dir, resume=True, progress=False, train_cases=spec.get("train_cases"),
                test_cases=spec.get("test_cases"), log=lambda m: None)
    last = res["history"][-1]
    summary = {"key": key, "spec": spec, "profile_hash": res["profile_hash"],
               "test_error_softmax": last.get("test_error_softmax"),
               "test_error_goodness": last.get("test_error_goodness"),
               "train_energy_J_per_sample": last.get("train_energy_J_per_sample"),
               "inference_energy_J_per_image_softmax": last.get("inference_energy_J_per_image_softmax"),
               "train_time_s": sum(h.get("train_time_s", 0.0) for h in res["history"])}
    drift = spec.get("drift")
    if drift:
        from ffsim.data import load_dataset
        from ffsim.experiments.drift import drift_curve

        _, model, _ = load_run(run_dir)  # the chips as they were at the end of training
        _, _, x_te, y_te = load_dataset("mnist").arrays(1, spec.get("test_cases"))
        rows = drift_curve(model, x_te, y_te, drift.get("times_s", []), compensate=drift.get("compensate", True))
        summary["drift"] = [{"time_s": r["time_s"], "error": r["error_softmax"],
                             **({"error_compensated": r["error_softmax_compensated"]}
                                if "error_softmax_compensated" in r else {})} for r in rows]
    write_json_atomic(out / "runs" / f"{key}.json", summary)
    return summary


# ---------------------------------------------------------------------------------------------
# the sweep


# the files a sweep writes at its top level (report() writes the report.* ones; tests/test_sweep.py checks the list)
_SWEEP_FILES = ("study.json", "report.csv", "report_drift.csv", "report.md", "report.png", "report_drift.png")


def run_sweep(study_path: str | os.PathLike, out: str | os.PathLike, *, scheduler: str | None = None,
              n_workers: int | None = None, progress: bool = True, runner=None, log=print) -> list[dict]:
    """Run every missing run of a study on dask.distributed; returns all stored summaries."""
    from distributed import Client, LocalCluster, as_completed

    study = load_study(study_path)
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    specs = {spec_key(s): s for s in expand_study(study)}
    # a sweep killed while writing (SIGKILL) leaves temporary files: the sweep that takes the folder over,
    # before its workers start, removes them (each run's own folder is cleaned by its training)
    remove_stale_temporaries(out, _SWEEP_FILES)
    remove_stale_temporaries(out / "runs", [f"{k}.json" for k in specs])
    write_json_atomic(out / "study.json", {k: v for k, v in study.items() if not k.startswith("_")})
    todo = {k: s for k, s in specs.items() if not (out / "runs" / f"{k}.json").is_file()}
    log(f"{len(specs)} runs, {len(specs) - len(todo)} already stored, {len(todo)} to run")
    if todo:
        import dask

        runner = runner or run_one
        if scheduler:
            client = Client(scheduler)
            cluster = None
        else:
            workers = n_workers or max(1, os.cpu_count() or 1)
            per_worker = max(1, (os.cpu_count() or 1) // workers)
            env = {"NUMBA_NUM_THREADS": str(per_worker), "OMP_NUM_THREADS": str(per_worker),
                   "OPENBLAS_NUM_THREADS": str(per_worker), "OMP_WAIT_POLICY": "PASSIVE"}
            with dask.config.set({"distributed.nanny.pre-spawn-environ": env,
                                  "distributed.scheduler.allowed-failures": 3}):
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
            client = Client(cluster)
        try:
            futures = [client.submit(runner, s, str(out), key=f"ffsim-{k}", pure=False, retries=2)
                       for k, s in todo.items()]
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(futures), desc=study["study"]["name"], unit="run")
            failures = []
            for fut in as_completed(futures):
                try:
                    fut.result()
                except Exception as exc:  # noqa: BLE001  (a failed run is reported, the others go on)
                    failures.append(f"{fut.key}: {type(exc).__name__}: {exc}")
                if bar:
                    bar.update(1)
            if bar:
                bar.close()
            if failures:
                log("failed runs:\n  " + "\n  ".join(failures))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return stored_runs(out)


def stored_runs(out: str | os.PathLike) -> list[dict]:
    runs = []
    for p in sorted((Path(out) / "runs").glob("*.json")):
        with open(p) as fh:
            runs.append(json.load(fh))
    return runs


# ---------------------------------------------------------------------------------------------
# reports


def _stats(values: list[float]) -> tuple[float, float, int]:
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def report(out: str | os.PathLike, metric: str = "test_error_softmax") -> dict[str, Any]:
    """Tables (CSV, markdown) and a plot of ``metric`` against the swept value, per method, over seeds."""
    out = Path(out)
    runs = stored_runs(out)
    if not runs:
        raise ValueError(f"{out}: no stored runs to report")
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        s = r["spec"]
        groups.setdefault((s["label"], json.dumps(s.get("x", s["value"]))), []).append(r)
    rows = []
    def order(kv):  # by method, then numerically (numbers first, 0 = "ideal/continuous" last), then by text
        v = json.loads(kv[0][1])
        if isinstance(v, int | float) and not isinstance(v, bool):
            return (kv[0][0], 0, math.inf if v == 0 and kv[1][0]["spec"].get("parameter") in ZERO_MEANS_IDEAL
                    else v, "")
        return (kv[0][0], 1, 0.0, kv[0][1])

    for (label, value), rs in sorted(groups.items(), key=order):
        m, sd, n = _stats([r.get(metric) for r in rs])
        e, _, _ = _stats([r.get("train_energy_J_per_sample") for r in rs])
        spec0 = rs[0]["spec"]
        param = spec0.get("axis", spec0["parameter"])
        rows.append({"method": label, "parameter": param, "value": json.loads(value),
                     f"{metric}_mean": m, f"{metric}_std": sd, "seeds": n, "train_energy_J_per_sample": e})
    write_csv_atomic(out / "report.csv", rows)
    param = rows[0]["parameter"] or "(none)"
    lines = [f"| method | {param} | {metric} (mean ± std over seeds) | seeds | energy / training sample |",
             "|---|---|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['value']} | {100 * r[f'{metric}_mean']:.2f} ± "
                     f"{100 * r[f'{metric}_std']:.2f} % | {r['seeds']} | {r['train_energy_J_per_sample']:.3g} J |")
    drift_rows = _drift_table(runs)
    if drift_rows:
        lines += ["", "| method | time after training | error, no compensation | error, global drift compensation "
                  "| seeds |", "|---|---:|---|---|---:|"]
        for r in drift_rows:
            comp = (f"{100 * r['error_compensated_mean']:.2f} ± {100 * r['error_compensated_std']:.2f} %"
                    if r["error_compensated_mean"] == r["error_compensated_mean"] else "—")
            lines.append(f"| {r['method']} | {_fmt_time(r['time_s'])} | {100 * r['error_mean']:.2f} ± "
                         f"{100 * r['error_std']:.2f} % | {comp} | {r['seeds']} |")
        write_csv_atomic(out / "report_drift.csv", drift_rows)
        _plot_drift(out, drift_rows)
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    _plot(out, rows, metric, param)
    return {"rows": rows, "drift_rows": drift_rows, "markdown": "\n".join(lines)}


def _fmt_time(t: float) -> str:
    for unit, sec in (("y", 365 * 86400.0), ("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if t >= sec:
            return f"{t / sec:g} {unit}"
    return f"{t:g} s"


def _drift_table(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        for d in r.get("drift") or []:
            groups.setdefault((r["spec"]["label"], d["time_s"]), []).append(d)
    rows = []
    for (label, t), ds in sorted(groups.items()):
        m, sd, n = _stats([d["error"] for d in ds])
        mc, sdc, _ = _stats([d.get("error_compensated") for d in ds])
        rows.append({"method": label, "time_s": t, "error_mean": m, "error_std": sd, "error_compensated_mean": mc,
                     "error_compensated_std": sdc, "seeds": n})
    return rows


def _plot_drift(out: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for m in sorted({r["method"] for r in rows}):
        rs = [r for r in rows if r["method"] == m]
        t = [r["time_s"] for r in rs]
        ax.errorbar(t, [100 * r["error_mean"] for r in rs], yerr=[100 * r["error_std"] for r in rs], marker="o",
                    capsize=3, label=f"{m}, no compensation")
        if any(r["error_compensated_mean"] == r["error_compensated_mean"] for r in rs):
            ax.errorbar(t, [100 * r["error_compensated_mean"] for r in rs],
                        yerr=[100 * r["error_compensated_std"] for r in rs], marker="s", ls="--", capsize=3,
                        label=f"{m}, compensated")
    ax.set_xscale("log")
    ax.set_xlabel("time after training (s)")
    ax.set_ylabel("test error (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    write_png_atomic(out / "report_drift.png", fig)


def _plot(out: Path, rows: list[dict], metric: str, param: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    methods = sorted({r["method"] for r in rows})
    numeric = all(isinstance(r["value"], int | float) for r in rows)
    cats = sorted({json.dumps(r["value"]) for r in rows})
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        xs = [r["value"] if numeric else cats.index(json.dumps(r["value"])) for r in rs]
        order = np.argsort(xs)
        ax.errorbar(np.array(xs)[order], 100 * np.array([r[f"{metric}_mean"] for r in rs])[order],
                    yerr=100 * np.array([r[f"{metric}_std"] for r in rs])[order], marker="o", capsize=3, label=m)
    if not numeric:
        ax.set_xticks(range(len(cats)), cats, rotation=30, fontsize=7)
    ax.set_xlabel(param)
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_png_atomic(out / "report.png", fig)
