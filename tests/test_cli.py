"""The ``ffsim`` command line: ``profiles list|show`` and ``crossbar-demo``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ffsim
from ffsim.cli import main
from ffsim.experiments.retention import DEFAULT_TIMES_S
from ffsim.profiles import list_profiles, load_profile

SHIPPED = ("ideal", "digital-int8", "pcm", "rram-hfo2", "ecram", "high-variability")
REPO = Path(ffsim.__file__).resolve().parents[1]
SMALL = ["--in-features", "64", "--out-features", "32", "--batch", "16"]

BAD_PROFILE = """\
[meta]
name = "bad"
description = "A profile with an out-of-range ADC resolution."

[device]
mapping = "differential"
g_min_uS = 0.0
g_max_uS = 25.0

[device.sources]
g_min_uS = "test"
g_max_uS = "test"

[adc]
bits = -3

[adc.sources]
bits = "test"
"""

GOOD_PROFILE = BAD_PROFILE.replace('name = "bad"', 'name = "good"').replace("bits = -3", "bits = 6")


@pytest.fixture(autouse=True)
def _no_user_profile_path(monkeypatch):
    monkeypatch.delenv("FFSIM_PROFILE_PATH", raising=False)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``ffsim ARGV`` in-process: (exit status, stdout, stderr), as the shell would see them.

    A ``SystemExit`` is turned into the status the interpreter would exit with (a string code is
    printed to stderr and gives status 1). Any other exception propagates and fails the test.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:
            if exc.code is None:
                rc = 0
            elif isinstance(exc.code, int):
                rc = exc.code
            else:
                print(exc.code, file=sys.stderr)
                rc = 1
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def bad_profile(tmp_path) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(BAD_PROFILE, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# profiles list / show


def test_profiles_list():
    rc, out, err = run_cli(["profiles", "list"])
    assert rc == 0, err
    lines = out.splitlines()
    for name in SHIPPED:
        line = next((ln for ln in lines if ln.split() and ln.split()[0] == name), None)
        assert line is not None, f"{name} not listed:\n{out}"
        m = re.match(rf"^{re.escape(name)}\s+([0-9a-f]{{12}})\s+\S", line)
        assert m, line
        assert m.group(1) == load_profile(name).profile_hash[:12]
    assert "INVALID" not in out


def test_profiles_list_includes_user_folder_and_flags_invalid(tmp_path, monkeypatch):
    (tmp_path / "good.toml").write_text(GOOD_PROFILE, encoding="utf-8")
    (tmp_path / "bad.toml").write_text(BAD_PROFILE, encoding="utf-8")
    monkeypatch.setenv("FFSIM_PROFILE_PATH", str(tmp_path))
    rc, out, err = run_cli(["profiles", "list"])
    assert rc == 0, err
    good = next(ln for ln in out.splitlines() if ln.startswith("good "))
    assert load_profile(tmp_path / "good.toml").profile_hash[:12] in good
    bad = next(ln for ln in out.splitlines() if ln.startswith("bad "))
    assert "INVALID" in bad and "adc.bits" in bad
    for name in SHIPPED:
        assert re.search(rf"(?m)^{re.escape(name)}\s+[0-9a-f]{{12}}\s", out)


def test_profiles_show_pcm():
    p = load_profile("pcm")
    rc, out, err = run_cli(["profiles", "show", "pcm"])
    assert rc == 0, err
    assert p.profile_hash in out
    assert "µS" in out
    assert "device.g_max_uS" in out
    assert p.source_of("device.g_max_uS") in out
    assert p.source_of("device.drift.nu_mean_ln_coeff") in out
    assert err == ""


def test_profiles_show_by_path(tmp_path):
    path = tmp_path / "good.toml"
    path.write_text(GOOD_PROFILE, encoding="utf-8")
    rc, out, err = run_cli(["profiles", "show", str(path)])
    assert rc == 0, err
    assert str(path) in out
    assert load_profile(path).profile_hash in out


def _assert_bad_profile_report(rc: int, out: str, err: str, path: Path) -> None:
    assert rc == 2, (rc, out, err)
    assert str(path) in err
    assert "adc.bits" in err
    assert "-3" in err
    assert ">= 0" in err  # what is allowed
    assert "Traceback" not in out + err
    assert "adc.bits" not in out


def test_profiles_show_bad_file_in_process(bad_profile):
    rc, out, err = run_cli(["profiles", "show", str(bad_profile)])
    _assert_bad_profile_report(rc, out, err, bad_profile)


def test_profiles_show_bad_file_subprocess(bad_profile):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("FFSIM_PROFILE_PATH", None)
    proc = subprocess.run([sys.executable, "-m", "ffsim", "profiles", "show", str(bad_profile)],
                          capture_output=True, text=True, env=env, cwd=bad_profile.parent, timeout=120)
    _assert_bad_profile_report(proc.returncode, proc.stdout, proc.stderr, bad_profile)


def test_profiles_show_unknown_name():
    rc, out, err = run_cli(["profiles", "show", "pcn"])
    assert rc == 2
    assert "did you mean 'pcm'" in err
    assert "pcn" in err
    assert "Traceback" not in out + err


def test_profiles_show_missing_file(tmp_path):
    path = tmp_path / "nowhere.toml"
    rc, out, err = run_cli(["profiles", "show", str(path)])
    assert rc == 2
    assert str(path) in err and "no such file" in err


def test_profiles_show_without_name_is_a_usage_error():
    """A missing argument is a user-input error: one message and exit status 2, like argparse's."""
    rc, out, err = run_cli(["profiles", "show"])
    assert "profile name" in err
    assert rc == 2


