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
    over = {"tile": {"rows": 4, "cols": 3}, **over, "update": {"max_pulses": 12, **over.get("update", {})}}
    prof = load_profile(name).replace(**over)
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



@pytest.mark.parametrize("managed", [True, False])
def test_trains_planned_on_the_device_equal_the_host_plan(managed):
    """``plan_trains`` (the GPU's plan of an update's trains) against ``Crossbar._plan_trains`` (the host's):
    the coefficients bit for bit, the slots' sum, and the flag of a non-finite maximum."""
    from ffsim.crossbar.crossbar import NonFiniteInput, _PulsePlan

    cpu, gpu = _pair("pcm", update={"update_management": managed})
    rng = np.random.default_rng(5)
    m = np.abs(rng.standard_normal((2, 40)) * 10.0 ** rng.integers(-6, 4, (2, 40))).astype(np.float32)
    m[0, :3] = 0.0  # inactive cases
    m[1, 3] = 0.0
    m[:, 4] = [3e38, 3e38]  # the longest train (clipped)
    xb = np.zeros((40, 9), np.float32)

    def plans(m, lr):
        return _PulsePlan(cpu, "pulse", xb, None, lr, m=m.copy()), _PulsePlan(gpu, "pulse", xb, None, lr, m=m.copy())

    lengths = set()
    for lr in (1e-4, 0.05, 3.0):
        host, dev = plans(m, lr)
        cpu._plan_trains(host)
        flag = np.zeros(1)
        gpu._plan_trains_device(dev, flag)
        np.testing.assert_array_equal(np.asarray(dev.coef), host.coef)
        assert int(np.asarray(dev.counts)[1]) == host.BL.sum() and flag[0] == 0.0
        assert host.BL[:4].tolist() == [0, 0, 0, 0] and host.BL[4] == 12
        lengths |= set(host.BL[5:].tolist())
    assert len(lengths) > (3 if managed else 0)  # trains of several lengths when managed
    bad = m.copy()
    bad[0, 7], bad[1, 9] = np.nan, np.inf
    host, dev = plans(bad, 0.05)
    with pytest.raises(NonFiniteInput):
        cpu._plan_trains(host)
    flag = np.zeros(1)
    gpu._plan_trains_device(dev, flag)
    assert flag[0] == 1.0
    coef = np.asarray(dev.coef)
    assert np.all(coef[:, [7, 9]] == 0.0) and np.all(coef[2, 5:7] > 0)


def test_update_with_a_nonfinite_case_deferred_leaves_that_case_out():
    """``pulse_updates(..., nonfinite=flag)`` on the GPU: no error, the flag set, and the chips as after
    the same update with the bad cases' rows zeroed (on the CPU, bit for bit); without ``nonfinite`` the
    GPU refuses before any chip changes, as the CPU does."""
    from ffsim.crossbar import NonFiniteInput

    (cpu, gpu), (cpu2, gpu2) = _pair("pcm"), _pair("pcm")
    rng = np.random.default_rng(3)
    W = rng.uniform(-1, 1, cpu.shape).astype(np.float32)
    x, x2 = rng.standard_normal((5, 9)).astype(np.float32), rng.standard_normal((3, 9)).astype(np.float32)
    d, d2 = (0.5 * rng.standard_normal((5, 7))).astype(np.float32), (0.5 * rng.standard_normal((3, 7))).astype(
        np.float32)
    for chip in (cpu, gpu, cpu2, gpu2):
        chip.program(W)
    x[1, 4] = np.nan
    d[3, 2] = np.inf
    before = [g._host(g._g).copy() for g in (gpu, gpu2)]
    with pytest.raises(NonFiniteInput):
        Crossbar.pulse_updates([(gpu, x, d, 0.3), (gpu2, x2, d2, 0.3)])
    for g, b in zip((gpu, gpu2), before, strict=True):
        np.testing.assert_array_equal(g._host(g._g), b)
    flag = np.zeros(1)
    Crossbar.pulse_updates([(gpu, x, d, 0.3), (gpu2, x2, d2, 0.3)], nonfinite=flag)
    assert flag[0] == 1.0
    zx, zd = x.copy(), d.copy()
    zx[[1, 3]] = 0.0
    zd[[1, 3]] = 0.0
    Crossbar.pulse_updates([(cpu, zx, zd, 0.3), (cpu2, x2, d2, 0.3)])
    for c, g, b in zip((cpu, cpu2), (gpu, gpu2), before, strict=True):
        np.testing.assert_array_equal(g._host(g._g), c._g)
        assert np.isfinite(c._g).all() and not np.array_equal(c._g, b)
    for k, v in cpu.ops.as_dict().items():
        assert gpu.ops.as_dict()[k] == pytest.approx(v, rel=1e-9), k
