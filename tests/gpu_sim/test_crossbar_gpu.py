"""A Crossbar on the 'gpu' backend (CUDA simulator) against the same chip on the CPU.

Same profile, fabrication seed and run seed: the twins draw the CPU's random numbers, so what the chip
measures (forward, transposed, read_weights) is equal bit for bit after programming, pulse updates
(aggregate and exact, with refresh), masked programming and drift.  The op counters agree to 1e-9
(their read charge uses per-row sums accumulated in another order).
"""

from __future__ import annotations

import numpy as np
import pytest

from ffsim import Crossbar, load_profile


def _pair(name, mode="aggregate", **over):
    prof = load_profile(name).replace(tile={"rows": 4, "cols": 3}, update={"max_pulses": 12}, **over)
    return [Crossbar(prof, 9, 7, fab_seed=(2, 1), rng=7, w_max=1.5, pulse_mode=mode, backend=b)
            for b in ("cpu", "gpu")]


@pytest.mark.parametrize(("name", "mode"), [("pcm", "aggregate"), ("ecram", "exact"), ("ideal", "aggregate")])
def test_gpu_chip_measures_what_the_cpu_chip_measures(name, mode):
    cpu, gpu = _pair(name, mode)
    assert gpu._bk.is_gpu and gpu._bk.simulated and not cpu._bk.is_gpu
    rng = np.random.default_rng(4)
    W = rng.uniform(-1.2, 1.2, cpu.shape).astype(np.float32)
    x = rng.standard_normal((4, 9)).astype(np.float32)
    outs = []
    for chip in (cpu, gpu):
        r = np.random.default_rng(9)
        chip.program(W)
        o = [chip.forward(x), chip.transposed(r.standard_normal((3, 7)).astype(np.float32))]
        for _ in range(3):
            chip.pulse_update(x, 0.3 * r.standard_normal((4, 7)).astype(np.float32), lr=0.2)
            o.append(chip.forward(x))
        if name != "ideal":
            chip.program(0.5 * W, mask=r.random(W.shape) < 0.4)
        o.append(chip.forward(x[0]))
        chip.advance(3600.0, compensate=chip.profile.device.drift.model != "none")
        o += [chip.forward(x), chip.read_weights()]
        outs.append(o)
    for a, b in zip(*outs, strict=True):
        assert type(b) is np.ndarray and b.dtype == a.dtype and b.shape == a.shape
        np.testing.assert_array_equal(b, a)
    for k, v in cpu.ops.as_dict().items():
        assert gpu.ops.as_dict()[k] == pytest.approx(v, rel=1e-9), k


def test_gpu_checkpoint_restores_on_either_backend():
    cpu, gpu = _pair("pcm")
    rng = np.random.default_rng(1)
    W = rng.uniform(-1, 1, cpu.shape).astype(np.float32)
    x = rng.standard_normal((2, 9)).astype(np.float32)
    for chip in (cpu, gpu):
        chip.program(W)
        chip.pulse_update(x, np.ones((2, 7), np.float32), lr=0.1)
    arrays, scalars = gpu._checkpoint()
    assert all(type(v) is np.ndarray for v in arrays.values())
    fresh_cpu, fresh_gpu = _pair("pcm")
    fresh_cpu._restore(arrays, scalars)
    fresh_gpu._restore(*cpu._checkpoint())
    np.testing.assert_array_equal(fresh_cpu.forward(x), cpu.forward(x))
    np.testing.assert_array_equal(fresh_gpu.forward(x), gpu.forward(x))


def test_restore_drops_counts_still_pending_on_the_device():
    """A chip restored from a checkpoint takes its counts from the checkpoint: counts still pending on the
    device (deferred, not yet read) belong to the history it leaves."""
    _, gpu = _pair("pcm")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 9)).astype(np.float32)
    gpu.program(rng.uniform(-1, 1, gpu.shape).astype(np.float32))
    arrays, scalars = gpu._checkpoint()
    gpu.pulse_update(x, rng.standard_normal((3, 7)).astype(np.float32), lr=0.3)
    assert len(gpu.ops.__dict__.get("_pending", ())) == 2  # the update's pulses and the refresh's pairs
    gpu._restore(arrays, scalars)
    assert gpu.ops.as_dict() == scalars["ops"]


@pytest.mark.parametrize("block", [False, True])
@pytest.mark.parametrize("name", ["pcm", "rram-hfo2", "ecram"])
def test_read_charge_kernel_equals_the_cpu_formula(name, block, monkeypatch):
    """The GPU's one-kernel read charge of a pass (``read_charge``; the GPU's block variant and the
    simulator's serial one) against the CPU's numpy expression, forward (rows; with the reference columns
    of a 1-device mapping) and transposed (columns)."""
    from ffsim.backend import select_backend
    from ffsim.gpu import kernels as gk

    monkeypatch.setattr(gk, "BLOCK_REDUCE", block)
    chip = Crossbar(name, 13, 9, fab_seed=2, rng=3, backend=select_backend("gpu"))  # 13 inputs: 2 blocks of 8
    assert chip._P == (2 if name == "pcm" else 1)
    chip.program(np.random.default_rng(4).uniform(-0.7, 0.7, (13, 9)).astype(np.float32))
    xq2 = np.random.default_rng(5).random((6, 13)).astype(np.float32)
    for forward, x2 in ((True, xq2), (False, xq2[:, :9].copy())):
        G = chip._row_conductance_S() if forward else chip._col_conductance_S()
        want = float(x2.sum(axis=0, dtype=np.float64) @ G)
        before = chip.ops.read_charge_S_s
        chip._count_pass_charge(x2, forward=forward)
        got = (chip.ops.read_charge_S_s - before) / (chip.profile.cost.integration_time_ns * 1e-9)
        # float64 throughout on the GPU; the CPU's reference-column term is float32 (float × float32 array)
        tol = 1e-12 if chip._P == 2 or not forward else 1e-8
        assert want > 0 and abs(got - want) <= tol * want, (forward, got, want)