def test_unknown_action_is_a_usage_error():
    rc, out, err = run_cli(["profiles", "lst"])
    assert rc == 2
    assert "invalid choice" in err


# --------------------------------------------------------------------------------------------------
# crossbar-demo


def _demo(tmp_path_factory, profile: str, name: str, *extra: str):
    out_dir = tmp_path_factory.mktemp(name) / "run"
    rc, out, err = run_cli(["crossbar-demo", "--profile", profile, *SMALL, "--out", str(out_dir), *extra])
    assert rc == 0, err
    data = json.loads((out_dir / "retention.json").read_text(encoding="utf-8"))
    return out, data, out_dir


@pytest.fixture(scope="module")
def pcm_run(tmp_path_factory):
    return _demo(tmp_path_factory, "pcm", "pcm")


def test_crossbar_demo_pcm_table_and_json(pcm_run):
    out, data, out_dir = pcm_run
    # the printed table: a header and one line per time point
    assert "MVM error" in out and "compensated" in out
    lines = out.splitlines()
    for label in ("0 s", "1 s", "1 h", "1 d", "30 d", "1 y"):
        assert any(ln.strip().startswith(label) for ln in lines), (label, out)
    assert str(out_dir / "retention.json") in out
    # the JSON
    assert data["profile"] == "pcm"
    assert data["profile_hash"] == load_profile("pcm").profile_hash
    assert data["seeds"] == {"seed": 0, "fab_seed": 1}
    assert data["config"]["in_features"] == 64 and data["config"]["out_features"] == 32
    assert data["config"]["batch"] == 16
    rows = data["rows"]
    assert len(rows) == 6
    assert [r["time_s"] for r in rows] == list(DEFAULT_TIMES_S)
    assert rows[-1]["time_s"] == 365 * 86400.0


