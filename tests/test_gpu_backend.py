"""The array-backend seam and the GPU twin, tested without a GPU.

* backend selection: argument, ``FFSIM_BACKEND``, a bad value's error, the one-line CPU fallback;
* the CPU path imports neither numba.cuda nor CuPy;
* ``tests/gpu_sim`` (kernel twins and a Crossbar on 'gpu') in a subprocess with the CUDA simulator
  (``NUMBA_ENABLE_CUDASIM=1`` must be set before numba is imported);
* every CUDA kernel compiled to PTX by NVVM, as on a real GPU (the simulator runs the Python source and
  misses what numba-cuda cannot type); needs libNVVM only, no GPU, e.g. ``pip install nvidia-cuda-nvcc-cu12``
  and ``CUDA_HOME=<site-packages>/nvidia/cuda_nvcc``; skipped where numba finds no NVVM;
* on a machine with a GPU (CuPy and numba.cuda), a Crossbar on the GPU against the CPU; skipped otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ffsim import Crossbar, backend
from ffsim.backend import ENV_VAR, requested_backend, select_backend

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh(monkeypatch):
    """A process state in which no backend was selected yet."""
    monkeypatch.setattr(backend, "_cache", {})
    monkeypatch.setattr(backend, "_notice_printed", False)
    monkeypatch.delenv(ENV_VAR, raising=False)
    return monkeypatch


def test_default_is_cpu(fresh):
    b = select_backend()
    assert (b.name, b.xp, b.simulated, b.is_gpu) == ("cpu", np, False, False)
    a = np.arange(3.0)
    assert b.to_host(b.to_device(a)) is a


def test_name_from_argument_then_environment(fresh):
    fresh.setenv(ENV_VAR, "cpu")
    assert requested_backend() == "cpu"
    fresh.setenv(ENV_VAR, " GPU ")
    assert requested_backend() == "gpu"
    assert requested_backend("cpu") == "cpu"
    fresh.setenv(ENV_VAR, "")
    assert requested_backend() == "cpu"


def test_bad_environment_value_names_the_variable_and_the_choices(fresh):
    fresh.setenv(ENV_VAR, "tpu")
    with pytest.raises(ValueError, match=r"FFSIM_BACKEND='tpu'.*allowed values: cpu, gpu"):
        select_backend()
    with pytest.raises(ValueError, match=r"'cuda'.*cpu, gpu.*FFSIM_BACKEND"):
        select_backend("cuda")


def test_gpu_without_a_gpu_falls_back_with_one_line(fresh, capsys):
    fresh.setattr(backend, "_probe_gpu", lambda: (None, False, "test: none here"))
    fresh.setenv(ENV_VAR, "gpu")
    assert select_backend().name == "cpu"
    assert select_backend("gpu").name == "cpu"
    chip = Crossbar("ideal", 3, 2, fab_seed=1, rng=0)
    assert not chip._bk.is_gpu
    err = capsys.readouterr().err
    assert err == "ffsim: no CUDA GPU found (test: none here); running on the CPU\n"


def test_cpu_path_imports_no_cuda():
    code = ("import ffsim, sys, numpy as np\n"
            "from ffsim import Crossbar\n"
            "c = Crossbar('pcm', 5, 3, fab_seed=1, rng=0, backend='cpu')\n"
            "c.program(np.zeros((5, 3))); c.forward(np.ones((2, 5)))\n"
            "c.pulse_update(np.ones((2, 5)), np.ones((2, 3)), 0.1)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('numba.cuda', 'cupy'))))\n")
    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "NUMBA_ENABLE_CUDASIM")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_cuda_twins_in_the_simulator(simulator_run):
    """tests/gpu_sim under NUMBA_ENABLE_CUDASIM=1: each twin equals its CPU kernel, a 'gpu' Crossbar its CPU
    twin.  ``tests/conftest.py`` starts the subprocess when this test is collected and runs this test last:
    the simulator takes 4–6 min on 2 cores from a cold Numba cache, beside the rest of the suite."""
    import importlib.util

    if importlib.util.find_spec("numba.cuda") is None:
        pytest.skip("this numba has no CUDA target (numba.cuda; newer numba: pip install numba-cuda)")
    assert simulator_run is not None, "tests/conftest.py did not start the simulator run"
    rc, out = simulator_run.result(timeout=1200)
    assert rc == 0, out[-9000:]
    last = out.strip().splitlines()[-1]
    assert " passed" in last and "skipped" not in last, last


def _real_gpu():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return None
    xp, simulated, _ = backend._probe_gpu()
    return None if xp is None or simulated else select_backend("gpu")


@pytest.mark.parametrize("name", ["ideal", "pcm", "ecram"])
def test_real_gpu_chip_agrees_with_cpu_chip(name):
    """Same seeds on a real GPU: the twins draw the same numbers, but libdevice's exp/log and FMA contraction
    may move last bits (and so flip an ADC level now and then): most outputs agree, their spread too."""
    bk = _real_gpu()
    if bk is None:
        pytest.skip("no CUDA GPU with CuPy and numba.cuda on this machine")
    chips = [Crossbar(name, 300, 200, fab_seed=1, rng=3, backend=b) for b in ("cpu", bk)]
    rng = np.random.default_rng(0)
    W = rng.uniform(-0.5, 0.5, (300, 200)).astype(np.float32)
    x = rng.standard_normal((64, 300)).astype(np.float32)
    ys = []
    for c in chips:
        r = np.random.default_rng(1)
        c.program(W)
        if name != "ideal":
            c.pulse_update(x, 0.1 * r.standard_normal((64, 200)).astype(np.float32), lr=0.05)
        ys.append(bk.to_host(c.forward(x)))
    if name == "ideal":
        np.testing.assert_allclose(ys[1], ys[0], rtol=1e-4, atol=1e-4)
        return
    assert np.mean(np.isclose(ys[1], ys[0], rtol=1e-5, atol=1e-5)) > 0.95
    assert abs(ys[1].std() / ys[0].std() - 1) < 0.02
    # the update's (and pcm's refresh's) device counts and per-row conductance sums (atomics on the GPU)
    ops = [c.ops for c in chips]
    assert ops[0].device_pulses > 1000
    assert abs(ops[1].device_pulses / ops[0].device_pulses - 1) < 0.01
    rows = [bk.to_host(c._rowsum) for c in chips]
    np.testing.assert_allclose(rows[1], rows[0], rtol=1e-3, atol=1e-3 * float(np.abs(rows[0]).max()))


_CACHED_RUN = """
import json, sys
import numpy as np
import ffsim
from ffsim import Crossbar
from ffsim.backend import select_backend
from ffsim.gpu.twin import disk_cache_stats
bk = select_backend("gpu")
assert bk.is_gpu and not bk.simulated
chip = Crossbar("pcm", 200, 120, fab_seed=1, rng=3, backend=bk)
rng = np.random.default_rng(0)
x = rng.standard_normal((32, 200)).astype(np.float32)
chip.program(rng.uniform(-0.5, 0.5, (200, 120)).astype(np.float32))
chip.pulse_update(x, 0.1 * rng.standard_normal((32, 120)).astype(np.float32), lr=0.05)
y = bk.to_host(chip.forward(x))
print(json.dumps({"y": y.tobytes().hex(), "g": bk.to_host(chip._g).tobytes().hex(), **disk_cache_stats()}))
"""


def test_real_gpu_kernels_load_from_the_disk_cache(tmp_path):
    """The GPU kernels are compiled once per machine (``ffsim.gpu.twin.jit_kernel``): a second process with
    the same cache folder loads every kernel it launches from the disk cache, compiles none, and computes
    what the first computed with the kernels it compiled (same seeds, bit for bit)."""
    if _real_gpu() is None:
        pytest.skip("no CUDA GPU with CuPy and numba.cuda on this machine")
    import json

    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "FFSIM_GPU_CACHE")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba")
    runs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", _CACHED_RUN], capture_output=True, text=True, env=env, cwd=ROOT,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "disk cache" not in r.stderr, r.stderr[-3000:]  # no warning of a failed setup, load or save
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["cached"] == first["kernels"] > 20
    assert first["misses"] > 3 and first["hits"] == 0
    assert second["misses"] == 0 and second["hits"] == first["misses"]
    assert second["y"] == first["y"] and second["g"] == first["g"]


@pytest.mark.parametrize("lr", [0.05, 0.002])
def test_real_gpu_sparse_update_variants_agree(lr, monkeypatch):
    """On one GPU, the pulse update and the refresh with their cells listed first (``COMPACT``) and in one
    pass over all cells run the same per-cell code on the same draws: equal conductances and counts (dense
    and sparse updates; the per-row sums, added by atomics in another order, to rounding)."""
    bk = _real_gpu()
    if bk is None:
        pytest.skip("no CUDA GPU with CuPy and numba.cuda on this machine")
    from ffsim.gpu import kernels

    rng = np.random.default_rng(0)
    W = rng.uniform(-0.5, 0.5, (300, 200)).astype(np.float32)
    x = rng.standard_normal((64, 300)).astype(np.float32)
    out = []
    for compact in (True, False):
        monkeypatch.setattr(kernels, "COMPACT", compact)
        chip = Crossbar("pcm", 300, 200, fab_seed=1, rng=3, backend=bk)
        chip.program(W)
        r = np.random.default_rng(1)
        for _ in range(3):
            chip.pulse_update(x, 0.1 * r.standard_normal((64, 200)).astype(np.float32), lr=lr)
        out.append((bk.to_host(chip._g), chip.ops.as_dict(), bk.to_host(chip._rowsum)))
    (g1, ops1, rows1), (g0, ops0, rows0) = out
    assert ops1["device_pulses"] > 0
    np.testing.assert_array_equal(g1, g0)
    assert ops1["device_pulses"] == ops0["device_pulses"] and ops1["update_slots"] == ops0["update_slots"]
    np.testing.assert_allclose(rows1, rows0, rtol=1e-9, atol=1e-9 * float(np.abs(rows0).max()))


def test_real_gpu_trains_planned_on_the_device_equal_the_host_plan():
    """``plan_trains`` on a GPU: float64 products, quotients and square roots are IEEE-rounded there too,
    so the coefficients equal the host's bit for bit; a non-finite maximum sets the flag."""
    bk = _real_gpu()
    if bk is None:
        pytest.skip("no CUDA GPU with CuPy and numba.cuda on this machine")
    from ffsim.crossbar.crossbar import _PulsePlan

    cpu, gpu = (Crossbar("pcm", 30, 20, fab_seed=1, rng=3, backend=b) for b in ("cpu", bk))
    rng = np.random.default_rng(5)
    m = np.abs(rng.standard_normal((2, 500)) * 10.0 ** rng.integers(-6, 4, (2, 500))).astype(np.float32)
    m[:, :3] = 0.0
    m[0, 7] = np.nan
    xb = np.zeros((500, 30), np.float32)
    for lr in (1e-4, 0.05, 3.0):
        ok = m.copy()
        ok[0, 7] = 1.0
        host = _PulsePlan(cpu, "pulse", xb, None, lr, m=ok)
        cpu._plan_trains(host)
        for mm, bad in ((ok, 0.0), (m, 1.0)):
            dev = _PulsePlan(gpu, "pulse", xb, None, lr, m=bk.to_device(mm))
            flag = bk.xp.zeros(1)
            gpu._plan_trains_device(dev, flag)
            coef = bk.to_host(dev.coef)
            assert float(bk.to_host(flag)[0]) == bad
            if not bad:
                np.testing.assert_array_equal(coef, host.coef)
                assert int(bk.to_host(dev.counts)[1]) == host.BL.sum()
            else:
                assert np.all(coef[:, 7] == 0.0)


