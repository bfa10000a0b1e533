"""Sweeps on dask.distributed: grid expansion, bad study files, resume, a killed worker's run retried."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ffsim.experiments import sweep
from ffsim.experiments.sweep import expand_study, load_study, report, run_one, run_sweep, spec_key

STUDY = """
[study]
name = "tiny"
seeds = [0]
train_cases = 200
test_cases = 60

[base]
profile = "ecram"
layers = [12, 12]
epochs = 1
batch_size = 50
eval_train_cases = 0

[[variants]]
label = "FF in-situ"
model = "ff"
mode = "insitu"

[sweep]
parameter = "adc.bits"
values = [6, 9]
"""


def _write(tmp_path: Path, text: str = STUDY, name: str = "study.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_expansion_keys_and_overrides(tmp_path):
    text = STUDY.replace("seeds = [0]", "seeds = [0, 1, 2]") + """
[[variants]]
label = "BP model"
model = "bp"
mode = "model"
"""
    study = load_study(_write(tmp_path, text))
    specs = expand_study(study)
    assert len(specs) == 2 * 2 * 3  # variants x values x seeds
    keys = {spec_key(s) for s in specs}
    assert len(keys) == len(specs)
    assert spec_key(specs[0]) == spec_key(json.loads(json.dumps(specs[0])))  # stable under a JSON round trip
    s = specs[0]
    assert s["config"]["profile_overrides"] == {"adc": {"bits": 6}}
    assert s["config"]["seed"] == 0 and s["config"]["profile"] == "ecram"
    lr_study = load_study(_write(tmp_path, STUDY.replace('parameter = "adc.bits"', 'parameter = "lr"')
                                 .replace("values = [6, 9]", "values = [0.001, 0.003]"), "lr.toml"))
    assert expand_study(lr_study)[1]["config"]["lr"] == 0.003


@pytest.mark.parametrize("edit, message", [
    (("[sweep]", "[sweeps]"), "unknown sections ['sweeps']"),
    (('name = "tiny"', ""), "[study] name is required"),
    (("seeds = [0]", "seeds = [0.5]"), "seeds must be a non-empty list of integers"),
    (("values = [6, 9]", "values = []"), "[sweep] values must be a non-empty list"),
    (('parameter = "adc.bits"', 'parameter = "adc.bits"\nparameters = ["dac.bits"]'), "either parameter"),
    (('parameter = "adc.bits"', 'parameters = ["adc.bits", "dac.bits"]'), "values[0] must be a list of 2 values"),
    (('parameter = "adc.bits"', 'parameter = "adc.bits"\naxis = "s"'), "axis and axis_values belong to joint"),
    (('parameter = "adc.bits"\nvalues = [6, 9]', 'parameters = ["adc.bits"]\nvalues = [[6], [9]]\naxis_values = [1]'),
     "axis_values must be 2 numbers"),
    (("epochs = 1", "epochs = 0"), "epochs = 0: must be >= 1"),
    (("values = [6, 9]", "values = [6, 1]"), "adc.bits = 1"),
    (('parameter = "adc.bits"', 'parameter = "adc.bitz"'), "did you mean 'bits'"),
])
def test_bad_study_files_name_the_problem(tmp_path, edit, message):
    with pytest.raises((ValueError,), match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        load_study(_write(tmp_path, STUDY.replace(*edit)))


JOINT = STUDY.replace('parameter = "adc.bits"\nvalues = [6, 9]', """\
parameters = ["adc.bits", "device.variation.g_max_rel_std"]
values = [[9, 0.0], [6, 0.2]]
axis = "severity"
axis_values = [0, 1]""")


def test_joint_sweep_sets_every_parameter_of_a_point(tmp_path):
    specs = expand_study(load_study(_write(tmp_path, JOINT)))
    assert len(specs) == 2
    hi = next(s for s in specs if s["x"] == 1)
    assert hi["config"]["profile_overrides"] == {"adc": {"bits": 6}, "device": {"variation": {"g_max_rel_std": 0.2}}}
    assert hi["axis"] == "severity" and hi["value"] == [6, 0.2]
    # single-parameter specs carry no axis fields, so their keys (and stored runs) are unchanged
    assert "x" not in expand_study(load_study(_write(tmp_path, STUDY, "single.toml")))[0]


def test_report_of_a_joint_sweep_uses_the_axis(tmp_path):
    out = tmp_path / "joint"
    (out / "runs").mkdir(parents=True)
    for k, (x, err) in enumerate([(0, 0.1), (0, 0.3), (2, 0.5)]):
        spec = {"label": "A", "parameter": ["p", "q"], "value": [x, 2 * x], "axis": "severity", "x": x, "seed": k}
        (out / "runs" / f"r{k}.json").write_text(json.dumps({"key": f"r{k}", "spec": spec, "test_error_softmax": err,
                                                              "train_energy_J_per_sample": 1e-6}))
    rep = report(out)
    assert [(r["value"], r["seeds"]) for r in rep["rows"]] == [(0, 2), (2, 1)]
    assert rep["rows"][0]["test_error_softmax_mean"] == pytest.approx(0.2)
    assert rep["markdown"].startswith("| method | severity |")


def _die_once(spec, out_dir):
    """A runner whose worker process dies the first time it starts the adc.bits = 6 run."""
    marker = Path(out_dir) / f"died-{spec_key(spec)}"
    if spec["value"] == 6 and not marker.exists():
        marker.write_text("dying")
        os._exit(1)
    return run_one(spec, out_dir)


@pytest.mark.slow
def test_sweep_survives_a_killed_worker_and_resumes(tmp_path):
    study = _write(tmp_path)
    out = tmp_path / "out"
    logs = []
    runs = run_sweep(study, out, n_workers=2, progress=False, runner=_die_once, log=logs.append)
    assert len(runs) == 2
    died = list(out.glob("died-*"))
    assert len(died) == 1  # the worker running adc.bits = 6 was killed once ...
    files = sorted((out / "runs").glob("*.json"))
    assert len(files) == 2  # ... and its run was retried and stored exactly once
    for r in runs:
        assert 0 <= r["test_error_softmax"] <= 1 and r["spec"]["value"] in (6, 9)
    # an interrupted sweep: drop one stored result, run again; only that run is redone
    keep, drop = files
    stamp = keep.stat().st_mtime_ns
    drop.unlink()
    # what a sweep killed while writing leaves: removed when the next sweep takes the folder over; a file
    # that is not one of the sweep's temporaries stays
    stale = [out / ".report.md.k1ll3d.tmp", out / "runs" / f".{drop.name}.k1ll3d.tmp"]
    other = out / ".notes.txt.k1ll3d.tmp"
    for f in (*stale, other):
        f.write_text("partial")
    logs.clear()
    runs2 = run_sweep(study, out, n_workers=1, progress=False, log=logs.append)
    assert not any(f.exists() for f in stale) and other.exists()
    assert "2 runs, 1 already stored, 1 to run" in logs[0]
    assert keep.stat().st_mtime_ns == stamp
    assert len(runs2) == 2 and len(list((out / "runs").glob("*.json"))) == 2
    assert {r["key"] for r in runs2} == {r["key"] for r in runs}
    logs.clear()
    run_sweep(study, out, n_workers=1, progress=False, log=logs.append)
    assert "2 already stored, 0 to run" in logs[0]


def test_report_means_and_stds(tmp_path):
    out = tmp_path / "rep"
    (out / "runs").mkdir(parents=True)
    for k, (label, value, err) in enumerate([("A", 1, 0.10), ("A", 1, 0.20), ("A", 2, 0.30), ("B", 1, 0.05)]):
        spec = {"label": label, "parameter": "x", "value": value, "seed": k}
        (out / "runs" / f"r{k}.json").write_text(json.dumps({"key": f"r{k}", "spec": spec, "test_error_softmax": err,
                                                              "train_energy_J_per_sample": 1e-6}))
    rep = report(out)
    a1 = next(r for r in rep["rows"] if r["method"] == "A" and r["value"] == 1)
    assert a1["test_error_softmax_mean"] == pytest.approx(0.15)
    assert a1["test_error_softmax_std"] == pytest.approx(0.0707107, rel=1e-5)
    assert a1["seeds"] == 2
    assert (out / "report.md").read_text().count("\n") == 2 + 3
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "report.csv").is_file()


def test_report_tabulates_drift(tmp_path):
    out = tmp_path / "drift"
    (out / "runs").mkdir(parents=True)
    for seed, errs in enumerate([(0.10, 0.30, 0.12), (0.12, 0.34, 0.14)]):
        spec = {"label": "FF", "parameter": None, "value": None, "seed": seed}
        drift = [{"time_s": 1.0, "error": errs[0], "error_compensated": errs[0]},
                 {"time_s": 31536000.0, "error": errs[1], "error_compensated": errs[2]}]
        (out / "runs" / f"r{seed}.json").write_text(json.dumps({"key": f"r{seed}", "spec": spec, "drift": drift,
                                                                 "test_error_softmax": errs[0]}))
    rep = report(out)
    year = next(r for r in rep["drift_rows"] if r["time_s"] == 31536000.0)
    assert year["error_mean"] == pytest.approx(0.32) and year["error_compensated_mean"] == pytest.approx(0.13)
    assert year["seeds"] == 2
    assert "1 y" in rep["markdown"] and (out / "report_drift.png").is_file()
    # every file the report writes is one a sweep taking the folder over knows (and cleans temporaries of)
    written = {p.name for p in out.iterdir() if p.is_file()}
    assert written == {"report.csv", "report_drift.csv", "report.md", "report.png", "report_drift.png"}
    assert written <= set(sweep._SWEEP_FILES)


def test_report_orders_values_numerically_with_ideal_zero_last(tmp_path):
    out = tmp_path / "order"
    (out / "runs").mkdir(parents=True)
    for k, v in enumerate([16, 0, 4, 64]):
        spec = {"label": "A", "parameter": "adc.bits", "value": v, "seed": 0}
        (out / "runs" / f"r{k}.json").write_text(json.dumps({"key": f"r{k}", "spec": spec, "test_error_softmax": 0.1,
                                                              "train_energy_J_per_sample": 1e-6}))
    assert [r["value"] for r in report(out)["rows"]] == [4, 16, 64, 0]


def test_run_one_evaluates_drift_after_training(tmp_path):
    text = STUDY.replace('profile = "ecram"', 'profile = "pcm"').replace("values = [6, 9]", "values = [8]") + """
[drift]
times_s = [31536000.0, 1.0]
compensate = true
"""
    spec = expand_study(load_study(_write(tmp_path, text)))[0]
    summary = run_one(spec, str(tmp_path / "out"))
    assert [d["time_s"] for d in summary["drift"]] == [1.0, 31536000.0]  # evaluated in time order
    for d in summary["drift"]:
        assert 0 <= d["error"] <= 1 and 0 <= d["error_compensated"] <= 1
    stored = json.loads((tmp_path / "out" / "runs" / f"{spec_key(spec)}.json").read_text())
    assert stored["drift"] == summary["drift"]
