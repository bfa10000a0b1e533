"""Statistical tests of ffsim's device physics against the formulas of the profile schema.

Every test isolates one effect: it starts from the ``pcm`` profile with every non-ideality switched off
(:data:`QUIET`) and turns on only the effect under test, then compares what the chip does with a naive
re-implementation of the documented formula (schema docstrings, ``hardware_profiles/pcm.toml``,
``ffsim/crossbar/kernels.py``).  Tests read the chip's private state (``_g``, ``_nu``, ``_stuck``,
``_gmax``, ``_W``, ``_adc_fwd``): they check the physics, they are not trainers.

Statistical tolerances are derived in comments next to each assertion; they are k standard errors
(k = 5 unless stated: a two-sided normal tail of 5.7e-7 per comparison), with the standard errors

* of a mean of n samples with std s:            s / sqrt(n);
* of a sample std s (any distribution):         SE(s^2) / (2 s), SE(s^2) = sqrt((m4 - s^4) / n),
  m4 the sample fourth central moment (for a normal: s / sqrt(2 n));
* of a binomial fraction p over n trials:       sqrt(p (1 - p) / n).

Where a distribution is clipped (programming error at g_min / the device maximum, drift exponent at 0,
pulse steps at the state bounds) the expected moments are those of the clipped normal, computed exactly
by :func:`clipped_normal_moments`.  Seeds of the data and of the chips' run-time generators always differ.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from ffsim.crossbar.crossbar import Crossbar
from ffsim.profiles import load_profile

K_SIGMA = 5.0

# --------------------------------------------------------------------------------------------------
# the pcm numbers, written out independently of the loader (checked against the file once)

PCM_G_MAX = 25.0  # µS
PCM_PROG = (0.26348, 1.9650, -1.1731)  # σ_prog(x) = c0 + c1 x + c2 x², µS, x = g/g_max
PCM_T0 = 20.0  # s
PCM_NU_MEAN = (-0.0155, 0.0244, 0.049, 0.1)  # ln-coefficient, offset, min, max
PCM_NU_STD = (-0.0125, -0.0059, 0.008, 0.045)
PCM_Q = (0.0088, 0.65, 0.2, 250e-9, 20.0)  # q_coeff, q_exponent, q_max, t_read, t_min
PCM_EXP = {"gamma_up": 2.5, "gamma_down": 2.5, "exp_a": -1.0, "exp_b": 0.0, "exp_A_up": -27.235,
           "exp_A_down": -2.235, "dw_min": 0.01, "state_min": 0.0, "state_max": 2.0}
PCM_STEP_NOISE = {"step_noise_rel": 0.6, "step_noise_add": 2.52, "step_noise_state": 6.48}


def test_pcm_constants_match_profile():
    """The constants above are those of hardware_profiles/pcm.toml (so the naive formulas test it)."""
    d = load_profile("pcm").device
    u = load_profile("pcm").update
    assert d.g_min_uS == 0.0 and d.g_max_uS == PCM_G_MAX
    assert tuple(d.programming.noise_poly_uS) == PCM_PROG
    dr = d.drift
    assert dr.t0_s == PCM_T0
    assert (dr.nu_mean_ln_coeff, dr.nu_mean_offset, dr.nu_mean_min, dr.nu_mean_max) == PCM_NU_MEAN
    assert (dr.nu_std_ln_coeff, dr.nu_std_offset, dr.nu_std_min, dr.nu_std_max) == PCM_NU_STD
    rn = d.read_noise
    assert rn.model == "pcm_1f"
    assert (rn.q_coeff, rn.q_exponent, rn.q_max, rn.t_read_s, rn.t_min_s) == PCM_Q
    for k, v in {**PCM_EXP, **PCM_STEP_NOISE}.items():
        assert getattr(u, k) == v, k
    assert u.model == "exponential" and u.polarity == "set_only"


# --------------------------------------------------------------------------------------------------
# helpers

QUIET = {
    "device": {
        "programming": {"noise_poly_uS": []},
        "read_noise": {"model": "none"},
        "drift": {"model": "none"},
        "faults": {"stuck_at_gmin_fraction": 0.0, "stuck_at_gmax_fraction": 0.0},
        "variation": {"g_max_rel_std": 0.0, "dw_min_rel_std": 0.0, "up_down_std": 0.0, "gamma_std": 0.0},
    },
    "update": {"step_noise_rel": 0.0, "step_noise_add": 0.0, "step_noise_state": 0.0, "write_noise": 0.0,
               "refresh_every": 0},
    "dac": {"bits": 0, "noise_management": "none"},
    "adc": {"bits": 0, "noise_std": 0.0, "gain_rel_std": 0.0, "offset_std": 0.0, "nonlinearity": 0.0,
            "nonlinearity_std": 0.0},
    "tile": {"ir_drop": 0.0},
}


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def pcm(**changes):
    """The pcm profile with every non-ideality off (ideal converters too), then ``changes`` applied."""
    return load_profile("pcm").replace(**_merge(QUIET, changes))


def clipped_normal_moments(mu, sigma, lo=-np.inf, hi=np.inf):
    """Mean and std of clip(Y, lo, hi), Y ~ N(mu, sigma²) (a normal censored at lo and hi)."""
    a = (lo - mu) / sigma
    b = (hi - mu) / sigma
    Fa, Sb = norm.cdf(a), norm.sf(b)
    pa, pb = norm.pdf(a), norm.pdf(b)
    a_Fa = a * Fa if np.isfinite(a) else 0.0
    a2_Fa = a * a * Fa if np.isfinite(a) else 0.0
    a_pa = a * pa if np.isfinite(a) else 0.0
    b_Sb = b * Sb if np.isfinite(b) else 0.0
    b2_Sb = b * b * Sb if np.isfinite(b) else 0.0
    b_pb = b * pb if np.isfinite(b) else 0.0
    m1 = a_Fa + (pa - pb) + b_Sb  # E[clip(Z, a, b)]
    m2 = a2_Fa + (norm.cdf(b) - Fa) + a_pa - b_pb + b2_Sb  # E[clip(Z, a, b)²]
    return mu + sigma * m1, sigma * math.sqrt(max(m2 - m1 * m1, 0.0))


def mean_std_se(v: np.ndarray) -> tuple[float, float, float, float]:
    """Sample mean, std, and their standard errors (the std's from the sample fourth moment)."""
    v = np.asarray(v, dtype=np.float64).ravel()
    n = v.size
    m = v.mean()
    c = v - m
    s2 = float(np.mean(c * c))
    m4 = float(np.mean(c**4))
    s = math.sqrt(s2 * n / (n - 1))
    se_s = math.sqrt(max(m4 - s2 * s2, 0.0) / n) / (2.0 * s)
    return float(m), s, s / math.sqrt(n), se_s


def assert_moments(sample, mean_exp, std_exp, what):
    m, s, se_m, se_s = mean_std_se(sample)
    # mean within 5 standard errors of the mean; std within 5 standard errors of the std
    assert abs(m - mean_exp) <= K_SIGMA * se_m, f"{what}: mean {m:.6g} vs {mean_exp:.6g} (SE {se_m:.3g})"
    assert abs(s - std_exp) <= K_SIGMA * se_s, f"{what}: std {s:.6g} vs {std_exp:.6g} (SE {se_s:.3g})"


def sigma_prog_uS(x):
    c0, c1, c2 = PCM_PROG
    return np.maximum(c0 + c1 * x + c2 * x * x, 0.0)


def nu_params(x):
    """Mean and std of ν at x = G/g_max (clamp formulas of DriftSpec with the pcm numbers)."""
    lx = np.log(x)
    a, b, lo, hi = PCM_NU_MEAN
    mean = np.clip(a * lx + b, lo, hi)
    a, b, lo, hi = PCM_NU_STD
    std = np.clip(a * lx + b, lo, hi)
    return mean, std


def sigma_read_pcm_uS(g_uS, t_s):
    """pcm_1f read noise: min(q_coeff/x^q_exp, q_max)·g·sqrt(ln((t + t_read)/(2 t_read))), t >= t_min."""
    qc, qe, qmax, t_read, t_min = PCM_Q
    g = np.asarray(g_uS, dtype=np.float64)
    x = g / PCM_G_MAX
    with np.errstate(divide="ignore"):
        q = np.where(x > 0, np.minimum(qc / np.power(np.maximum(x, 1e-300), qe), qmax), qmax)
    t = max(t_s, t_min)
    return q * g * math.sqrt(math.log((t + t_read) / (2 * t_read)))


def _poly(c, x):
    return sum(ck * x**k for k, ck in enumerate(c))


# --------------------------------------------------------------------------------------------------
# 1. programming noise


@pytest.mark.parametrize("g_min_uS", [0.0, 2.0])
def test_programming_noise_matches_polynomial(g_min_uS):
    """Write-verify error: std σ(g) = 0.26348 + 1.9650 x − 1.1731 x² µS (x = G/g_max of the target),
    unbiased, clipped at [g_min, g_max]."""
    pcm_poly = list(load_profile("pcm").device.programming.noise_poly_uS)  # the file's polynomial
    p = pcm(device={"g_min_uS": g_min_uS, "programming": {"noise_poly_uS": pcm_poly}})
    dg = PCM_G_MAX - g_min_uS
    targets = (0.1, 0.5, 0.9)  # normalized gn
    rows_per, n_out = 100, 200
    chip = Crossbar(p, rows_per * len(targets), n_out, fab_seed=3, rng=np.random.default_rng(101))
    sign = np.where(np.arange(n_out) % 2 == 0, 1.0, -1.0)  # both devices of the pair take targets
    W = np.repeat(targets, rows_per)[:, None] * sign[None, :]
    chip.program(W)
    g_uS = g_min_uS + chip._g.astype(np.float64) * dg  # G = g_min + gn·Δg
    off = []
    for k, gn in enumerate(targets):
        rows = slice(k * rows_per, (k + 1) * rows_per)
        on = np.concatenate([g_uS[0, rows][:, sign > 0].ravel(), g_uS[1, rows][:, sign < 0].ravel()])
        off.append(np.concatenate([g_uS[1, rows][:, sign > 0].ravel(), g_uS[0, rows][:, sign < 0].ravel()]))
        G = g_min_uS + gn * dg
        s = float(sigma_prog_uS(G / PCM_G_MAX))
        # clipped at g_min (≥ 5σ away at gn = 0.1) and at the device maximum g_max (2.3σ away at gn = 0.9):
        # the censored-normal moments account for it exactly
        m_exp, s_exp = clipped_normal_moments(G, s, g_min_uS, PCM_G_MAX)
        assert_moments(on, m_exp, s_exp, f"programmed gn={gn}")
        if gn < 0.9:  # where clipping is negligible: unbiased, and std σ(g) itself (5 SE)
            m_hat, s_hat, se_m, se_s = mean_std_se(on)
            assert abs(m_hat - G) <= K_SIGMA * se_m
            assert abs(s_hat - s) <= K_SIGMA * se_s
    # the partner devices (target g_min): σ(g_min), half of them clipped at g_min
    s0 = float(sigma_prog_uS(g_min_uS / PCM_G_MAX))
    m_exp, s_exp = clipped_normal_moments(g_min_uS, s0, g_min_uS, PCM_G_MAX)
    off = np.concatenate(off)
    assert np.mean(off == g_min_uS) == pytest.approx(0.5, abs=K_SIGMA * math.sqrt(0.25 / off.size))
    assert_moments(off, m_exp, s_exp, "programmed to g_min")


# --------------------------------------------------------------------------------------------------
# 2. level quantization


def test_levels_quantize_programmed_conductance():
    """levels = 5: each device is written to the nearest of 5 evenly spaced levels, nothing else."""
    p = pcm(device={"levels": 5})
    w_max = 2.0
    chip = Crossbar(p, 40, 50, fab_seed=2, rng=np.random.default_rng(7), w_max=w_max)
    W = np.random.default_rng(8).uniform(-1.3, 1.3, (40, 50)) * w_max
    chip.program(W)
    g = chip._g
    assert set(np.unique(g).tolist()) == {0.0, 0.25, 0.5, 0.75, 1.0}
    wn = np.clip(W / w_max, -1.0, 1.0)
    np.testing.assert_array_equal(g[0], (np.rint(np.maximum(wn, 0) * 4) / 4).astype(np.float32))
    np.testing.assert_array_equal(g[1], (np.rint(np.maximum(-wn, 0) * 4) / 4).astype(np.float32))
    r = chip.read_weights()
    expected = (w_max * np.rint(wn * 4) / 4).astype(np.float32)  # multiples of w_max/4: exact in float32
    np.testing.assert_array_equal(r, expected)
    assert len(np.unique(r)) == 9


def test_digital_int8_weights_are_int8_levels():
    """digital-int8 stores round(W·127)/127 (no read noise: every read gives the same values)."""
    p = load_profile("digital-int8")
    chip = Crossbar(p, 64, 32, fab_seed=4, rng=np.random.default_rng(9))
    W = np.random.default_rng(10).uniform(-1.2, 1.2, (64, 32))
    chip.program(W)
    k = np.rint(np.clip(W, -1.0, 1.0) * 127)
    r1, r2 = chip.read_weights(), chip.read_weights()
    np.testing.assert_array_equal(r1, r2)
    r = r1.astype(np.float64)
    # the integer level is exact
    np.testing.assert_array_equal(np.rint(r * 127), k)
    # and the value is k/127 to float32 resolution: the level is held as a float32 normalized
    # conductance (127 + k)/254 and read back as (g − 0.5)/0.5, so it may differ from the float32
    # nearest to k/127 by one float32 ulp (≤ 2^-23 for |w| ≤ 1), i.e. by < 1e-5 of an LSB (1/127)
    np.testing.assert_array_less(np.abs(r - k / 127), 2.0**-23 + 1e-12)
    assert len(np.unique(k)) > 200


def test_digital_int8_forward_is_exact_integer_mvm():
    """Inputs on the 8-bit DAC grid meet int8 weights: forward = Σ k_i m_ij / 127² (exact accumulation)."""
    p = load_profile("digital-int8")
    n_in, n_out, B = 256, 32, 100
    chip = Crossbar(p, n_in, n_out, fab_seed=4, rng=np.random.default_rng(12))
    rng = np.random.default_rng(13)
    M = rng.integers(-127, 128, (n_in, n_out))
    chip.program(M / 127)
    K = rng.integers(-127, 128, (B, n_in))
    K[: B // 2, 0] = 127  # max |x| = 1 exactly: the abs_max DAC scale is 1
    K[B // 2 :, 0] = -127
    exact = K @ M  # int64
    for s in (1.0, 0.37):  # 0.37: abs_max rescales the vector to the grid and back
        y = chip.forward(s * K / 127).astype(np.float64) / s
        # the simulator accumulates in float32: the exact integer sum is recovered iff its error stays
        # below half an integer unit (a 32-bit integer accumulator, as the profile claims, is exact)
        np.testing.assert_array_equal(np.rint(y * 127**2), exact)


# --------------------------------------------------------------------------------------------------
# 3. drift


@pytest.mark.parametrize("g_min_uS", [0.0, 2.0])
def test_drift_exponent_distribution(g_min_uS):
    """ν = −ln(G(t)/G(t0))/ln(t/t0) per device has the clamp-formula mean and std of its target."""
    p = pcm(device={"g_min_uS": g_min_uS, "drift": {"model": "power_law"}})
    dg = PCM_G_MAX - g_min_uS
    targets = (0.005, 0.01, 0.1, 0.5, 0.9)  # normalized gn; x = G/g_max covers both clamps of mean and std
    rows_per, n_out = 40, 250
    chip = Crossbar(p, rows_per * len(targets), n_out, fab_seed=5, rng=np.random.default_rng(202))
    sign = np.where(np.arange(n_out) % 2 == 0, 1.0, -1.0)
    W = np.repeat(targets, rows_per)[:, None] * sign[None, :]
    chip.program(W)
    G0 = g_min_uS + chip._g.astype(np.float64) * dg
    t = 1e5
    chip.advance(t)
    G1 = g_min_uS + chip._g.astype(np.float64) * dg
    L = math.log(t / PCM_T0)
    off = []
    for k, gn in enumerate(targets):
        rows = slice(k * rows_per, (k + 1) * rows_per)
        on0 = np.concatenate([G0[0][rows][:, sign > 0].ravel(), G0[1][rows][:, sign < 0].ravel()])
        on1 = np.concatenate([G1[0][rows][:, sign > 0].ravel(), G1[1][rows][:, sign < 0].ravel()])
        off.append((np.concatenate([G0[1][rows][:, sign > 0].ravel(), G0[0][rows][:, sign < 0].ravel()]),
                    np.concatenate([G1[1][rows][:, sign > 0].ravel(), G1[0][rows][:, sign < 0].ravel()])))
        nu_hat = -np.log(on1 / on0) / L
        x = (g_min_uS + gn * dg) / PCM_G_MAX
        mean, std = nu_params(x)
        m_exp, s_exp = clipped_normal_moments(float(mean), float(std), 0.0)  # ν is clipped at 0
        assert_moments(nu_hat, m_exp, s_exp, f"nu at x={x:.4g}")
    off0 = np.concatenate([o[0] for o in off])
    off1 = np.concatenate([o[1] for o in off])
    if g_min_uS == 0.0:
        # devices at G = 0 stay at 0
        assert np.all(off0 == 0.0) and np.all(off1 == 0.0)
    else:
        # devices at g_min drift too (G, not G − g_min, follows the power law), with ν of x = g_min/g_max
        nu_hat = -np.log(off1 / off0) / L
        mean, std = nu_params(g_min_uS / PCM_G_MAX)
        m_exp, s_exp = clipped_normal_moments(float(mean), float(std), 0.0)
        assert_moments(nu_hat, m_exp, s_exp, "nu at g_min")


def test_drift_power_law_composition_t0_and_stuck():
    """G(t) = G(t0)(t/t0)^−ν with the device's own ν; nothing before t0; steps compose; stuck devices fixed."""
    p = pcm(device={"drift": {"model": "power_law"}, "g_min_uS": 1.0,
                    "faults": {"stuck_at_gmin_fraction": 0.05, "stuck_at_gmax_fraction": 0.03}})
    dg = PCM_G_MAX - 1.0
    gmin_n = 1.0 / dg
    W = np.random.default_rng(301).uniform(-1, 1, (60, 50))
    a = Crossbar(p, 60, 50, fab_seed=6, rng=np.random.default_rng(302))
    b = Crossbar(p, 60, 50, fab_seed=6, rng=np.random.default_rng(302))
    a.program(W)
    b.program(W)
    np.testing.assert_array_equal(a._nu, b._nu)  # same run generator: same exponents (precondition)
    g0 = a._g.copy()
    G0 = gmin_n + g0.astype(np.float64)  # conductance in units of Δg
    nu = a._nu.astype(np.float64)
    stuck = a._stuck != 0
    assert stuck.any() and (~stuck).any()

    # no drift before t0 (also not exactly at t0)
    for dt, t_now in ((10.0, 10.0), (9.5, 19.5), (0.5, 20.0)):
        a.advance(dt)
        assert a.time_s == t_now
        np.testing.assert_array_equal(a._g, g0)

    def G_of(chip):
        return gmin_n + chip._g.astype(np.float64)

    def expected(t):
        return np.where(stuck, G0, G0 * (t / PCM_T0) ** (-nu))

    # float32 state: each of the ~4 float32 operations has relative error ≤ 2^-24; rtol 2e-6 ≈ 30 of them
    a.advance(1.0)  # t = 21 s, just past t0
    np.testing.assert_allclose(G_of(a), expected(21.0), rtol=2e-6, atol=0)
    a.advance(1e5 - 21.0)
    b.advance(1e5)
    np.testing.assert_allclose(G_of(a), G_of(b), rtol=2e-6, atol=0)
    np.testing.assert_allclose(G_of(a), expected(1e5), rtol=2e-6, atol=0)
    # stuck devices do not drift (exactly), the others do (ν > 0 almost everywhere)
    np.testing.assert_array_equal(a._g[stuck], g0[stuck])
    assert np.all(a._g[a._stuck == 1] == 0.0)
    assert np.all(a._g[a._stuck == 2] == np.broadcast_to(a._gmax, a._g.shape)[a._stuck == 2])
    moved = (~stuck) & (nu > 0)
    assert np.mean(moved) > 0.85
    assert np.all(G_of(a)[moved] < G0[moved])


# --------------------------------------------------------------------------------------------------
# 4. read noise


READ_CASES = [
    ("differential", 0.0, 20.0, "pcm_1f"),
    ("differential", 0.0, 1e4, "pcm_1f"),
    ("differential", 2.5, 1e4, "pcm_1f"),  # g_min > 0: the partner device at g_min is noisy too
    ("differential", 2.5, 5.0, "pcm_1f"),  # before t_min: evaluated at t_min = 20 s
    ("differential", 2.5, 1e4, "poly"),
]
POLY_READ = (0.2, 0.6, -0.3)  # µS, model 'poly'


def _read_sigma_uS(model, g_uS, t_s):
    if model == "poly":
        return np.maximum(_poly(POLY_READ, np.asarray(g_uS) / PCM_G_MAX), 0.0)
    return sigma_read_pcm_uS(g_uS, t_s)


def _read_profile(mapping, g_min_uS, model):
    rn = {"model": model}
    if model == "poly":
        rn["poly_uS"] = list(POLY_READ)
    # reference mapping: reference state 1 of [0, 2] ↔ gn_ref = 0.5, span 0.5
    return pcm(device={"mapping": mapping, "g_min_uS": g_min_uS, "read_noise": rn},
               update={"polarity": "bidirectional", "reference_state": 1.0})


def _device_conductances(mapping, wn, g_min_uS):
    """(G of the device carrying the weight, G of its partner or reference), µS, span."""
    dg = PCM_G_MAX - g_min_uS
    if mapping == "differential":
        return g_min_uS + np.maximum(wn, 0) * dg, g_min_uS + np.maximum(-wn, 0) * dg, 1.0
    return g_min_uS + (0.5 + 0.5 * wn) * dg, np.full(np.shape(wn), g_min_uS + 0.5 * dg), 0.5


@pytest.mark.parametrize("mapping,g_min_uS,t_s,model", READ_CASES)
def test_read_weights_noise(mapping, g_min_uS, t_s, model):
    """Two reads of a cell differ by N(0, 2 w_max² (σ(G⁺,t)² + σ(G⁻,t)²)/(Δg span)²): both devices are
    read (differential pair, or device and reference device)."""
    p = _read_profile(mapping, g_min_uS, model)
    dg = PCM_G_MAX - g_min_uS
    w_max = 2.0
    wn_rows = np.array([-1.0, -0.7, -0.4, -0.15, -0.02, 0.0, 0.03, 0.2, 0.45, 0.8, 1.0])
    n_out, K = 300, 40
    chip = Crossbar(p, wn_rows.size, n_out, fab_seed=7, rng=np.random.default_rng(401), w_max=w_max)
    chip.program(np.repeat(wn_rows[:, None], n_out, axis=1) * w_max)
    chip.advance(t_s)
    reads = np.stack([chip.read_weights() for _ in range(2 * K)]).astype(np.float64)
    D = reads[0::2] - reads[1::2]  # K independent differences per cell
    Gp, Gm, span = _device_conductances(mapping, wn_rows, g_min_uS)
    var_diff = 2 * w_max**2 * (_read_sigma_uS(model, Gp, t_s) ** 2 + _read_sigma_uS(model, Gm, t_s) ** 2) \
        / (dg * span) ** 2
    for r, v in enumerate(var_diff):
        if v == 0.0:  # both devices at G = 0: no noise at all
            assert np.all(D[:, r] == 0.0)
            continue
        ratio = np.mean(D[:, r] ** 2) / v
        # D²/E[D²] ~ χ²₁ (variance 2) over n = K·n_out values: SE of the ratio sqrt(2/n)
        tol = K_SIGMA * math.sqrt(2.0 / (K * n_out))
        assert abs(ratio - 1.0) <= tol, f"row w={wn_rows[r]}: var ratio {ratio:.4f} (tol {tol:.4f})"
        # and the reads are centred on the programmed weight: mean of the K·n_out differences is 0
        assert abs(D[:, r].mean()) <= K_SIGMA * math.sqrt(v / (K * n_out))
    assert np.any(var_diff == 0.0) == (g_min_uS == 0.0 and model == "pcm_1f")


def test_read_weights_noise_reference_mapping():
    """'reference' mapping: a cell reads its device (own noise) minus the row's reference device, read once
    per row and shared by the row's cells.  Per read pair and row, D_j = A_j − B with A_j independent
    (variance v_a = 2 w_max² σ(G)²/(Δg span)²) and B shared (v_b = 2 w_max² σ(G_ref)²/(Δg span)²):
    the residual D_j − mean_j D has variance v_a (1 − 1/n), the row mean variance v_b + mean_j(v_a)/n."""
    g_min_uS, t_s, w_max = 2.5, 1e4, 2.0
    p = _read_profile("reference", g_min_uS, "pcm_1f")
    dg = PCM_G_MAX - g_min_uS
    wn_rows = np.tile([-1.0, -0.7, -0.4, -0.15, -0.02, 0.0, 0.03, 0.2, 0.45, 0.8, 1.0], 4)
    n_out, K = 250, 50  # one column tile (256 columns): one reference device per row
    chip = Crossbar(p, wn_rows.size, n_out, fab_seed=7, rng=np.random.default_rng(411), w_max=w_max)
    assert chip._ref.shape == (wn_rows.size, 1)
    chip.program(np.repeat(wn_rows[:, None], n_out, axis=1) * w_max)
    chip.advance(t_s)
    reads = np.stack([chip.read_weights() for _ in range(2 * K)]).astype(np.float64)
    D = reads[0::2] - reads[1::2]  # (K, rows, n_out)
    G, Gref, span = _device_conductances("reference", wn_rows, g_min_uS)
    v_a = 2 * w_max**2 * sigma_read_pcm_uS(G, t_s) ** 2 / (dg * span) ** 2
    v_b = 2 * w_max**2 * sigma_read_pcm_uS(Gref, t_s) ** 2 / (dg * span) ** 2
    Dbar = D.mean(axis=2)  # (K, rows)
    resid = D - Dbar[:, :, None]
    for r in range(wn_rows.size // 4):
        rows = np.arange(r, wn_rows.size, 11)
        ratio = np.mean(resid[:, rows] ** 2) / (v_a[r] * (1 - 1 / n_out))
        # ≈ χ² with 4 K (n−1) degrees of freedom: SE sqrt(2/(4 K (n−1)))
        assert abs(ratio - 1) <= K_SIGMA * math.sqrt(2 / (4 * K * (n_out - 1))), (wn_rows[r], ratio)
    # shared reference noise: Dbar normal with variance v_b + v_a/n, independent over K·rows samples
    ratio = np.mean(Dbar**2 / (v_b + v_a / n_out)[None, :])
    assert abs(ratio - 1) <= K_SIGMA * math.sqrt(2 / Dbar.size), ratio
    assert np.all(v_b > 10 * v_a / n_out)  # (the reference's share dominates the row mean)


@pytest.mark.parametrize("mapping", ["differential", "reference"])
def test_forward_read_noise_distribution(mapping):
    """forward(x) with ideal converters: mean x·W, variance Σ_i x_i² σ²_ij (fresh read noise per MVM)."""
    g_min_uS = 2.5
    p = _read_profile(mapping, g_min_uS, "pcm_1f")
    dg = PCM_G_MAX - g_min_uS
    w_max, t_s = 1.5, 1e3
    n_in, n_out, B = 64, 12, 4000
    chip = Crossbar(p, n_in, n_out, fab_seed=8, rng=np.random.default_rng(501), w_max=w_max)
    rng = np.random.default_rng(502)
    W = rng.uniform(-1, 1, (n_in, n_out)) * w_max
    x = rng.uniform(-1, 1, n_in)
    chip.program(W)
    chip.advance(t_s)
    Y = chip.forward(np.tile(x, (B, 1))).astype(np.float64)
    Gp, Gm, span = _device_conductances(mapping, W / w_max, g_min_uS)
    # per cell: both devices' read variance (for 'reference', the row's reference device)
    s2 = w_max**2 * (sigma_read_pcm_uS(Gp, t_s) ** 2 + sigma_read_pcm_uS(Gm, t_s) ** 2) / (dg * span) ** 2
    var_exp = (x**2) @ s2  # naive sum over the cells of each column
    var_hat = Y.var(axis=0, ddof=1)
    # sample variance of B normal draws: relative SE sqrt(2/(B−1)) ≈ 2.2 %
    np.testing.assert_array_less(np.abs(var_hat / var_exp - 1.0), K_SIGMA * math.sqrt(2.0 / (B - 1)))
    # the noise is centred: mean within 5 σ/sqrt(B) of x·W
    mean_exp = x @ W
    np.testing.assert_array_less(np.abs(Y.mean(axis=0) - mean_exp), K_SIGMA * np.sqrt(var_exp / B))
    # successive outputs are independent draws: lag-1 correlation within 5/sqrt(B) of 0
    z = (Y - Y.mean(axis=0)) / Y.std(axis=0)
    lag1 = np.mean(z[1:] * z[:-1], axis=0)
    np.testing.assert_array_less(np.abs(lag1), K_SIGMA / math.sqrt(B))


# --------------------------------------------------------------------------------------------------
# 5. stuck devices

STUCK = {"stuck_at_gmin_fraction": 0.05, "stuck_at_gmax_fraction": 0.03}


def test_stuck_fractions_and_fabrication_seed():
    p = pcm(device={"faults": STUCK})
    shape = (200, 200)
    a = Crossbar(p, *shape, fab_seed=11, rng=np.random.default_rng(601))
    b = Crossbar(p, *shape, fab_seed=11, rng=np.random.default_rng(602))
    c = Crossbar(p, *shape, fab_seed=12, rng=np.random.default_rng(601))
    n = a._stuck.size  # 2 devices per cell
    for code, frac in ((1, 0.05), (2, 0.03)):
        f = np.mean(a._stuck == code)
        # binomial fraction: within 5 sqrt(p(1−p)/n)
        assert abs(f - frac) <= K_SIGMA * math.sqrt(frac * (1 - frac) / n), (code, f)
    np.testing.assert_array_equal(a._stuck, b._stuck)  # the run generator plays no part
    assert not np.array_equal(a._stuck, c._stuck)
    # another fabrication seed draws an independent map: P(stuck in both) = 0.08²
    both = np.mean((a._stuck != 0) & (c._stuck != 0))
    q = 0.08**2
    assert abs(both - q) <= K_SIGMA * math.sqrt(q * (1 - q) / n)


def test_stuck_devices_ignore_program_and_pulses():
    """Stuck devices keep g_min / their own g_max through program(), pulse_update() and refresh."""
    # (default pulse mode 'aggregate'; both kernels share the per-cell stuck check.  Numba compiles one
    # kernel per array layout, ~15 s each on 2 cores, so the tests with stuck maps share one.)
    p = pcm(device={"faults": STUCK, "variation": {"g_max_rel_std": 0.1}},
            update={"refresh_every": 1, **PCM_STEP_NOISE})
    chip = Crossbar(p, 60, 50, fab_seed=13, rng=np.random.default_rng(611))
    rng = np.random.default_rng(612)
    st = chip._stuck
    gmax = np.broadcast_to(chip._gmax, st.shape)
    expected = np.where(st == 1, 0.0, gmax).astype(np.float32)

    def check():
        np.testing.assert_array_equal(chip._g[st != 0], expected[st != 0])

    check()
    for _ in range(2):
        chip.program(rng.uniform(-1, 1, chip.shape))
        check()
    g_before = chip._g.copy()
    for _ in range(5):
        chip.pulse_update(rng.uniform(-1, 1, (8, 60)), rng.uniform(-1, 1, (8, 50)), lr=0.05)
        check()
    moved = np.mean(chip._g[st == 0] != g_before[st == 0])
    assert moved > 0.5  # the pulses did reach the other devices


# --------------------------------------------------------------------------------------------------
# 6. device-to-device variation


def test_gmax_variation_fixed_at_fabrication():
    """Each device's own maximum conductance: N(1, 0.1²)·g_max, drawn from the fab seed, fixed for life."""
    rel = 0.1
    # a few stuck devices (excluded below) so that this chip shares the pulse kernel of the stuck test
    p = pcm(device={"variation": {"g_max_rel_std": rel},
                    "faults": {"stuck_at_gmin_fraction": 0.01, "stuck_at_gmax_fraction": 0.01}})
    shape = (100, 100)
    chip = Crossbar(p, *shape, fab_seed=21, rng=np.random.default_rng(701))
    gmax0 = np.array(chip._gmax, copy=True)
    free = chip._stuck[0] == 0  # G⁺ devices that are not stuck
    n = gmax0.size
    # the spread itself: mean 1, relative std 0.1 (clip at 0.05 is 9.5σ away)
    assert_moments(gmax0, 1.0, rel, "device g_max")
    # programming to gn = 1 (W = w_max): target clipped to each device's maximum, min(1, g_max)
    chip.program(np.ones(shape))
    np.testing.assert_array_equal(chip._g[0][free], np.minimum(np.float32(1.0), gmax0[0][free]))
    m_exp, s_exp = clipped_normal_moments(1.0, rel, hi=1.0)  # the censored distribution min(1, g_max)
    assert_moments(chip._g[0][free], m_exp, s_exp, "programmed to gn = 1")
    # SET pulses (≈ Poisson(31) per update here) saturate every G⁺ at its own maximum; set_only: an up
    # update moves no G⁻
    g1 = chip._g[1].copy()
    for _ in range(6):
        chip.pulse_update(np.ones(shape[0]), np.ones(shape[1]), lr=1.0)
    np.testing.assert_array_equal(chip._g[0][free], gmax0[0][free])
    np.testing.assert_array_equal(chip._g[1], g1)
    assert_moments(chip._g[0][free] * PCM_G_MAX, PCM_G_MAX, rel * PCM_G_MAX, "per-device maxima (µS)")
    # fixed for life: unchanged by programming, pulses and time; same fab seed ⇒ same spread
    chip.advance(1e4)
    np.testing.assert_array_equal(chip._gmax, gmax0)
    twin = Crossbar(p, *shape, fab_seed=21, rng=np.random.default_rng(702))
    np.testing.assert_array_equal(twin._gmax, gmax0)
    other = Crossbar(p, *shape, fab_seed=22, rng=np.random.default_rng(701))
    r = np.corrcoef(np.asarray(other._gmax).ravel(), gmax0.ravel())[0, 1]
    assert abs(r) <= K_SIGMA / math.sqrt(n)  # independent draws: correlation SE 1/sqrt(n)


# --------------------------------------------------------------------------------------------------
# 7. pulse response vs model


def naive_f(up, u, d):
    """f_d(u) of UpdateSpec's docstring (``up`` a dict of the [update] values)."""
    smin, smax = up["state_min"], up["state_max"]
    m = up["model"]
    if m == "linear":
        f = 1 - up["gamma_up"] * u / smax if d > 0 else 1 - up["gamma_down"] * u / smin
    elif m == "exponential":
        z = 2 * up["exp_a"] * u / (smax - smin) + up["exp_b"]
        A, g = (up["exp_A_up"], up["gamma_up"]) if d > 0 else (up["exp_A_down"], up["gamma_down"])
        f = max(1 - A * math.exp(d * g * z), 0.0)
    elif m == "power":
        w = (smax - u) / (smax - smin)
        f = w ** up["gamma_up"] if d > 0 else (1 - w) ** up["gamma_down"]
    else:
        raise AssertionError(m)
    return f


def naive_step(up, u, d):
    beta = up.get("up_down", 0.0)
    dw = up["dw_min"] * (1 + beta) if d > 0 else up["dw_min"] * (1 - beta)
    return d * dw * naive_f(up, u, d)


def naive_pulse(up, g, d):
    """One pulse on a device at normalized conductance g (float32 state, as stored on the chip)."""
    smin, smax = up["state_min"], up["state_max"]
    R = smax - smin
    u = smin + float(g) * R
    u = min(max(u + naive_step(up, u, d), smin), smax)
    return np.float32((u - smin) / R)


BIDIR = {"polarity": "bidirectional", "up_down": 0.0, "gamma_up": 0.0, "gamma_down": 0.0}
PULSE_CASES = {
    "linear_const": ("reference", {**BIDIR, "model": "linear", "state_min": -1.0, "state_max": 1.0,
                                   "reference_state": 0.0, "dw_min": 0.05, "up_down": 0.2}),
    "linear_soft": ("reference", {**BIDIR, "model": "linear", "state_min": -1.0, "state_max": 1.0,
                                  "reference_state": 0.0, "dw_min": 0.05, "up_down": 0.1,
                                  "gamma_up": 1.0, "gamma_down": 1.0}),
    "exponential_pcm": ("reference", {**BIDIR, **PCM_EXP, "model": "exponential", "reference_state": 1.0}),
    # positive A: f_d = max(1 − A exp(d γ z), 0) vanishes at z = ±ln(2)/2 (u = ±0.35 here); started at
    # u = 0.8, beyond the root, up pulses do nothing (the clamp at 0 acts) and down pulses move it
    "exponential_clamped": ("reference", {**BIDIR, "model": "exponential", "state_min": -1.0, "state_max": 1.0,
                                          "reference_state": 0.0, "dw_min": 0.05, "exp_a": 1.0, "exp_b": 0.0,
                                          "exp_A_up": 0.5, "exp_A_down": 0.5, "gamma_up": 2.0,
                                          "gamma_down": 2.0}),
    "power": ("reference", {**BIDIR, "model": "power", "state_min": -1.0, "state_max": 1.0,
                            "reference_state": 0.0, "dw_min": 0.04, "up_down": -0.2,
                            "gamma_up": 1.5, "gamma_down": 0.7}),
    "linear_soft_pushpull": ("differential", {**BIDIR, "model": "linear", "state_min": -1.0, "state_max": 1.0,
                                              "reference_state": 0.0, "dw_min": 0.05, "up_down": 0.1,
                                              "gamma_up": 1.0, "gamma_down": 1.0}),
    "pcm_set_only": ("differential", {**PCM_EXP, "model": "exponential", "polarity": "set_only",
                                      "up_down": 0.0}),
}


# weight programmed before the pulses, as a fraction of w_max (default 0)
PULSE_W0 = {"linear_soft_pushpull": 0.3, "exponential_clamped": 0.8}


def _delta_w(chip) -> float:
    """Nominal weight change of one pulse: w_max dw_min/(R span), ×2 for a push-pull pair."""
    u = chip.profile.update
    R = u.state_max - u.state_min
    if chip.profile.device.mapping == "reference":
        g_ref = (u.reference_state - u.state_min) / R
        span = max(g_ref, 1.0 - g_ref)
        factor = 1.0
    else:
        span = 1.0
        factor = 2.0 if u.polarity == "bidirectional" else 1.0
    return chip.w_max * u.dw_min / (R * span) * factor


@pytest.mark.parametrize("case", list(PULSE_CASES))
def test_pulse_trajectory_matches_model(case):
    """One cell, p = q = 1 (every slot of the BL-slot train coincides): N pulses per update exactly,
    each the model's deterministic step from the current state, clipped at the bounds."""
    mapping, up = PULSE_CASES[case]
    p = pcm(device={"mapping": mapping}, update=up)
    w_max = 1.5
    n_in, n_out, i, j = 3, 4, 1, 2
    chip = Crossbar(p, n_in, n_out, fab_seed=31, rng=np.random.default_rng(801), w_max=w_max,
                    pulse_mode="exact")
    chip.program(np.full((n_in, n_out), PULSE_W0.get(case, 0.0) * w_max))
    g_init = chip._g.copy()
    N = 2 if case == "pcm_set_only" else 6
    dw = _delta_w(chip)
    lr = N * dw * (1 - 1e-12)  # need = lr |x| |d| / δw = N (a hair below: ceil gives BL = N exactly)
    assert math.ceil(lr / dw) == N
    directions = [+1] * 6 + [-1] * 10 + [+1] * 4
    mode = "ref" if mapping == "reference" else ("pushpull" if up["polarity"] == "bidirectional" else "set")
    planes = chip._g.shape[0]
    state = [np.float32(g_init[k, i, j]) for k in range(planes)]
    pulses0 = chip.ops.device_pulses
    history = []
    for step, s in enumerate(directions):
        x = np.zeros(n_in)
        x[i] = s
        d = np.zeros(n_out)
        d[j] = 1.0
        chip.pulse_update(x, d, lr)
        for _ in range(N):
            if mode == "ref":
                state[0] = naive_pulse(up, state[0], s)
            elif mode == "pushpull":
                state[0] = naive_pulse(up, state[0], s)
                state[1] = naive_pulse(up, state[1], -s)
            else:  # set_only: the weight's up is a SET of G⁺, its down a SET of G⁻
                k = 0 if s > 0 else 1
                state[k] = naive_pulse(up, state[k], +1)
        got = chip._g[:, i, j].astype(np.float64)
        # float32 state on both sides; 1e-6 = ~10 ulps of slack for the order of float64 operations
        np.testing.assert_allclose(got, np.array(state, dtype=np.float64), rtol=0, atol=1e-6,
                                   err_msg=f"{case}: after update {step}")
        history.append(got)
    # exactly N pulses per update on each device the mode drives (p = q = 1)
    per_update = {"ref": 1, "pushpull": 2, "set": 1}[mode]
    assert chip.ops.device_pulses - pulses0 == N * per_update * len(directions)
    # every other cell untouched
    mask = np.ones((n_in, n_out), bool)
    mask[i, j] = False
    np.testing.assert_array_equal(chip._g[:, mask], g_init[:, mask])
    # the trajectory is not trivial: the driven devices moved by more than 10 % of their range, and
    # the constant-step device ran into both of its bounds
    hist = np.array(history)
    assert np.ptp(hist, axis=0).max() > 0.1
    if case == "linear_const":
        assert hist[:, 0].max() == 1.0 and hist[:, 0].min() == 0.0
    if case == "exponential_clamped":  # the first 6 (up) updates left the state at u = 0.8 exactly
        np.testing.assert_array_equal(hist[:6, 0], g_init[0, i, j])


@pytest.mark.parametrize("u0,s", [(0.5, +1), (0.5, -1), (1.5, +1), (1.5, -1)])
def test_pulse_step_noise_statistics(u0, s):
    """Cycle-to-cycle noise: step ~ N(mean step, (rel |step| + dw_min (add + state |u|))²), clipped."""
    up = {**BIDIR, **PCM_EXP, **PCM_STEP_NOISE, "model": "exponential", "reference_state": 1.0}
    p = pcm(device={"mapping": "reference"}, update=up)
    n_in, n_out = 200, 100
    chip = Crossbar(p, n_in, n_out, fab_seed=32, rng=np.random.default_rng(901), pulse_mode="exact")
    R = up["state_max"] - up["state_min"]
    # reference state 1 ↔ gn 0.5, span 0.5: W = w_max (u0 − 1)/ (R span) puts every device at u0
    chip.program(np.full((n_in, n_out), (u0 - 1.0) / (R * 0.5)))
    g0 = chip._g[0].astype(np.float64)
    np.testing.assert_allclose(up["state_min"] + g0 * R, u0, atol=1e-6)
    dw = _delta_w(chip)
    pulses0 = chip.ops.device_pulses
    chip.pulse_update(np.full(n_in, float(s)), np.ones(n_out), lr=dw * (1 - 1e-12))  # one pulse each
    assert chip.ops.device_pulses - pulses0 == n_in * n_out
    du = (chip._g[0].astype(np.float64) - g0) * R
    step = naive_step(up, u0, s)
    std = up["step_noise_rel"] * abs(step) + up["dw_min"] * (up["step_noise_add"] +
                                                              up["step_noise_state"] * abs(u0))
    m_exp, s_exp = clipped_normal_moments(u0 + step, std, up["state_min"], up["state_max"])
    assert_moments(du, m_exp - u0, s_exp, f"step at u={u0}, d={s}")


def test_pulse_step_noise_pushpull_devices_independent():
    """Push-pull pair: both devices step with the model's mean and their own, uncorrelated noise."""
    up = {**BIDIR, "model": "linear", "state_min": -1.0, "state_max": 1.0, "dw_min": 0.05,
          "step_noise_rel": 0.3, "step_noise_add": 0.5, "step_noise_state": 0.0}
    p = pcm(update=up)
    n_in, n_out = 200, 100
    chip = Crossbar(p, n_in, n_out, fab_seed=33, rng=np.random.default_rng(911), pulse_mode="exact")
    chip.program(np.full((n_in, n_out), 0.5))  # G⁺ at gn 0.5 (u = 0), G⁻ at gn 0 (u = −1)
    g0 = chip._g.astype(np.float64).copy()
    chip.pulse_update(np.ones(n_in), np.ones(n_out), lr=_delta_w(chip) * (1 - 1e-12))
    du = (chip._g.astype(np.float64) - g0) * 2.0
    for k, (u0, d) in enumerate(((0.0, +1), (-1.0, -1))):
        step = naive_step(up, u0, d)
        std = up["step_noise_rel"] * abs(step) + up["dw_min"] * up["step_noise_add"]
        m_exp, s_exp = clipped_normal_moments(u0 + step, std, -1.0, 1.0)
        assert_moments(du[k], m_exp - u0, s_exp, f"plane {k}")
    r = np.corrcoef(du[0].ravel(), du[1].ravel())[0, 1]
    assert abs(r) <= K_SIGMA / math.sqrt(n_in * n_out)  # correlation of independent draws: SE 1/sqrt(n)


# --------------------------------------------------------------------------------------------------
# 8. aggregate vs exact pulse modes


def test_aggregate_and_exact_pulse_modes_agree():
    """E[ΔW] = lr xᵀd for a constant-step device far from its bounds, in both modes."""
    up = {**BIDIR, "model": "linear", "state_min": -1.0, "state_max": 1.0, "reference_state": 0.0,
          "dw_min": 1e-3}
    p = pcm(device={"mapping": "reference"}, update=up)
    n_in, n_out, B, R = 6, 5, 8, 1000
    rng = np.random.default_rng(1001)
    x = rng.uniform(-1, 1, (B, n_in))
    d = rng.uniform(-1, 1, (B, n_out))
    results = {}
    for mode, seed in (("aggregate", 1002), ("exact", 1003)):
        chip = Crossbar(p, n_in, n_out, fab_seed=41, rng=np.random.default_rng(seed), pulse_mode=mode)
        dw = _delta_w(chip)
        lr = 10 * dw  # need = 10 |x|max |d|max ≤ 10 < max_pulses: no probability is clipped at 1
        dW = np.empty((R, n_in, n_out))
        for r in range(R):
            chip.program(np.zeros((n_in, n_out)))
            chip.pulse_update(x, d, lr)
            dW[r] = chip.read_weights()
        results[mode] = dW
    expected = lr * x.T @ d
    # coincidence count per cell and sample: Binomial(BL, p q) (exact) or Poisson (aggregate), variance
    # ≤ its mean; the net count's variance ≤ λ = Σ_b lr |x_i d_j| / δw.  SE of the mean ΔW over R
    # repetitions ≤ δw sqrt(λ/R); states stay within ±0.05 of 0, far from the bounds ±1
    lam = lr * np.abs(x).T @ np.abs(d) / dw
    se = dw * np.sqrt(lam / R)
    for mode, dW in results.items():
        assert np.all(np.abs(dW.mean(0) - expected) <= K_SIGMA * se), mode
    diff = results["aggregate"].mean(0) - results["exact"].mean(0)
    assert np.all(np.abs(diff) <= K_SIGMA * math.sqrt(2) * se)
    # variances per cell.  aggregate: one Poisson count of mean λ, each pulse up or down with the exact
    # odds: var(net ΔW) = δw² λ.  exact: per sample, Binomial(BL_b, p q) coincidences with the balanced
    # probabilities p_i = |x_i| sqrt(k dm/xm), q_j = |d_j| sqrt(k xm/dm), k = lr/(δw BL_b) (so
    # p q = k |x_i d_j|): var(net ΔW) = δw² Σ_b BL_b p q (1 − p q), lower than Poisson.
    xm, dm = np.abs(x).max(1), np.abs(d).max(1)
    BL = np.clip(np.ceil(lr * xm * dm / dw), 1, p.update.max_pulses)
    kb = lr / (dw * BL)
    pq = kb[:, None, None] * np.abs(x)[:, :, None] * np.abs(d)[:, None, :]
    assert pq.max() <= 1.0
    var_exp = {"aggregate": dw**2 * lam, "exact": dw**2 * np.sum(BL[:, None, None] * pq * (1 - pq), axis=0)}
    assert np.all(var_exp["exact"] < 0.9 * var_exp["aggregate"])  # the two differ measurably
    for mode, dW in results.items():
        c = dW - dW.mean(0)
        v = np.mean(c**2, axis=0) * R / (R - 1)
        se = np.sqrt(np.maximum(np.mean(c**4, axis=0) - np.mean(c**2, axis=0) ** 2, 0) / R)  # SE of var
        # the aggregate kernel's Poisson sampler uses floor(λ + sqrt(λ) Z + 1/2) above λ = 40 (+1/12)
        slack = dw**2 / 12 if mode == "aggregate" else 0.0
        assert np.all(np.abs(v - var_exp[mode]) <= K_SIGMA * se + slack), mode


# --------------------------------------------------------------------------------------------------
# 9. IR drop


def _dprof(p):
    return p * (2.0 - p)


def naive_ir_weights(g, g_min_uS, g_max_uS, kappa, row_tile, col_tile):
    """Effective normalized weights (differential) of the first-order IR-drop model of kernels.py."""
    P, n_in, n_out = g.shape
    dg = g_max_uS - g_min_uS
    gmin_n = g_min_uS / dg
    Gx = (g_min_uS + g.astype(np.float64) * dg) / g_max_uS  # G/g_max
    att = np.ones_like(Gx)
    for pl in range(P):
        for i in range(n_in):
            i0 = (i // row_tile) * row_tile
            i1 = min(i0 + row_tile, n_in)
            nr = i1 - i0
            pc = (nr - (i - i0)) / nr  # distance from the sense amplifier (bottom of the tile)
            for j in range(n_out):
                j0 = (j // col_tile) * col_tile
                j1 = min(j0 + col_tile, n_out)
                ncl = j1 - j0
                pr = (j - j0 + 1) / ncl  # distance from the row driver (left edge of the tile)
                Lrow = Gx[pl, i, j0:j1].mean()
                Lcol = Gx[pl, i0:i1, j].mean()
                att[pl, i, j] = 1 - kappa / 2 * (_dprof(pr) * Lrow + _dprof(pc) * Lcol)
    Gn = gmin_n + g.astype(np.float64)
    return Gn[0] * att[0] - Gn[1] * att[1], att


def test_ir_drop_full_conductance_tile():
    """All G⁺ at g_max: loss κ/2 (d(p_r) + d(p_c)), κ at the far corner, growing with distance and κ."""
    n_in, n_out, rt, ct = 20, 15, 8, 6  # 3 × 3 tiles, the last ones partial
    att = {}
    for kappa in (0.0, 0.05, 0.2):
        p = pcm(tile={"rows": rt, "cols": ct, "ir_drop": kappa})
        chip = Crossbar(p, n_in, n_out, fab_seed=51, rng=np.random.default_rng(1101))
        chip.program(np.ones((n_in, n_out)))
        chip._rebuild()
        W = chip._W.astype(np.float64)
        W_exp, _ = naive_ir_weights(chip._g, 0.0, PCM_G_MAX, kappa, rt, ct)
        np.testing.assert_allclose(W, W_exp, rtol=0, atol=1e-6)  # float32 kernel: 1e-6 ≈ 10 ulps
        a = 1.0 - W
        att[kappa] = a
        if kappa == 0.0:
            assert np.all(W == 1.0)
            continue
        for t0 in range(0, n_in, rt):
            for c0 in range(0, n_out, ct):
                blk = a[t0:t0 + rt, c0:c0 + ct]
                # far corner of the tile (first row, last column): the full κ
                assert blk[0, -1] == pytest.approx(kappa, abs=1e-6)
                assert np.all(np.diff(blk, axis=1) > 0)  # farther from the driver: more loss
                assert np.all(np.diff(blk, axis=0) < 0)  # nearer the sense amplifier: less loss
        # forward sees the same attenuated weights (ideal converters): y = x W_eff
        y = chip.forward(np.eye(n_in)).astype(np.float64)
        np.testing.assert_allclose(y, W, rtol=0, atol=1e-6)
    # linear in κ
    np.testing.assert_allclose(att[0.2], 4 * att[0.05], rtol=1e-5, atol=1e-7)
    assert np.all(att[0.2] > att[0.05])


def test_ir_drop_random_state_and_read_noise():
    """Arbitrary states with g_min > 0: weights and read-noise variances follow the naive IR-drop model."""
    g_min_uS, kappa, rt, ct, w_max = 3.0, 0.1, 8, 6, 2.0
    p = pcm(device={"g_min_uS": g_min_uS, "read_noise": {"model": "pcm_1f"}},
            tile={"rows": rt, "cols": ct, "ir_drop": kappa})
    dg = PCM_G_MAX - g_min_uS
    n_in, n_out = 20, 15
    chip = Crossbar(p, n_in, n_out, fab_seed=52, rng=np.random.default_rng(1201), w_max=w_max)
    chip.program(np.random.default_rng(1202).uniform(-1.2, 1.2, (n_in, n_out)) * w_max)
    chip.advance(100.0)
    chip._rebuild()
    W_exp, att = naive_ir_weights(chip._g, g_min_uS, PCM_G_MAX, kappa, rt, ct)
    np.testing.assert_allclose(chip._W, W_exp, rtol=0, atol=1e-6)
    assert np.max(np.abs(W_exp - (chip._g[0] - chip._g[1]))) > 0.01  # IR drop is visible here
    # read noise: each device's current (and noise) is scaled by its attenuation
    G = g_min_uS + chip._g.astype(np.float64) * dg
    s = sigma_read_pcm_uS(G, 100.0) / dg * att
    S2_exp = s[0] ** 2 + s[1] ** 2
    # the kernel interpolates σ in a 4097-point table: relative error < 1e-4 in σ, 2e-4 in σ²; rtol 1e-3
    np.testing.assert_allclose(chip._S2, S2_exp, rtol=1e-3)


# --------------------------------------------------------------------------------------------------
# 10. ADC


def test_adc_mismatch_fixed_at_fabrication():
    gain_std, off_std = 0.05, 0.1
    p = pcm(adc={"gain_rel_std": gain_std, "offset_std": off_std})
    n_in, n_out = 4, 4000
    a = Crossbar(p, n_in, n_out, fab_seed=61, rng=np.random.default_rng(1301))
    b = Crossbar(p, n_in, n_out, fab_seed=61, rng=np.random.default_rng(1302))
    c = Crossbar(p, n_in, n_out, fab_seed=62, rng=np.random.default_rng(1301))
    gain0, off0 = a._adc_fwd.gain.copy(), a._adc_fwd.off.copy()
    np.testing.assert_array_equal(b._adc_fwd.gain, gain0)
    np.testing.assert_array_equal(b._adc_fwd.off, off0)
    r = np.corrcoef(c._adc_fwd.gain.ravel(), gain0.ravel())[0, 1]
    assert abs(r) <= K_SIGMA / math.sqrt(n_out)
    assert_moments(gain0, 1.0, gain_std, "ADC gain")
    assert_moments(off0, 0.0, off_std, "ADC offset")
    # the transfer: y = scale (gain (x W) + offset), scale = input_bound · w_max (noise management off)
    rng = np.random.default_rng(1303)
    W = rng.uniform(-1, 1, (n_in, n_out))
    x = rng.uniform(-1, 1, (3, n_in))
    a.program(W)
    a.advance(50.0)
    y = a.forward(x).astype(np.float64)
    y_exp = gain0.astype(np.float64)[0] * (x @ W) + off0.astype(np.float64)[0]
    np.testing.assert_allclose(y, y_exp, rtol=0, atol=1e-5)  # float32: |y| ≲ 5, 1e-5 ≈ 20 ulps
    # fixed for life
    np.testing.assert_array_equal(a._adc_fwd.gain, gain0)
    np.testing.assert_array_equal(a._adc_fwd.off, off0)


@pytest.mark.parametrize("bits,tile_rows", [(4, 256), (6, 256), (8, 256), (6, 16)])
def test_adc_quantization_and_clipping(bits, tile_rows):
    """Outputs are multiples of LSB = 2 out_bound/(2^b − 2) times the digital scale, each tile's column
    clipped at ±out_bound before the digital sum over row tiles."""
    bound, w_max = 5.0, 0.5
    p = pcm(adc={"bits": bits, "out_bound": bound}, dac={"noise_management": "abs_max"},
            tile={"rows": tile_rows})
    n_in, n_out, B = 32, 40, 200
    chip = Crossbar(p, n_in, n_out, fab_seed=63, rng=np.random.default_rng(1401), w_max=w_max)
    T = len(chip._row_tiles)
    rng = np.random.default_rng(1402)
    W = rng.uniform(-1, 1, (n_in, n_out)) * 0.4 * w_max
    W[:, :5] = w_max  # these columns saturate in every tile: Σ_i x_i/max|x| > out_bound
    W[:, 5:10] = -w_max
    chip.program(W)
    x = rng.uniform(0.5, 2.0, (B, n_in))
    y = chip.forward(x).astype(np.float64)
    lsb = 2 * bound / (2.0**bits - 2)
    top = round(bound / lsb)  # out_bound is a level: 2^(b−1) − 1 LSBs
    scale = np.abs(x).max(axis=1, keepdims=True) * w_max  # abs_max DAC scale × w_max
    q = y / (scale * lsb)
    # y = Σ_t float32(k_t lsb) · scale: relative error ~ a few 2^-24, |q| ≤ T·127 ⇒ |q − k| < 1e-4
    np.testing.assert_array_less(np.abs(q - np.rint(q)), 1e-4)
    k = np.rint(q)
    assert np.all(np.abs(k) <= T * top)
    xs = x / np.abs(x).max(axis=1, keepdims=True)
    k_exp = np.zeros_like(k)
    clear = np.ones(k.shape, bool)
    for a, b in chip._row_tiles:
        Zt = xs[:, a:b] @ (W[a:b] / w_max)  # analog column output of the tile
        assert np.all(Zt[:, :5] > bound + lsb) and np.all(Zt[:, 5:10] < -bound - lsb)
        v = np.clip(Zt, -bound, bound) / lsb
        k_exp += np.rint(v)
        clear &= np.abs(v - np.floor(v) - 0.5) > 1e-3  # float32 GEMM may flip a rounding near a tie
    np.testing.assert_array_equal(k[:, :5], T * top)
    np.testing.assert_array_equal(k[:, 5:10], -T * top)
    np.testing.assert_array_equal(k[clear], k_exp[clear])
    assert np.all(np.abs(k - k_exp) <= T)
    assert np.mean(clear) > 0.95
    assert len(np.unique(k[:, 10:])) > 5  # many levels are used
