"""The Crossbar's contract: ideal equals numpy, tiling, determinism, seeds, bad input, op counts."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from ffsim import Crossbar, load_profile
from ffsim.crossbar.ops import OpCounter


def _data(n_in=50, n_out=30, batch=8, seed=100):
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((n_in, n_out)) / 3).astype(np.float32)
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    return W, x


# ---------------------------------------------------------------------------------------------
# ideal profile


def test_ideal_forward_equals_numpy():
    W, x = _data()
    chip = Crossbar("ideal", 50, 30, fab_seed=1, rng=0)
    chip.program(W)
    # one tile, unit weight scale, no converters: exactly x @ W up to BLAS summation order
    np.testing.assert_allclose(chip.forward(x), x @ W, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(chip.forward(x[0]), x[0] @ W, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(chip.transposed(x @ W), (x @ W) @ W.T, rtol=1e-5, atol=1e-5)


def test_tiled_equals_untiled_on_ideal():
    W, x = _data(n_in=70, n_out=45)
    small = load_profile("ideal").replace(tile={"rows": 16, "cols": 7})
    chip_t = Crossbar(small, 70, 45, fab_seed=1, rng=0)
    chip_u = Crossbar("ideal", 70, 45, fab_seed=1, rng=0)
    assert len(chip_t._row_tiles) == 5 and len(chip_t._col_tiles) == 7
    chip_t.program(W)
    chip_u.program(W)
    np.testing.assert_allclose(chip_t.forward(x), chip_u.forward(x), rtol=1e-5, atol=1e-5)
    d = x @ W
    np.testing.assert_allclose(chip_t.transposed(d), chip_u.transposed(d), rtol=1e-5, atol=1e-5)


def test_ideal_pulse_update_is_the_exact_outer_product():
    W, x = _data()
    d = np.random.default_rng(3).standard_normal((8, 30)).astype(np.float32)
    chip = Crossbar("ideal", 50, 30, fab_seed=1, rng=0, w_max=2.0)
    chip.program(W)
    chip.pulse_update(x, d, lr=0.05)
    np.testing.assert_allclose(chip.read_weights(), W + 0.05 * x.T @ d, rtol=1e-5, atol=1e-6)


def test_digital_int8_quantizes_weights_and_inputs_exactly():
    W, x = _data()
    chip = Crossbar("digital-int8", 50, 30, fab_seed=1, rng=0, w_max=1.0)
    chip.program(W)
    Wq = np.round(np.clip(W, -1, 1) * 127) / 127
    np.testing.assert_allclose(chip.read_weights(), Wq, rtol=0, atol=1e-6)
    s = np.abs(x).max(axis=1, keepdims=True)
    xq = np.round(x / s * 127) / 127 * s
    np.testing.assert_allclose(chip.forward(x), xq @ Wq, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# seeds and determinism


@pytest.mark.parametrize("name", ["pcm", "rram-hfo2", "ecram", "high-variability"])
def test_same_seeds_give_identical_results(name):
    W, x = _data()
    d = np.random.default_rng(4).standard_normal((8, 30)).astype(np.float32) * 0.1

    def run():
        chip = Crossbar(name, 50, 30, fab_seed=3, rng=np.random.default_rng(11))
        chip.program(W)
        y1 = chip.forward(x)
        chip.pulse_update(x, d, lr=0.1)
        chip.advance(1000.0, compensate=chip.profile.device.drift.model != "none")
        return y1, chip.forward(x), chip.read_weights(), chip.ops.as_dict()

    a, b = run(), run()
    for u, v in zip(a[:3], b[:3], strict=True):
        np.testing.assert_array_equal(u, v)
    assert a[3] == b[3]


def test_fabrication_seed_fixes_the_chip_and_run_seed_does_not():
    prof = "high-variability"
    a = Crossbar(prof, 40, 20, fab_seed=5, rng=1)
    b = Crossbar(prof, 40, 20, fab_seed=5, rng=2)
    c = Crossbar(prof, 40, 20, fab_seed=6, rng=1)
    for attr in ("_gmax", "_dwu", "_stuck"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
        assert not np.array_equal(getattr(a, attr), getattr(c, attr))
    np.testing.assert_array_equal(a._adc_fwd.gain, b._adc_fwd.gain)
    assert not np.array_equal(a._adc_fwd.gain, c._adc_fwd.gain)
    # different chips compute differently: same weights, same run seed, same inputs
    W, x = _data(40, 20)
    for chip in (a, c):
        chip._rng = np.random.default_rng(0)
        chip.program(W)
    assert np.abs(a.forward(x) - c.forward(x)).mean() > 1e-3


def test_layers_of_one_chip_differ_by_their_seed_tuple():
    a = Crossbar("high-variability", 30, 30, fab_seed=(7, 0), rng=0)
    b = Crossbar("high-variability", 30, 30, fab_seed=(7, 1), rng=0)
    assert not np.array_equal(a._gmax, b._gmax)


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_inputs_raise_clear_errors():
    chip = Crossbar("pcm", 10, 4, fab_seed=1, rng=0)
    with pytest.raises(ValueError, match=r"program: W must have shape \(10, 4\), got \(4, 10\)"):
        chip.program(np.zeros((4, 10)))
    with pytest.raises(ValueError, match="NaN or inf"):
        chip.program(np.full((10, 4), np.nan))
    with pytest.raises(ValueError, match=r"forward: x must have shape \(batch, 10\)"):
        chip.forward(np.zeros((3, 9)))
    with pytest.raises(ValueError, match=r"transposed: d must have shape \(batch, 4\)"):
        chip.transposed(np.zeros((3, 10)))
    with pytest.raises(ValueError, match="same batch size"):
        chip.pulse_update(np.zeros((3, 10)), np.zeros((2, 4)), 0.1)
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        chip.pulse_update(np.zeros((3, 10)), np.zeros((3, 4)), -1.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        chip.pulse_update(np.full((3, 10), np.nan), np.ones((3, 4)), 0.1)
    with pytest.raises(ValueError, match="seconds must be a finite number >= 0"):
        chip.advance(-1)
    with pytest.raises(ValueError, match="Crossbar.w_max must be a finite number > 0"):
        Crossbar("pcm", 10, 4, fab_seed=1, rng=0, w_max=0)
    with pytest.raises(ValueError, match="Crossbar.in_features must be a positive integer"):
        Crossbar("pcm", 0, 4, fab_seed=1, rng=0)
    with pytest.raises(ValueError, match="Crossbar.fab_seed"):
        Crossbar("pcm", 10, 4, fab_seed=-1, rng=0)
    with pytest.raises(ValueError, match="pulse_mode"):
        Crossbar("pcm", 10, 4, fab_seed=1, rng=0, pulse_mode="fast")
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        Crossbar("pcm", 10, 4, fab_seed=1, rng="zero")


def test_pulse_update_without_update_model_names_the_profile():
    prof = load_profile("pcm").replace(update={"model": "none"})
    chip = Crossbar(prof, 10, 4, fab_seed=1, rng=0)
    with pytest.raises(RuntimeError, match="profile 'pcm' has no in-situ update"):
        chip.pulse_update(np.ones((1, 10)), np.ones((1, 4)), 0.1)


def test_drift_compensation_needs_a_programmed_chip():
    chip = Crossbar("pcm", 10, 4, fab_seed=1, rng=0)
    with pytest.raises(RuntimeError, match="no reference read"):
        chip.advance(10.0, compensate=True)


# ---------------------------------------------------------------------------------------------
# the chip boundary: a trainer sees only what hardware can do

PUBLIC = {"program", "forward", "transposed", "pulse_update", "read_weights", "advance", "ops", "profile", "shape",
          "in_features", "out_features", "w_max", "fab_seed", "pulse_mode", "time_s",
          "backend",  # where the simulation runs (cpu/gpu), not a property of the chip
          "pulse_updates"}  # several chips' pulse_update at once (returns nothing)


def test_public_surface_exposes_no_hidden_state():
    chip = Crossbar("high-variability", 12, 6, fab_seed=1, rng=0)
    public = {n for n in dir(chip) if not n.startswith("_")}
    assert public == PUBLIC, f"new public names must be reviewed for leaks of hidden state: {public ^ PUBLIC}"
    for name in public:
        value = getattr(chip, name)
        if inspect.ismethod(value):
            continue
        assert not isinstance(value, np.ndarray), f"Crossbar.{name} exposes an array"
    # the op counter holds counts only
    assert all(isinstance(v, int | float) for v in chip.ops.as_dict().values())


# ---------------------------------------------------------------------------------------------
# op counter, energy, latency


def test_forward_op_counts():
    prof = load_profile("pcm")
    chip = Crossbar(prof, 300, 600, fab_seed=1, rng=0)  # tiles 256x256: 2 row tiles x 3 column tiles
    chip.program(np.zeros((300, 600)))
    before = chip.ops.copy()
    chip.forward(np.ones((5, 300)))
    ops = chip.ops - before
    assert ops.dac_conversions == 5 * 300 * 3
    assert ops.adc_conversions == 5 * 600 * 2
    assert ops.cell_reads == 5 * 300 * 600 * 2  # differential pairs
    assert ops.mvm_cycles == 5
    lat = ops.latency_s(prof.cost)
    c = prof.cost
    assert lat["total"] == pytest.approx(5 * (c.dac_time_ns + c.integration_time_ns + c.adc_time_ns) * 1e-9)


def test_read_energy_is_v2_g_t():
    # no programming noise: W = w_max puts every G+ at g_max and every G- at g_min = 0
    prof = load_profile("pcm").replace(device={"programming": {"noise_poly_uS": []},
                                               "variation": {"g_max_rel_std": 0.0}})
    n_in, n_out, B = 40, 30, 3
    chip = Crossbar(prof, n_in, n_out, fab_seed=1, rng=0)
    chip.program(np.ones((n_in, n_out)))
    before = chip.ops.copy()
    chip.forward(np.ones((B, n_in)))  # full-scale inputs after noise management
    ops = chip.ops - before
    c = prof.cost
    g = prof.device.g_max_uS * 1e-6
    expected = c.read_voltage_V**2 * g * (c.integration_time_ns * 1e-9) * B * n_in * n_out
    e = ops.energy_J(c)
    assert e["cell_read"] == pytest.approx(expected, rel=1e-6)
    assert e["mac"] == pytest.approx(B * n_in * n_out * c.mac_energy_fJ * 1e-15)
    assert e["adc"] == pytest.approx(B * n_out * c.adc_energy_pJ * 1e-12)
    assert e["total"] == pytest.approx(e["dac"] + e["adc"] + e["mac"] + e["cell_read"] + e["pulses"])


def test_digital_int8_energy_per_mac():
    chip = Crossbar("digital-int8", 64, 32, fab_seed=1, rng=0)
    chip.program(np.zeros((64, 32)))
    before = chip.ops.copy()
    chip.forward(np.ones((10, 64)))
    e = (chip.ops - before).energy_J(chip.profile.cost)
    assert e["mac"] == pytest.approx(10 * 64 * 32 * chip.profile.cost.mac_energy_fJ * 1e-15)
    assert e["cell_read"] == 0.0


def test_op_counter_arithmetic():
    a = OpCounter(dac_conversions=3, device_pulses=5, read_charge_S_s=1.5)
    b = OpCounter(dac_conversions=1, device_pulses=2, read_charge_S_s=0.5)
    assert (a + b).dac_conversions == 4 and (a - b).device_pulses == 3 and (a + b).read_charge_S_s == 2.0
    a.reset()
    assert a == OpCounter()


# ---------------------------------------------------------------------------------------------
# behaviour over time and training


def test_drift_compensation_reduces_the_error_after_a_year():
    W, x = _data(200, 50, 32)
    x = np.abs(x)
    chip = Crossbar("pcm", 200, 50, fab_seed=2, rng=5)
    chip.program(W)
    ideal = x @ W
    chip.advance(365 * 86400.0)
    raw = np.linalg.norm(chip.forward(x) - ideal)
    chip.advance(0.0, compensate=True)
    comp = np.linalg.norm(chip.forward(x) - ideal)
    assert comp < 0.7 * raw


def test_pcm_refresh_keeps_devices_below_threshold():
    W, x = _data(30, 20, 16)
    x = np.abs(x)
    chip = Crossbar("pcm", 30, 20, fab_seed=1, rng=3)
    chip.program(W * 0)
    d = np.random.default_rng(1).standard_normal((16, 20)).astype(np.float32)
    for _ in range(20):
        chip.pulse_update(x, d, lr=0.05)
    thr = chip.profile.update.refresh_threshold
    assert chip.ops.device_pulses > 0
    # set-only pairs are refreshed after every update (refresh_every = 1)
    assert np.max(np.maximum(chip._g[0], chip._g[1])[chip._stuck[0] + chip._stuck[1] == 0]) <= thr + 0.35


def test_pulse_update_moves_weights_along_the_outer_product():
    # a symmetric, low-noise device: the realised update correlates with lr x^T d
    prof = load_profile("ecram").replace(update={"step_noise_rel": 0.0}, device={"variation": {
        "dw_min_rel_std": 0.0, "up_down_std": 0.0, "g_max_rel_std": 0.0, "gamma_std": 0.0}})
    W, x = _data(40, 30, 64)
    x = np.abs(x)
    d = np.random.default_rng(2).standard_normal((64, 30)).astype(np.float32)
    chip = Crossbar(prof, 40, 30, fab_seed=1, rng=3)
    chip.program(W * 0)
    chip._gdc_gain = 1.0
    before = chip._W.copy()
    chip.pulse_update(x, d, lr=0.01)
    chip._rebuild()
    dW = (chip._W - before) * chip.w_max
    target = 0.01 * x.T @ d
    r = np.corrcoef(dW.ravel(), target.ravel())[0, 1]
    assert r > 0.9
    # magnitude within 25 % (near the symmetry point the step is dw_min per pulse)
    assert np.abs(dW).sum() / np.abs(target).sum() == pytest.approx(1.0, rel=0.25)


def test_deferred_read_charge_adds_up_as_the_immediate_one():
    """On the GPU a pass's read charge stays a device scalar until the counter is read: the deferred sum
    must equal the CPU's immediate one bit for bit (same values, same order, same factors)."""
    from types import SimpleNamespace

    from ffsim.crossbar import OpCounter

    downloads = []

    def asnumpy(a):
        downloads.append(len(a))
        return np.asarray(a)

    xp = SimpleNamespace(concatenate=np.concatenate, asnumpy=asnumpy)
    rng = np.random.default_rng(5)
    values = rng.random(2500) * 1e-3
    now, later = OpCounter(read_charge_S_s=0.25), OpCounter(read_charge_S_s=0.25)
    for v in values[:10]:
        now.read_charge_S_s += float(v) * 30.0 * 1e-9
        later.defer(xp, np.float64(v), 30.0, 1e-9)
    assert downloads == []  # nothing crossed yet
    assert later.read_charge_S_s == now.read_charge_S_s  # reading flushes: one transfer of 10 values
    assert downloads == [10]
    for v in values[10:]:
        now.read_charge_S_s += float(v) * 30.0 * 1e-9
        later.defer(xp, np.float64(v), 30.0, 1e-9)
    assert downloads == [10, 1024, 1024]  # never more than 1024 pending
    assert (later + OpCounter()).read_charge_S_s == now.read_charge_S_s
    assert downloads == [10, 1024, 1024, 442]
    assert later.as_dict() == now.as_dict()
    later.defer(xp, np.float64(1.0), 1.0)
    later.reset()
    assert later.read_charge_S_s == 0.0 and len(downloads) == 4  # reset drops what was pending


