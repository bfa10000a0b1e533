"""``ffsim drift``: a trained run evaluated as its chips drift after training (tiny runs, in-process)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ffsim.profiles import load_profile
from tests.test_train_cli import assert_no_traceback, results, run_cli, train

TIMES = "1,3600,31536000"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("drift")
    out = {}
    for prof, mode in (("ideal", "ideal"), ("pcm", "hybrid")):
        out[prof] = base / prof
        rc, so, se = train(out[prof], "--epochs", "1", "--profile", prof, "--mode", mode)
        assert rc == 0, se
    return out


def _drift(run: Path, tmp_path: Path, *extra: str) -> tuple[dict, str]:
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    # a drift run killed while writing leaves its temporary: the next one removes it, and only its own
    stale, other = copy / ".drift.csv.k1ll3d.tmp", copy / ".notes.txt.k1ll3d.tmp"
    stale.write_text("partial")
    other.write_text("partial")
    rc, so, se = run_cli(["drift", str(copy), "--times", TIMES, "--test-cases", "100", *extra])
    assert rc == 0, se
    assert_no_traceback(so, se)
    assert not stale.exists() and other.exists()
    return json.loads((copy / "drift.json").read_text()), so


def test_ideal_chip_does_not_drift(runs, tmp_path):
    d, so = _drift(runs["ideal"], tmp_path, "--which", "softmax,goodness")
    final = results(runs["ideal"])["history"][-1]
    assert [r["time_s"] for r in d["rows"]] == [1.0, 3600.0, 31536000.0]
    for r in d["rows"]:
        assert r["error_softmax"] == final["test_error_softmax"]
        assert r["error_goodness"] == final["test_error_goodness"]
        assert "error_softmax_compensated" not in r  # no drift, nothing to compensate
    assert d["profile_hash"] == load_profile("ideal").profile_hash and d["test_cases"] == 100
    assert "| 3.1536e+07 |" in so


def test_pcm_drift_rows_and_determinism(runs, tmp_path):
    a, _ = _drift(runs["pcm"], tmp_path / "a")
    b, _ = _drift(runs["pcm"], tmp_path / "b")
    assert a["rows"] == b["rows"]  # the same stored chips and seeds give the same curve
    assert a["profile_hash"] == load_profile("pcm").profile_hash
    for r in a["rows"]:
        assert 0 <= r["error_softmax"] <= 1 and 0 <= r["error_softmax_compensated"] <= 1
    assert (tmp_path / "a" / "pcm" / "drift.csv").read_text().startswith("time_s,")


def test_drift_leaves_the_run_untouched(runs, tmp_path):
    before = (runs["pcm"] / "checkpoint.npz").read_bytes()
    _drift(runs["pcm"], tmp_path)
    assert (runs["pcm"] / "checkpoint.npz").read_bytes() == before
    assert not (runs["pcm"] / "drift.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["--times", "1,-5"], "drift times must be finite and >= 0 seconds (got [-5.0])"),
    (["--times", "1,a"], "--times must be comma-separated seconds"),
    (["--which", "energy"], "--which must name softmax and/or goodness"),
])
def test_bad_arguments_name_the_problem(runs, argv, message):
    rc, so, se = run_cli(["drift", str(runs["ideal"]), *argv])
    assert rc == 2 and message in se
    assert_no_traceback(so, se)


def test_not_a_run_folder(tmp_path):
    rc, so, se = run_cli(["drift", str(tmp_path)])
    assert rc == 2 and "no results.json" in se and str(tmp_path) in se