def test_real_gpu_transposed_read_agrees_with_cpu():
    """The transposed read (BP through the chip) on a GPU, through the direct cuBLAS path (its own layout):
    ``ideal`` to float tolerance."""
    bk = _real_gpu()
    if bk is None:
        pytest.skip("no CUDA GPU with CuPy and numba.cuda on this machine")
    chips = [Crossbar("ideal", 300, 200, fab_seed=1, rng=3, backend=b) for b in ("cpu", bk)]
    rng = np.random.default_rng(0)
    W = rng.uniform(-0.5, 0.5, (300, 200)).astype(np.float32)
    d = rng.standard_normal((64, 200)).astype(np.float32)
    ys = []
    for c in chips:
        c.program(W)
        ys.append(bk.to_host(c.transposed(d)))
    assert chips[1]._direct_blas or os.environ.get("FFSIM_GPU_DIRECT_BLAS") == "0"
    np.testing.assert_allclose(ys[1], ys[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("model", ["ff-recurrent", "ff-unsupervised"])
def test_real_gpu_graph_replays_of_the_recurrent_and_unsupervised_steps(fresh, model):
    """As the next test, for the recurrent and unsupervised networks' steps (``pcm`` in-situ)."""
    bk = _real_gpu()
    if bk is None:
        pytest.skip("no CUDA GPU with CuPy and numba.cuda on this machine")
    from ffsim.ff import FFConfig
    from ffsim.ff.trainer import build_model
    from ffsim.gpu import graph

    fresh.setenv(ENV_VAR, "gpu")
    cfg = FFConfig(model=model, layers=(200, 200, 200), epochs=1, batch_size=50, profile="pcm", mode="insitu",
                   seed=3, recurrent_iters=3, recurrent_eval_iters=(2, 3))
    models = [build_model(cfg, 784, 10) for _ in range(2)]
    runner = graph.runner_for(models[1], models[1]._device_step, capturer=graph.CupyCapturer())
    rng = np.random.default_rng(0)
    x = rng.random((250, 784)).astype(np.float32)
    y = rng.integers(0, 10, 250)
    rngs = [np.random.default_rng(1), np.random.default_rng(1)]
    for s in range(5):
        sl = slice(s * 50, (s + 1) * 50)
        st = [m.train_step(x[sl], y[sl], r, 1.0) for m, r in zip(models, rngs, strict=True)]
        assert st[1]["loss"] == pytest.approx(st[0]["loss"], rel=1e-4) and st[1]["n"] == st[0]["n"] == 50
    assert (runner.captures, runner.replays) == (1, 4)
    a, b = (m.state() for m in models)
    for k in a:
        np.testing.assert_allclose(bk.to_host(b[k]), bk.to_host(a[k]), rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("profile", ["pcm", "ideal"])
def test_real_gpu_graph_replays_equal_the_direct_steps(fresh, profile):
    """The FF step captured in a CUDA graph and replayed (``ffsim.gpu.graph``) against the same steps run
    directly, on one GPU, same seeds: the same keys reach the same kernels, so the statistics and states
    agree (to the rounding of the per-row sums that atomics add in another order)."""
    bk = _real_gpu()
    if bk is None:
        pytest.skip("no CUDA GPU with CuPy and numba.cuda on this machine")
    from ffsim.ff import FFConfig
    from ffsim.ff.trainer import build_model
    from ffsim.gpu import graph

    fresh.setenv(ENV_VAR, "gpu")
    mode = "ideal" if profile == "ideal" else "insitu"
    cfg = FFConfig(layers=(300, 300), epochs=1, batch_size=50, profile=profile, mode=mode, seed=3)
    models = [build_model(cfg, 784, 10) for _ in range(2)]
    runner = graph.runner_for(models[1], models[1]._device_step, capturer=graph.CupyCapturer())
    rng = np.random.default_rng(0)
    x = bk.asarray(rng.random((250, 784)).astype(np.float32))
    y = rng.integers(0, 10, 250)
    rngs = [np.random.default_rng(1), np.random.default_rng(1)]
    for s in range(5):
        sl = slice(s * 50, (s + 1) * 50)
        st = [m.train_step(x[sl], y[sl], r, 1.0) for m, r in zip(models, rngs, strict=True)]
        np.testing.assert_allclose(st[1]["goodness_pos"], st[0]["goodness_pos"], rtol=1e-4)
        np.testing.assert_array_equal(st[1]["negative_labels"], st[0]["negative_labels"])
    assert (runner.captures, runner.replays) == (1, 4)
    a, b = (m.state() for m in models)
    for k in a:
        np.testing.assert_allclose(bk.to_host(b[k]), bk.to_host(a[k]), rtol=1e-4, atol=1e-5, err_msg=k)
    ops = [m.ops().as_dict() for m in models]
    assert ops[1]["dac_conversions"] == ops[0]["dac_conversions"] and ops[1]["update_slots"] == ops[0]["update_slots"]


@pytest.mark.parametrize("graphed", [False, True])
def test_real_gpu_layer_lanes_equal_one_stream(fresh, graphed):
    """The layers' updates on streams of their own (``ffsim.gpu.streams``), directly and inside a CUDA graph,
    against one stream, on one GPU, same seeds: the statistics and states agree (to the rounding of the
    per-row sums that atomics add in another order); the tests in ``tests/gpu_sim/test_streams.py`` check
    the fork and join on emulated streams."""
    bk = _real_gpu()
    if bk is None:
        pytest.skip("no CUDA GPU with CuPy and numba.cuda on this machine")
    from ffsim.ff import FFConfig
    from ffsim.ff.trainer import build_model
    from ffsim.gpu import graph, streams

    fresh.setenv(ENV_VAR, "gpu")
    cfg = FFConfig(layers=(300, 300, 300), epochs=1, batch_size=50, profile="pcm", mode="insitu", seed=3)
    models = [build_model(cfg, 784, 10) for _ in range(2)]
    runner = graph.runner_for(models[1], models[1]._device_step, capturer=graph.CupyCapturer()) if graphed else None
    rng = np.random.default_rng(0)
    x = bk.asarray(rng.random((250, 784)).astype(np.float32))
    y = rng.integers(0, 10, 250)
    rngs = [np.random.default_rng(1), np.random.default_rng(1)]
    forks = []  # the lanes' forks: one per step run through Python (the direct steps, the capture)
    real_lanes = streams.lanes
    fresh.setattr(streams, "lanes", lambda n: forks.append(n) or real_lanes(n))
    for s in range(5):
        sl = slice(s * 50, (s + 1) * 50)
        st = []
        for k, (m, r) in enumerate(zip(models, rngs, strict=True)):
            fresh.setattr(streams, "ENABLED", k == 1)
            st.append(m.train_step(x[sl], y[sl], r, 1.0))
        np.testing.assert_allclose(st[1]["goodness_pos"], st[0]["goodness_pos"], rtol=1e-4)
        np.testing.assert_array_equal(st[1]["negative_labels"], st[0]["negative_labels"])
    assert forks and set(forks) == {3}  # the three layers' updates forked, in model 1's steps only
    if graphed:
        assert (runner.captures, runner.replays) == (1, 4)
    a, b = (m.state() for m in models)
    for k in a:
        np.testing.assert_allclose(bk.to_host(b[k]), bk.to_host(a[k]), rtol=1e-4, atol=1e-5, err_msg=k)
    ops = [m.ops().as_dict() for m in models]
    assert ops[1]["update_slots"] == ops[0]["update_slots"]


def _ptx_signatures():
    from numba import types

    f32, f64, i8, u64, i64, b1 = types.float32, types.float64, types.int8, types.uint64, types.int64, types.boolean

    def A(dt, nd):
        return types.Array(dt, nd, "C")

    cells = (A(f32, 2), A(f32, 2), A(f32, 2), i64, A(f32, 1), f64, f64, A(f64, 1))
    dev = (A(f32, 3),) * 5 + (A(i8, 3), A(f32, 3), A(f64, 1), f64, i64, u64, b1)  # gmax .. cache_on
    tape = (A(u64, 1), i64)  # the keys' tape and slot (ffsim.gpu.kernels.CAPTURE)
    dev_keyed = dev[:-1] + tape + dev[-1:]
    sig = {
        "_dac": (A(f32, 2), b1, i64, f32, b1, A(f32, 2), A(f32, 2), A(f32, 1)),
        "_charge": (A(f32, 2), A(f64, 1), A(f32, 2), f64, f64, f64, A(f64, 1)),
        "_adc": (A(f32, 3), A(f32, 3), b1, A(f32, 3)) + (A(f32, 2),) * 4 + (i64, b1, f32, b1, f32, f32, f32, b1,
                                                                          A(f32, 1), u64) + tape + (A(f32, 2),),
        "_ir_rows": (A(f32, 3), i64, f64, f64, A(f64, 3)),
        "_ir_cols": (A(f32, 3), i64, f64, f64, A(f64, 3)),
        "_ir_ref": (A(f32, 2), i64, f64, f64, A(f64, 2)),
        "_rebuild_cells": (A(f32, 3), A(f32, 3), A(f32, 2), i64, i64, f64, f64, f64, A(f32, 1), f64, f64, f64, b1,
                           A(f64, 3), A(f64, 3), A(f64, 2), A(f32, 2), A(f32, 2)),
        "_rebuild_rows": (A(f32, 3), A(f32, 2), i64, f64, f64, f64, A(f32, 1), f64, f64, f64, b1, A(f64, 3),
                          A(f64, 2), A(f32, 2), A(f64, 1)),
        "_colsums": (A(f32, 3), A(f64, 1)),
        "_program": (A(f64, 2), A(b1, 2), A(f32, 3), A(f32, 3), A(i8, 3), A(f32, 3), b1, A(f32, 3), b1, A(f64, 1),
                     A(f64, 1), i64, f64, f64, f64, f64, u64, b1, A(f32, 2), A(f32, 2), A(f32, 2), i64, A(f32, 1), f64,
                     f64, A(f64, 1), A(b1, 1), A(i64, 1)),
        "_pulse_agg": (A(f32, 2), A(f32, 2), A(f32, 3)) + dev_keyed + cells[:3]
        + (i64, f64, f64, f64, A(f32, 1), f64, f64, A(f64, 1), A(i64, 1)),
        "_fill_trains": (A(f32, 2), A(i64, 1), u64, A(u64, 2)),
        "_maxima": (A(f32, 2),) * 3,
        "_factors": (A(f32, 2),) * 7,
        "_pulse_sample": (i64, A(u64, 2), A(u64, 2), A(i8, 2), A(i8, 2), A(f32, 3)) + dev + cells[:3]
        + (i64, f64, f64, f64, A(f32, 1), f64, f64, A(f64, 1), A(i64, 1)),
        "_smoothed": (A(f32, 2), A(f32, 2), A(f32, 2), f32, f64, f32, f32),
        "_refresh": (A(f32, 3), A(f32, 3), b1, A(f32, 3), A(i8, 3), A(f32, 3), b1, A(f64, 1), A(f64, 1), i64, f64,
                     f64, f64, f64, f64, A(f32, 1), f64, f64, u64) + tape + (b1, A(f32, 2), A(f32, 2), A(f32, 2),
                                                                               i64, f64, f64, A(f64, 1), A(i64, 1)),
    }
    # the sparse updates' lists (ffsim.gpu.kernels.COMPACT): their length, cells (int32 below 2**31) and counts
    lists = (A(i64, 1), A(types.int32, 1))
    sig.update(_pulse_pick=(A(f32, 2), u64) + tape + lists + (A(types.int32, 1),),
               _pulse_listed=lists + (A(types.int32, 1),) + sig["_pulse_agg"],
               _refresh_pick=(A(f32, 3), A(i8, 3), f64) + lists, _refresh_listed=lists + sig["_refresh"],
               _plan=(A(f32, 2), f64, f64, b1, i64, A(f32, 2), A(f64, 1), A(i64, 1)))
    # the simulator's variants (ffsim.gpu.kernels.BLOCK_REDUCE) take the same arguments
    sig.update(_dac_rows=sig["_dac"], _maxima_rows=sig["_maxima"], _charge_serial=sig["_charge"])
    return sig


def _ff_ptx_signatures():
    """The FF engine's kernels (``ffsim.gpu.ff_kernels``) with the argument types the engine passes."""
    from numba import types

    f32, f64, i64, b1 = types.float32, types.float64, types.int64, types.boolean

    def A(dt, nd):
        return types.Array(dt, nd, "C")

    return {
        "_embed_lanes": (A(f32, 2), A(f64, 1), f32, i64, b1, A(f64, 2)),
        "_embed_finish": (A(f32, 2), A(f64, 1), f32, i64, b1, b1, i64, A(f64, 2), A(f32, 2)),
        "_act_lanes": (A(f32, 2), A(f32, 1), b1, b1, A(f32, 2), A(f64, 2)),
        "_act_finish": (A(f32, 2), b1, i64, A(f64, 2), A(f64, 1), A(f32, 2)),
        "_vector_lanes": (A(f32, 1), A(f64, 2)),
        "_layer_rows": (A(f32, 2), A(f64, 1), i64, f64, f64, b1, b1, f32, A(f32, 1), i64, A(f64, 2), A(f32, 2),
                        A(f64, 1), A(f64, 1)),
        "_peer_update": (A(f32, 2), A(f32, 1), f32),
        "_bias_step": (A(f32, 2), A(f32, 1), A(f32, 1), f32, i64, f32),
        "_head_rows": (A(f32, 2), A(f64, 1), A(f32, 2), b1, f64, i64, A(f32, 2), A(f32, 2), A(f64, 1), A(f64, 1)),
        "_negative_rows": (A(f32, 2), A(f64, 1), A(f64, 1), A(f64, 1), A(f64, 1)),
    }


def test_cuda_twins_compile_to_ptx(monkeypatch):
    """Type inference and lowering as numba-cuda does them for a GPU (sm_90), without a GPU."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the CUDA simulator compiles nothing")
    try:
        from numba import cuda
        from numba.cuda.cudadrv.nvvm import NVVM

        NVVM()
    except Exception as e:  # noqa: BLE001 - any failure to load libNVVM
        pytest.skip(f"no libNVVM for numba ({type(e).__name__}); set CUDA_HOME to a CUDA toolkit or nvidia-cuda-nvcc")
    from types import SimpleNamespace

    import numba.cuda.compiler
    import numba.cuda.dispatcher

    from ffsim.gpu import ff_kernels, kernels

    # device functions are compiled for the current device's compute capability: pretend an H100
    fake = SimpleNamespace(compute_capability=(9, 0))
    monkeypatch.setattr(numba.cuda.dispatcher, "get_current_device", lambda: fake)
    monkeypatch.setattr(numba.cuda.compiler, "get_current_device", lambda: fake)
    for module, sigs in ((kernels, _ptx_signatures()), (ff_kernels, _ff_ptx_signatures())):
        for name, sig in sigs.items():
            ptx, _ = cuda.compile_ptx(getattr(module, name).py_func, sig, cc=(9, 0))
            assert ".visible .entry" in ptx, name
        launched = {n for n in dir(module) if isinstance(getattr(module, n), type(kernels._adc))
                    and not getattr(module, n).targetoptions.get("device")}
        assert launched == set(sigs), launched ^ set(sigs)


def _cli(argv):
    import contextlib
    import io

    from ffsim.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


TINY_TRAIN = ["--layers", "10,10", "--train-cases", "100", "--test-cases", "50", "--eval-train-cases", "50",
              "--batch-size", "50", "--epochs", "1", "--no-progress", "--profile", "ecram"]


def test_train_backend_gpu_without_gpu_falls_back_and_records_it(fresh, tmp_path):
    import json

    fresh.setattr(backend, "_probe_gpu", lambda: (None, False, "test: none here"))
    fresh.setenv(ENV_VAR, "cpu")  # restored afterwards: --backend writes it for worker processes
    rc, _, err = _cli(["train", "--out", str(tmp_path / "g"), "--backend", "gpu", *TINY_TRAIN])
    assert rc == 0, err
    assert err.count("ffsim: no CUDA GPU found (test: none here); running on the CPU\n") == 1
    rc, _, err = _cli(["train", "--out", str(tmp_path / "c"), "--backend", "cpu", *TINY_TRAIN])
    assert rc == 0, err
    g, c = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("g", "c"))
    assert g["backend"] == {"weights": "cpu", "simulated": False, "engine": "cpu", "requested": "gpu"}
    assert c["backend"] == {"weights": "cpu", "simulated": False, "engine": "cpu", "requested": "cpu"}
    assert g["seeds"] == {"seed": 0, "fab_seed": 1} and g["profile_hash"] == c["profile_hash"]
    assert [h["test_error_softmax"] for h in g["history"]] == [h["test_error_softmax"] for h in c["history"]]


def test_train_bad_backend_environment_is_a_usage_error(fresh, tmp_path):
    fresh.setenv(ENV_VAR, "quantum")
    rc, _, err = _cli(["train", "--out", str(tmp_path / "x"), *TINY_TRAIN])
    assert rc == 2
    assert "FFSIM_BACKEND='quantum'" in err and "cpu, gpu" in err and "Traceback" not in err


@pytest.mark.parametrize("profile", ["ideal", "ecram"])
def test_real_gpu_training_matches_cpu_in_distribution(fresh, tmp_path, profile):
    """The same short FF training (ideal weights; ecram in-situ pulse updates) on the CPU and on a real GPU:
    rounding differs (cuBLAS, libdevice), so the runs drift apart, but their errors must stay close."""
    import json

    if _real_gpu() is None:
        pytest.skip("no CUDA GPU with CuPy and numba.cuda on this machine")
    args = ["--layers", "200,200", "--train-cases", "6000", "--test-cases", "2000", "--eval-train-cases", "2000",
            "--epochs", "2", "--no-progress", "--profile", profile]
    res = {}
    for b in ("cpu", "gpu"):
        rc, _, err = _cli(["train", "--out", str(tmp_path / b), "--backend", b, *args])
        assert rc == 0, err
        res[b] = json.loads((tmp_path / b / "results.json").read_text())
    assert res["gpu"]["backend"]["weights"] == res["gpu"]["backend"]["engine"] == "gpu"
    assert res["cpu"]["backend"]["engine"] == "cpu"
    for key in ("test_error_softmax", "test_error_goodness"):
        e_cpu, e_gpu = res["cpu"]["history"][-1][key], res["gpu"]["history"][-1][key]
        # 2000 test images: one standard error of an error rate near 10 % is 0.7 pp; allow about 4
        assert abs(e_gpu - e_cpu) < 0.03, (key, e_cpu, e_gpu)


def test_gpu_whose_numba_cuda_cannot_compile_falls_back_naming_why(fresh, capsys):
    """numba-cuda 0.30 under numpy 2.5 (seen on a GPU machine) fails at its first kernel compilation: the probe
    compiles one, so the user gets the one-line notice with the reason, not a traceback from a chip method."""
    from numba import cuda

    def broken_jit(*args, **kwargs):
        raise AttributeError("module 'numpy' has no attribute 'row_stack'")

    fresh.setattr(cuda, "is_available", lambda: True)
    fresh.setattr(cuda, "jit", broken_jit)
    assert select_backend("gpu").name == "cpu"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ffsim: no CUDA GPU found (numba-cuda cannot compile a kernel: ")
    assert "row_stack" in err and "numba-cuda 0.30 needs numpy < 2.5" in err and err.endswith("running on the CPU\n")


def test_launch_views_are_cached_by_exact_layout(monkeypatch):
    """On a GPU the launcher passes each CuPy argument as a cached numba view (BENCHMARKS.md: the per-launch
    import of ~28 arrays cost ~0.7 ms): one view per (pointer, shape, strides, dtype), nothing else shared."""
    from types import SimpleNamespace as NS

    from ffsim.gpu import kernels

    class FakeDev:  # the attributes of a cupy.ndarray the cache reads
        def __init__(self, ptr, shape, strides, dtype):
            self.data, self.shape, self.strides, self.dtype = NS(ptr=ptr), shape, strides, np.dtype(dtype)

    monkeypatch.setattr(kernels, "_views", {})
    monkeypatch.setattr(kernels, "_VIEWS_MAX", 8)
    made = []

    def make(a):
        made.append(a)
        return ("view", len(made))

    a = FakeDev(4096, (3, 4), (16, 4), np.float32)
    v = kernels._view(a, make)
    assert kernels._view(FakeDev(4096, (3, 4), (16, 4), np.float32), make) is v  # same layout: same view
    others = [FakeDev(8192, (3, 4), (16, 4), np.float32), FakeDev(4096, (4, 3), (12, 4), np.float32),
              FakeDev(4096, (3, 4), (4, 12), np.float32), FakeDev(4096, (3, 4), (16, 4), np.int32)]
    assert len({kernels._view(o, make) for o in others} | {v}) == 5 and len(made) == 5
    for i in range(20):  # the cache stays bounded and keeps the newest views
        kernels._view(FakeDev(10 ** 6 + 64 * i, (2,), (4,), np.float32), make)
    assert len(kernels._views) <= 8
    last = FakeDev(10 ** 6 + 64 * 19, (2,), (4,), np.float32)
    n = len(made)
    kernels._view(last, make)
    assert len(made) == n

    # the launcher swaps device arrays for views (and nothing else) unless CACHE_VIEWS is off
    seen = []

    class Kernel:
        def __getitem__(self, config):
            return lambda *args: seen.append((config, args))

    monkeypatch.setattr(kernels, "SIMULATED", False)
    monkeypatch.setattr(kernels, "FAST_LAUNCH", False)  # (the fast path has its own test below)
    monkeypatch.setattr(kernels, "_cupy_type", lambda: FakeDev)
    monkeypatch.setattr(kernels, "_view", lambda x: ("v", x.data.ptr))
    host = np.zeros(3, np.float32)
    kernels._launch(Kernel(), (2,), (32,), a, 7, host)
    monkeypatch.setattr(kernels, "CACHE_VIEWS", False)
    kernels._launch(Kernel(), (2,), (32,), a, 7, host)
    assert seen[0] == (((2,), (32,), 0), (("v", 4096), 7, host))  # (0: CuPy's current stream is the default)
    assert seen[1][1][0] is a and seen[1][1][1:] == (7, host)


def test_launches_follow_cupys_current_stream(monkeypatch):
    """A CUDA-graph capture needs a stream of its own (``ffsim.gpu.graph``): both launch paths go to CuPy's
    current stream, the default stream (0) unless another is current; one stream object per handle."""
    from ffsim.gpu import kernels

    class CoreStream:  # cuda.core's Stream, as far as the launcher uses it
        def __init__(self, handle):
            self.handle = handle

        @classmethod
        def from_handle(cls, handle):
            return cls(handle)

    h = {"stream": CoreStream(0)}
    monkeypatch.setattr(kernels, "_streams", {})
    monkeypatch.setattr(kernels, "_current_stream_ptr", lambda: 0)
    assert kernels._core_stream(h) is h["stream"] and kernels._numba_stream() == 0
    monkeypatch.setattr(kernels, "_current_stream_ptr", lambda: 77)
    monkeypatch.setattr(kernels.cuda, "external_stream", lambda ptr: ("external", ptr))
    s = kernels._core_stream(h)
    assert s.handle == 77 and kernels._core_stream(h) is s
    assert kernels._numba_stream() == ("external", 77)


def test_fast_launch_passes_what_numba_passes(monkeypatch):
    """The fast launch path (GPU only) gives each kernel the parameters numba-cuda's launcher would: the
    first call of a signature goes through numba (which compiles), the next is checked against numba's
    marshalling and then launched directly; arrays are flattened once per layout; a difference, a
    non-CuPy array or an int beyond int64 takes numba's launcher.  Here with stand-ins for CuPy and for
    numba-cuda's pieces (no GPU): what reaches ``launch`` is asserted exactly."""
    import ctypes
    from types import SimpleNamespace as NS

    import numba

    from ffsim.gpu import kernels

    class FakeDev:
        def __init__(self, ptr, shape, dtype):
            self.data, self.shape, self.dtype = NS(ptr=ptr), shape, np.dtype(dtype)
            self.strides = tuple(int(np.prod(shape[i + 1:])) * self.dtype.itemsize for i in range(len(shape)))
            self.size, self.itemsize, self.ndim = int(np.prod(shape)), self.dtype.itemsize, len(shape)
            self.flags = NS(c_contiguous=True, f_contiguous=len(shape) <= 1)

    prepared = []

    def numba_like_prepare(ty, v, stream, retr, out):  # numba-cuda 0.30's _Kernel._prepare_args
        if isinstance(ty, tuple):  # an array type of the stand-in typeof
            prepared.append(v.data.ptr)
            out.extend([0, 0, v.size, v.itemsize, v.data.ptr, *v.shape, *v.strides])
        elif isinstance(ty, numba.types.Integer):
            out.append(getattr(ctypes, f"c_{ty}")(v))
        elif ty == numba.types.float32:
            out.append(ctypes.c_float(v))
        elif ty == numba.types.float64:
            out.append(ctypes.c_double(v))
        else:
            out.append(v)

    class Overload:
        cooperative = False

        def __init__(self, prepare=numba_like_prepare):
            self._prepare_args = prepare
            self._codelibrary = NS(get_cufunc=lambda: NS(kernel=f"CUFUNC{device[0]}"))  # (per context)

    launched, slow = [], []

    class Kernel:
        overloads: dict = {}

        def __getitem__(self, config):
            return lambda *args: slow.append((config, args))

    def typeof(v):
        return ("array", v.dtype.str, len(v.shape)) if isinstance(v, FakeDev) else numba.typeof(v)

    device = [0]  # the current GPU
    hooks = dict(ok=True, stream="S", launch=lambda s, cfg, fn, *p: launched.append((s, cfg, fn, p)),
                 device=lambda: device[0],
                 config=lambda g, b: ("cfg", g, b), dims=lambda g, b: ((*g, 1, 1)[:3], (*b, 1, 1)[:3]),
                 typeof=typeof, view=lambda a: a)
    monkeypatch.setattr(kernels, "_fast_hooks", hooks)
    monkeypatch.setattr(kernels, "_fast_local", __import__("threading").local())
    monkeypatch.setattr(kernels, "SIMULATED", False)
    monkeypatch.setattr(kernels, "FAST_LAUNCH", True)
    monkeypatch.setattr(kernels, "_cupy_type", lambda: FakeDev)
    monkeypatch.setattr(kernels, "_view", lambda x: ("view", x.data.ptr))

    k = Kernel()
    a = FakeDev(4096, (3, 4), np.float32)
    args = (a, 7, 0.5, np.float32(2.0), True, np.uint64(2**63 + 5))
    kernels._launch(k, (2,), (32,), *args)  # nothing compiled yet: numba's launcher
    assert len(slow) == 1 and not launched
    sig = (typeof(a), numba.int64, numba.float64, numba.float32, numba.boolean, numba.uint64)
    Kernel.overloads = {sig: Overload()}  # what numba compiled for it
    kernels._launch(k, (2,), (32,), *args)
    kernels._launch(k, (2,), (32,), FakeDev(8192, (3, 4), np.float32), 8, 1.5, np.float32(3.0), False, np.uint64(1))
    assert len(slow) == 1 and len(launched) == 2
    s, cfg, fn, p = launched[0]
    assert (s, cfg, fn) == ("S", ("cfg", (2, 1, 1), (32, 1, 1)), "CUFUNC0")
    assert p[:9] == (0, 0, 12, 4, 4096, 3, 4, 16, 4)
    assert [type(x) for x in p[9:]] == [ctypes.c_int64, ctypes.c_double, ctypes.c_float, bool, ctypes.c_uint64]
    assert [x if isinstance(x, bool) else x.value for x in p[9:]] == [7, 0.5, 2.0, True, 2**63 + 5]
    p2 = launched[1][3]
    assert p2[4] == 8192 and p2[9].value == 8 and p2[12] is False and p2[13].value == 1

    # not CuPy arrays, or an int that numba would type as uint64: numba's launcher
    kernels._launch(k, (2,), (32,), np.zeros(3, np.float32), 7, 0.5, np.float32(2.0), True, np.uint64(0))
    kernels._launch(k, (2,), (32,), a, 2**63, 0.5, np.float32(2.0), True, np.uint64(0))
    assert len(slow) == 3 and len(launched) == 2

    # a signature whose parameters differ from numba's marshalling: warned once, then always numba's launcher
    def other_prepare(ty, v, stream, retr, out):
        numba_like_prepare(ty, v, stream, retr, out)
        if ty == numba.types.boolean:
            out[-1] = ctypes.c_uint8(int(v))

    k2 = Kernel()
    Kernel.overloads = {sig: Overload(other_prepare)}
    with pytest.warns(RuntimeWarning, match="fast launch of .* off"):
        kernels._launch(k2, (2,), (32,), *args)
    kernels._launch(k2, (2,), (32,), *args)
    assert len(slow) == 5 and len(launched) == 2

    # arrays of one kind are read off directly once numba's way has agreed _DIRECT_AFTER times
    prepared.clear()
    n0 = len(launched)
    for i in range(kernels._DIRECT_AFTER + 5):
        kernels._launch(k, (2,), (32,), FakeDev(10**6 + 64 * i, (3, 4), np.float32), 7, 0.5, np.float32(2.0), True,
                        np.uint64(1))
    assert len(launched) == n0 + kernels._DIRECT_AFTER + 5
    assert len(prepared) == kernels._DIRECT_AFTER - 2  # (two arrays of this kind were flattened above)
    assert launched[-1][3][:9] == (0, 0, 12, 4, 10**6 + 64 * (kernels._DIRECT_AFTER + 4), 3, 4, 16, 4)
    assert kernels.fast_launch_stats()["array_kinds_direct"] == 1

    # a thread that switches GPUs launches each device's own function handle (one per context)
    n1 = len(launched)
    Kernel.overloads = {sig: Overload()}
    device[0] = 1
    kernels._launch(k, (2,), (32,), *args)
    assert kernels.fast_launch_stats()["direct"] == 1  # (device 1's caches: this signature only)
    device[0] = 0
    kernels._launch(k, (2,), (32,), *args)
    assert [x[2] for x in launched[n1:]] == ["CUFUNC1", "CUFUNC0"] and len(launched) == n1 + 2

    # off by the switch
    monkeypatch.setattr(kernels, "FAST_LAUNCH", False)
    kernels._launch(k, (2,), (32,), *args)
    assert len(slow) == 6 and len(launched) == n0 + kernels._DIRECT_AFTER + 5 + 2