def test_deferred_counts_settle_in_one_transfer_with_the_cpu_arithmetic():
    """On the GPU an update's pulse and slot counts and a refresh's pair count stay on the device: the
    counter settles them with the read charges in one transfer when a count is read, each with its per-call
    arithmetic (a refresh's write-verify pulses rounded per call, as the CPU does); the chip's own
    increments (``OpCounter.add``) settle nothing."""
    import functools
    from types import SimpleNamespace

    from ffsim.crossbar import OpCounter
    from ffsim.crossbar.crossbar import _refresh_counts, _update_counts

    downloads = []

    def asnumpy(a):
        downloads.append(len(a))
        return np.asarray(a)

    xp = SimpleNamespace(concatenate=np.concatenate, asnumpy=asnumpy)
    now, later = OpCounter(), OpCounter()
    refresh = functools.partial(_refresh_counts, 2.4)  # 4.4 pulses per pair: rounding per call differs
    for n_pulses, n_pairs, charge in [(7, 3, 0.5), (11, 0, 0.25), (2**40 + 3, 1, 0.125)]:
        for c in (now, later):
            c.add(cell_reads=100, macs=400)
        now.read_charge_S_s += charge * 30.0
        later.defer(xp, np.float64(charge), 30.0)
        now.add(**_update_counts(n_pulses, 5 * n_pairs + 1))
        later.defer_counts(xp, np.array([n_pulses, 5 * n_pairs + 1], np.int64), _update_counts)
        now.add(**refresh(n_pairs))
        later.defer_counts(xp, np.array([n_pairs], np.int64), refresh)
    assert downloads == []  # add() and defer*() crossed nothing
    assert later.device_pulses == now.device_pulses == 2**40 + 21 + 13 + 4  # not + round(4 * 4.4) = 18
    assert downloads == [12]  # all twelve pending values in one transfer
    assert later.as_dict() == now.as_dict() and now.cell_reads == 300 + 2 * 4 and now.adc_conversions == 8
    assert now.update_slots == 5 * 4 + 3


