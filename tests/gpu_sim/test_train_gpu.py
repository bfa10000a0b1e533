"""``ffsim train --backend gpu`` in the CUDA simulator: the run records the GPU backend and its learning
curve equals the CPU run's (same seeds, same draws), on chips (pcm in-situ and hybrid) and in ideal mode
(float weights on the device), with the FF engine on the device."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from ffsim.cli import main

# the simulator runs one Python thread per CUDA thread: 4x4 images, not MNIST
TINY = ["--layers", "6,6", "--eval-train-cases", "0", "--batch-size", "20", "--epochs", "1", "--no-progress"]


def _dataset(path):
    rng = np.random.default_rng(0)
    y_tr, y_te = np.arange(40) % 10, np.arange(10)
    x_tr = rng.integers(0, 80, (40, 4, 4)) + 15 * y_tr[:, None, None]
    x_te = rng.integers(0, 80, (10, 4, 4)) + 15 * y_te[:, None, None]
    np.savez(path, x_train=x_tr.astype(np.uint8), y_train=y_tr.astype(np.uint8), x_test=x_te.astype(np.uint8),
             y_test=y_te.astype(np.uint8))
    return str(path)


def _train(out, backend, monkeypatch, profile):
    monkeypatch.setenv("FFSIM_BACKEND", "cpu")  # restored after the test, whatever --backend sets
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["train", "--out", str(out), "--backend", backend, "--dataset", _dataset(out.parent / "d.npz"),
                   "--profile", profile, *TINY])
    assert rc == 0, err.getvalue()
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("profile", ["pcm", "ideal"])
def test_train_on_gpu_simulator_equals_cpu(tmp_path, monkeypatch, profile):
    gpu = _train(tmp_path / "gpu", "gpu", monkeypatch, profile)
    cpu = _train(tmp_path / "cpu", "cpu", monkeypatch, profile)
    from ffsim.gpu import blas, settings

    rec = settings()  # the settings in force, TF32 (which changes results) among them
    assert set(rec) == {"tf32", "direct_blas", "graph", "compact", "streams", "fast_launch"}
    assert rec["tf32"] is blas.TF32
    assert gpu["backend"] == {"weights": "gpu", "simulated": True, "engine": "gpu", "requested": "gpu",
                              "gpu_settings": rec}
    assert cpu["backend"] == {"weights": "cpu", "simulated": False, "engine": "cpu", "requested": "cpu"}
    assert gpu["seeds"] == cpu["seeds"] and gpu["profile_hash"] == cpu["profile_hash"]

    def untimed(r):
        return [{k: v for k, v in h.items() if not k.endswith("_time_s")} for h in r["history"]]

    hg, hc = untimed(gpu), untimed(cpu)
    for a, b in zip(hg, hc, strict=True):
        for k, v in b.items():
            if "energy" in k or "latency" in k:  # per-row sums in another order: equal to rounding
                assert abs(a[k] - v) <= 1e-9 * abs(v), k
            else:
                assert a[k] == v, k
