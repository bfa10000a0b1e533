"""A run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["train", "--profile", "pcm", "--mode", "insitu", "--layers", "64,64", "--epochs", "4", "--train-cases", "3000",
        "--test-cases", "200", "--eval-train-cases", "200", "--batch-size", "100", "--seed", "3", "--fab-seed", "2",
        "--no-progress"]


def _run(out: Path, extra=()):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "ffsim", *ARGS, "--out", str(out), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _strip(history):
    return [{k: v for k, v in h.items() if not k.endswith("_time_s")} for h in history]


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical(tmp_path):
    full = tmp_path / "full"
    p = _run(full)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err

    killed = tmp_path / "killed"
    p = _run(killed)
    deadline = time.time() + 600
    ckpt = killed / "checkpoint.json"
    while time.time() < deadline:
        if ckpt.is_file():
            try:
                if json.loads(ckpt.read_text())["epoch"] >= 1:
                    break
            except (json.JSONDecodeError, KeyError):
                pass  # cannot happen with atomic writes, but do not fail the poll on it
        if p.poll() is not None:
            break
        time.sleep(0.01)
    assert p.poll() is None, "the run finished before it could be killed; make the test run longer"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=60)
    epoch_killed = json.loads(ckpt.read_text())["epoch"]
    assert 1 <= epoch_killed < 4
    # results.json is written just after each epoch's checkpoint: a kill between the two leaves it one epoch behind
    assert not (killed / "results.json").is_file() or \
        len(json.loads((killed / "results.json").read_text())["history"]) in (epoch_killed - 1, epoch_killed)

    p = _run(killed, ["--resume"])
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert f"resuming {killed} after epoch {epoch_killed}" in err

    a = json.loads((full / "results.json").read_text())
    b = json.loads((killed / "results.json").read_text())
    assert _strip(a["history"]) == _strip(b["history"])
    assert a["ops_total"] == b["ops_total"]
    with np.load(full / "checkpoint.npz") as fa, np.load(killed / "checkpoint.npz") as fb:
        assert sorted(fa.files) == sorted(fb.files)
        for k in fa.files:
            np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)
    assert not list(killed.glob(".*.tmp"))  # no temporary files left behind


def test_stale_temporaries_of_a_killed_writer_are_removed_and_nothing_else(tmp_path):
    from ffsim.io import remove_stale_temporaries

    stale = [tmp_path / ".results.json.k3j9x_2a.tmp", tmp_path / ".checkpoint.npz.zz01.tmp"]
    keep = [tmp_path / ".notes.txt.ab12.tmp", tmp_path / "results.json", tmp_path / ".results.json.tmpx",
            tmp_path / "results.json.ab.tmp"]
    for f in stale + keep:
        f.write_text("x")
    removed = remove_stale_temporaries(tmp_path, ["results.json", "checkpoint.npz"])
    assert sorted(removed) == sorted(stale)
    assert all(f.is_file() for f in keep) and not any(f.exists() for f in stale)