def test_pulse_updates_together_equal_one_by_one_and_check_all_first():
    """``Crossbar.pulse_updates`` gives each chip what its own ``pulse_update`` gives (same draws, same
    counts), and checks every update before any chip changes: a non-finite input or a bad shape in the
    second update leaves the first chip as it was."""
    from ffsim.crossbar import NonFiniteInput

    prof = load_profile("pcm")
    rng = np.random.default_rng(3)
    W = [rng.uniform(-1, 1, (12, 8)).astype(np.float32), rng.uniform(-1, 1, (8, 5)).astype(np.float32)]
    x = [rng.standard_normal((6, 12)).astype(np.float32), rng.standard_normal((6, 8)).astype(np.float32)]
    d = [0.3 * rng.standard_normal((6, 8)).astype(np.float32), 0.3 * rng.standard_normal((6, 5)).astype(np.float32)]

    def chips():
        out = [Crossbar(prof, 12, 8, fab_seed=1, rng=5), Crossbar(prof, 8, 5, fab_seed=2, rng=6)]
        for c, w in zip(out, W, strict=True):
            c.program(w)
        return out

    one, both = chips(), chips()
    for _ in range(3):
        for c, xi, di in zip(one, x, d, strict=True):
            c.pulse_update(xi, di, 0.2)
        Crossbar.pulse_updates([(c, xi, di, 0.2) for c, xi, di in zip(both, x, d, strict=True)])
    for a, b, xi in zip(one, both, x, strict=True):
        np.testing.assert_array_equal(b._g, a._g)
        np.testing.assert_array_equal(b.forward(xi), a.forward(xi))
        assert b.ops.as_dict() == a.ops.as_dict() and a.ops.device_pulses > 0
    g0 = both[0]._g.copy()
    bad = d[1].copy()
    bad[2, 1] = np.nan
    with pytest.raises(NonFiniteInput, match="NaN or inf"):
        Crossbar.pulse_updates([(both[0], x[0], d[0], 0.2), (both[1], x[1], bad, 0.2)])
    with pytest.raises(ValueError, match="pulse_update: d must have shape"):
        Crossbar.pulse_updates([(both[0], x[0], d[0], 0.2), (both[1], x[1], d[1][:, :4], 0.2)])
    np.testing.assert_array_equal(both[0]._g, g0)