def test_crossbar_demo_pcm_drift(pcm_run):
    _, data, _ = pcm_run
    rows = data["rows"]
    err = [r["output_rel_error"] for r in rows]
    comp = [r["output_rel_error_compensated"] for r in rows]
    assert all(0 < e < 10 for e in err)
    # drift makes the error grow: every time point after the drift reference t0 = 20 s is worse than
    # the fresh chip and worse than the one before, and a year is clearly worse than 0 s
    drifting = [e for r, e in zip(rows, err, strict=True) if r["time_s"] >= 3600.0]
    assert all(e > err[0] for e in drifting)
    assert all(b > a for a, b in zip(drifting, drifting[1:], strict=False))
    assert err[-1] > 2 * err[0]
    # global drift compensation helps after a year
    assert comp[-1] < err[-1]
    assert comp[-1] < 0.75 * err[-1]


def test_crossbar_demo_is_deterministic(pcm_run, tmp_path_factory):
    _, first, _ = pcm_run
    _, second, _ = _demo(tmp_path_factory, "pcm", "pcm-again")
    assert second["rows"] == first["rows"]
    assert second == first


def test_crossbar_demo_seeds_are_recorded_and_used(pcm_run, tmp_path_factory):
    _, first, _ = pcm_run
    _, other, _ = _demo(tmp_path_factory, "pcm", "pcm-seeds", "--seed", "3", "--fab-seed", "7")
    assert other["seeds"] == {"seed": 3, "fab_seed": 7}
    assert other["profile_hash"] == first["profile_hash"]
    assert other["rows"] != first["rows"]


def test_crossbar_demo_ideal_is_exact(tmp_path_factory):
    out, data, _ = _demo(tmp_path_factory, "ideal", "ideal")
    assert data["profile_hash"] == load_profile("ideal").profile_hash
    assert len(data["rows"]) == 6
    for r in data["rows"]:
        assert r["output_rel_error"] < 1e-5
        assert r["weight_rel_error"] < 1e-5
    assert "compensated" not in out  # no drift, no compensation column


def test_crossbar_demo_replaces_results_atomically(tmp_path):
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    target = out_dir / "retention.json"
    target.write_text('{"old": true}\n', encoding="utf-8")
    (out_dir / "notes.txt").write_text("keep me", encoding="utf-8")
    old_inode = target.stat().st_ino
    with open(target, encoding="utf-8") as reader:  # a reader holding the old file
        rc, out, err = run_cli(["crossbar-demo", "--profile", "ideal", *SMALL, "--out", str(out_dir)])
        assert rc == 0, err
        # replaced by a rename, not rewritten in place: the open reader still sees the old content
        assert reader.read() == '{"old": true}\n'
    assert target.stat().st_ino != old_inode
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["profile"] == "ideal" and "old" not in data
    assert sorted(os.listdir(out_dir)) == ["notes.txt", "retention.json"]  # no temporary files left
    assert (out_dir / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_crossbar_demo_bad_profile(bad_profile):
    rc, out, err = run_cli(["crossbar-demo", "--profile", str(bad_profile), *SMALL])
    assert rc == 2
    assert str(bad_profile) in err and "adc.bits" in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("flag, value", [("--batch", "0"), ("--in-features", "0"), ("--out-features", "-1")])
def test_crossbar_demo_rejects_bad_sizes(flag, value):
    argv = ["crossbar-demo", "--profile", "ideal", "--in-features", "8", "--out-features", "4",
            "--batch", "2", flag, value]
    rc, out, err = run_cli(argv)  # an unexpected exception (a traceback for the user) fails the test
    assert rc == 2
    assert err.startswith("ffsim")
    assert "Traceback" not in out + err


def test_crossbar_demo_out_is_an_existing_file(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x", encoding="utf-8")
    rc, out, err = run_cli(["crossbar-demo", "--profile", "ideal", "--in-features", "8", "--out-features",
                            "4", "--batch", "2", "--out", str(not_a_folder)])
    assert rc == 2
    assert str(not_a_folder) in err
    assert not_a_folder.read_text(encoding="utf-8") == "x"


def test_list_profiles_matches_cli_names():
    rc, out, _ = run_cli(["profiles", "list"])
    assert rc == 0
    names = [ln.split()[0] for ln in out.splitlines() if ln.strip()]
    assert names == list(list_profiles())