@pytest.mark.parametrize("profile", ["pcm", "ecram"])
def test_a_nan_input_gives_nan_outputs_and_no_read_charge(profile):
    """A NaN entry makes its row's outputs NaN; the other rows are as if the entry were 0 (same draws), and so
    is the read charge: no voltage is defined for a NaN, and the chip's energy counter stays finite.  Both
    directions, and an infinite entry under noise management (both profiles' DACs scale each row by its max
    |x|: an infinite entry's row converts to zeros and one NaN)."""
    prof = load_profile(profile)
    rng = np.random.default_rng(4)
    W = rng.uniform(-1, 1, (12, 8)).astype(np.float32)
    x = np.abs(rng.standard_normal((5, 12))).astype(np.float32)
    d = rng.standard_normal((5, 8)).astype(np.float32)

    def chip():
        c = Crossbar(prof, 12, 8, fab_seed=1, rng=5)
        c.program(W)
        c.ops.reset()
        return c

    for bad in (np.nan, np.inf):
        xb, xz, db, dz = x.copy(), x.copy(), d.copy(), d.copy()
        xb[2, 3], db[1, 0] = bad, bad
        xz[2, 3], dz[1, 0] = 0.0, 0.0
        if np.isinf(bad):  # x/inf: the row's finite entries convert to 0, the infinite one to NaN
            xz[2], dz[1] = 0.0, 0.0
        a, b = chip(), chip()
        ya, yb = a.forward(xb), b.forward(xz)
        ta, tb = a.transposed(db), b.transposed(dz)
        assert np.isnan(ya[2]).all() and np.isnan(ta[1]).all()
        np.testing.assert_array_equal(np.delete(ya, 2, 0), np.delete(yb, 2, 0))
        np.testing.assert_array_equal(np.delete(ta, 1, 0), np.delete(tb, 1, 0))
        assert a.ops.read_charge_S_s == b.ops.read_charge_S_s > 0
        energy = a.ops.energy_J(prof.cost)
        assert all(np.isfinite(v) for v in energy.values()) and energy["cell_read"] > 0, energy
