"""Each Numba kernel against its naive loop reference in tests/naive.py."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from ffsim.crossbar.kernels import ir_loads, rebuild_caches
from ffsim.crossbar.periphery import adc_accumulate, dac_convert, zeros_like_view
from ffsim.devices import physics
from ffsim.devices.physics import lut_eval, read_noise_lut, read_noise_sigma_uS, update_params
from ffsim.devices.pulse import popcount64, pulse_aggregate, pulse_exact
from ffsim.devices.rng import draw_key
from ffsim.profiles import load_profile
from tests import naive


@pytest.mark.parametrize("abs_max", [True, False])
@pytest.mark.parametrize("bits", [0, 3, 8])
def test_dac_matches_naive(abs_max, bits):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((7, 13)) * 2).astype(np.float32)
    x[3] = 0.0  # an all-zero input vector
    xq = np.empty_like(x)
    xq2 = np.empty_like(x)
    scale = np.empty(7, np.float32)
    dac_convert(x, abs_max, bits, np.float32(1.5), True, xq, xq2, scale)
    ref, ref_scale = naive.dac_naive(x, abs_max, bits, 1.5)
    np.testing.assert_allclose(scale, ref_scale, rtol=0, atol=0)
    np.testing.assert_allclose(xq, ref, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(xq2, xq * xq)


def _adc_inputs(rng, T=3, B=5, N=11):
    Z = (rng.standard_normal((T, B, N)) * 4).astype(np.float32)
    ZR = (rng.standard_normal((T, B, 3)) * 0.5).astype(np.float32)
    gain = (1 + 0.1 * rng.standard_normal((T, N))).astype(np.float32)
    off = (0.2 * rng.standard_normal((T, N))).astype(np.float32)
    kappa = np.abs(0.5 + 0.3 * rng.standard_normal((T, N))).astype(np.float32)
    tk = np.tanh(kappa).astype(np.float32)
    scale = (1 + rng.random(B)).astype(np.float32)
    return Z, ZR, gain, off, kappa, tk, scale


@pytest.mark.parametrize("bits", [0, 6])
@pytest.mark.parametrize("nonlin", [False, True])
def test_adc_noiseless_matches_naive(bits, nonlin):
    rng = np.random.default_rng(2)
    Z, ZR, gain, off, kappa, tk, scale = _adc_inputs(rng)
    if not nonlin:
        kappa[:] = 0
        tk[:] = 1
    bound = 5.0
    lsb = 2 * bound / (2.0**bits - 2) if bits > 1 else 2 * bound
    out = np.empty(Z.shape[1:], np.float32)
    adc_accumulate(Z, zeros_like_view(Z.shape), ZR, gain, off, kappa, tk, 4, False, np.float32(0),
                   bits > 0, np.float32(bound), np.float32(1 / lsb), np.float32(lsb), nonlin, scale,
                   np.uint64(0), out)
    ref = naive.adc_naive_noiseless(Z, ZR, gain, off, kappa, tk, 4, bits, bound, scale)
    # float32 arithmetic in the kernel: a rounding decision can differ at exact half-LSB ties only
    np.testing.assert_allclose(out, ref, rtol=2e-5, atol=2e-5 * np.abs(ref).max())


def test_adc_noise_is_standard_normal_with_the_stated_variance():
    rng = np.random.default_rng(3)
    T, B, N = 2, 400, 250
    Z = rng.standard_normal((T, B, N)).astype(np.float32)
    V = (rng.random((T, B, N)) * 0.5).astype(np.float32)
    ZR = np.zeros((T, B, 1), np.float32)
    gain = (1 + 0.2 * rng.random((T, N))).astype(np.float32)
    off = np.zeros((T, N), np.float32)
    z0 = np.zeros((T, N), np.float32)
    one = np.ones((T, N), np.float32)
    s2 = np.float32(0.09)
    scale = np.ones(B, np.float32)
    # one tile at a time so that each element's noise can be recovered
    outs = []
    for t in range(T):
        out = np.empty((B, N), np.float32)
        adc_accumulate(Z[t:t + 1], V[t:t + 1], ZR[t:t + 1], gain[t:t + 1], off[t:t + 1], z0[t:t + 1],
                       one[t:t + 1], 10**6, True, s2, False, np.float32(1e9), np.float32(1), np.float32(1), False,
                       scale, np.uint64(99 + t), out)
        std = np.sqrt(gain[t] ** 2 * V[t] + s2)
        outs.append(((out - gain[t] * Z[t]) / std).ravel())
    n = np.concatenate(outs)
    # 200k draws: mean within 5 σ/√n, std within 5/√(2n)
    assert abs(n.mean()) < 5 / np.sqrt(n.size)
    assert abs(n.std() - 1) < 5 / np.sqrt(2 * n.size)
    from scipy import stats

    assert stats.kstest(n, "norm").pvalue > 1e-4


def test_adc_result_independent_of_thread_count():
    rng = np.random.default_rng(4)
    Z, ZR, gain, off, kappa, tk, scale = _adc_inputs(rng, T=2, B=37, N=50)
    V = np.abs(Z) * 0.1
    outs = []
    for nt in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(nt)
        out = np.empty(Z.shape[1:], np.float32)
        adc_accumulate(Z, V, ZR, gain, off, kappa * 0, tk * 0 + 1, 4, True, np.float32(0.01), True,
                       np.float32(5), np.float32(10), np.float32(0.1), False, scale, np.uint64(1234), out)
        outs.append(out)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(outs[0], outs[1])


def _planes(rng, P, n_in, n_out):
    g = rng.random((P, n_in, n_out)).astype(np.float32)
    wn = (0.01 * rng.standard_normal((P, n_in, n_out))).astype(np.float32)
    return g, wn


@pytest.mark.parametrize("P", [1, 2])
@pytest.mark.parametrize("kir", [0.0, 0.1])
def test_rebuild_caches_matches_naive(P, kir):
    prof = load_profile("pcm")
    rng = np.random.default_rng(5)
    n_in, n_out, rt, ct = 9, 10, 4, 3
    g, wn = _planes(rng, P, n_in, n_out)
    C, T = -(-n_out // ct), -(-n_in // rt)
    ref = (0.3 + 0.1 * rng.random((n_in, C))).astype(np.float32)
    gmin_n, xscale, span, t2 = 0.05, 0.9, 0.7 if P == 1 else 1.0, 3.0
    lut, inv = read_noise_lut(prof, 1.5)
    Lrow = np.zeros((P, n_in, C))
    Lcol = np.zeros((P, n_out, T))
    Lref = np.zeros((T, C) if P == 1 else (0, 0))
    if kir:
        ir_loads(g, ref, rt, ct, gmin_n, xscale, Lrow, Lcol, Lref)
    W = np.zeros((n_in, n_out), np.float32)
    S2 = np.zeros((n_in, n_out), np.float32)
    S2ref = np.zeros((n_in, C), np.float32)
    rowsum = np.zeros(n_in)
    rebuild_caches(g, wn, ref, rt, ct, span, gmin_n, xscale, lut, inv, t2, kir, True, Lrow, Lcol, Lref, W, S2,
                   S2ref, rowsum)
    # naive
    Ga = gmin_n + g[0].astype(np.float64)
    att_a = 1 - naive.ir_attenuation_naive(Ga * xscale, rt, ct, kir)
    a_app = gmin_n + g[0] + wn[0]
    if P == 2:
        Gb = gmin_n + g[1].astype(np.float64)
        att_b = 1 - naive.ir_attenuation_naive(Gb * xscale, rt, ct, kir)
        b_app = gmin_n + g[1] + wn[1]
    else:
        refcol = np.repeat(ref, ct, axis=1)[:, :n_out].astype(np.float64)
        att_b = np.ones((n_in, n_out))
        if kir:  # the reference column sits at the far end of the row wires
            for i in range(n_in):
                t = i // rt
                i0 = t * rt
                nr = min(rt, n_in - i0)
                pc = (nr - (i - i0)) / nr
                for j in range(n_out):
                    c = j // ct
                    lrow = np.mean(Ga[i, c * ct:min((c + 1) * ct, n_out)] * xscale)
                    lref = np.mean((gmin_n + ref[i0:i0 + nr, c]) * xscale)
                    att_b[i, j] = 1 - 0.5 * kir * (lrow + pc * (2 - pc) * lref)
        b_app = gmin_n + refcol
    W_ref = (a_app * att_a - b_app * att_b) / span
    np.testing.assert_allclose(W, W_ref, rtol=1e-5, atol=1e-6)
    sig_a = np.array([[naive.lut_naive(lut, inv, v * xscale) for v in row] for row in a_app])
    var = (sig_a * att_a) ** 2
    if P == 2:
        sig_b = np.array([[naive.lut_naive(lut, inv, v * xscale) for v in row] for row in b_app])
        var += (sig_b * att_b) ** 2
    np.testing.assert_allclose(S2, var * t2 / span**2, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(rowsum, g.sum(axis=(0, 2)), rtol=1e-6)


@pytest.mark.parametrize("name", ["pcm", "rram-hfo2"])
def test_read_noise_table_matches_formula(name):
    prof = load_profile(name)
    lut, inv = read_noise_lut(prof, 1.3)
    d = prof.device
    xs = np.linspace(0.0, 1.25, 2001)
    tf = physics.read_noise_time_factor(prof, 0.0)
    exact = read_noise_sigma_uS(prof, xs * d.g_max_uS, 0.0) / tf / (d.g_max_uS - d.g_min_uS)
    approx = np.array([lut_eval(lut, inv, x) for x in xs])
    rel = np.abs(approx - exact) / np.maximum(exact, 1e-30)
    # linear interpolation on 4097 points: below 5e-3 everywhere (the worst case is the segment holding
    # the kink of the PCM model's Q_s clamp, x ≈ 0.0083) and below 2e-4 away from x < 0.02
    assert np.max(rel[exact > 0]) < 5e-3
    assert np.max(rel[xs > 0.02]) < 2e-4


def test_popcount():
    rng = np.random.default_rng(6)
    for v in rng.integers(0, 2**63, size=200, dtype=np.int64):
        u = np.uint64(v) * np.uint64(3)
        assert popcount64(u) == bin(int(u)).count("1")


def _pulse_setup(model, mode, rng, n_in=3, n_out=4):
    prof = load_profile("pcm")
    changes = {"model": model, "polarity": "set_only" if mode == 2 else "bidirectional", "state_min": -1.0,
               "state_max": 1.0, "dw_min": 0.05, "up_down": 0.1, "gamma_up": 0.6, "gamma_down": 1.3,
               "exp_a": -0.5, "exp_b": -0.5, "exp_A_up": -1.2, "exp_A_down": -0.08, "step_noise_rel": 0.3,
               "step_noise_add": 0.2, "step_noise_state": 0.1, "refresh_every": 0}
    prof = prof.replace(update=changes, device={"mapping": "differential" if mode else "reference"})
    P = 1 if mode == 0 else 2
    g = (0.2 + 0.6 * rng.random((P, n_in, n_out))).astype(np.float32)
    return prof, g


@pytest.mark.parametrize("model", ["linear", "exponential", "power"])
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_pulse_exact_matches_naive(model, mode):
    rng = np.random.default_rng(7)
    prof, g = _pulse_setup(model, mode, rng)
    P, n_in, n_out = g.shape
    B = 4
    Pr = rng.random((B, n_in)).astype(np.float32)
    Pc = rng.random((B, n_out)).astype(np.float32)
    Sr = rng.choice([-1, 1], size=(B, n_in)).astype(np.int8)
    Sc = rng.choice([-1, 1], size=(B, n_out)).astype(np.int8)
    BL = rng.integers(1, 12, size=B).astype(np.int64)
    u = prof.update
    R = u.state_max - u.state_min
    prm = update_params(prof)
    full = (P, n_in, n_out)
    dwu, dwd = u.dw_min * (1 + u.up_down), u.dw_min * (1 - u.up_down)
    arr = lambda v: np.full(full, v, np.float32)  # noqa: E731
    key = np.uint64(0xABCDEF)
    g_k = g.copy()
    rowsum = g_k.sum(axis=(0, 2)).astype(np.float64)
    n = pulse_exact(Pr, Pc, Sr, Sc, BL, g_k, arr(1.0), arr(dwu), arr(dwd), arr(u.gamma_up), arr(u.gamma_down),
                    np.zeros(full, np.int8), np.zeros(full, np.float32), prm, R, mode, key, False,
                    np.zeros((n_in, n_out), np.float32), np.zeros((0, 0), np.float32), np.zeros((n_in, 2), np.float32),
                    2, 1.0, 0.0, 1.0, np.zeros(3, np.float32), 1.0, 1.0, rowsum)
    g_ref, n_ref = naive.pulse_exact_naive(Pr, Pc, Sr, Sc, BL, g, 1.0, dwu, dwd, u.gamma_up, u.gamma_down, prm, R,
                                           mode, key, model, (u.exp_a, u.exp_b, u.exp_A_up, u.exp_A_down))
    assert n == n_ref and n > 0
    np.testing.assert_allclose(g_k, g_ref, rtol=0, atol=2e-6)
    np.testing.assert_allclose(rowsum, g_k.sum(axis=(0, 2)), rtol=1e-5)


def test_pulse_aggregate_counts_are_poisson_with_the_expected_mean():
    # constant-step device far from its bounds, no noise: each pulse moves g by exactly dw/R
    prof = load_profile("pcm").replace(update={"model": "linear", "polarity": "bidirectional", "gamma_up": 0.0,
                                               "gamma_down": 0.0, "state_min": -1.0, "state_max": 1.0,
                                               "dw_min": 1e-4, "up_down": 0.0, "step_noise_rel": 0.0,
                                               "step_noise_add": 0.0, "step_noise_state": 0.0,
                                               "exp_A_up": 0.0, "exp_A_down": 0.0},
                                       device={"mapping": "reference"})
    n_in, n_out = 200, 300
    lam, net = 2.5, 0.5  # expected coincidences and up-minus-down per cell
    Etot = np.full((n_in, n_out), lam, np.float32)
    Enet = np.full((n_in, n_out), net, np.float32)
    g = np.full((1, n_in, n_out), 0.5, np.float32)
    full = g.shape
    one = np.ones(full, np.float32)
    rowsum = g.sum(axis=(0, 2)).astype(np.float64)
    R = 2.0
    n = pulse_aggregate(Etot, Enet, g, one, one * 1e-4, one * 1e-4, one * 0, one * 0, np.zeros(full, np.int8),
                        np.zeros(full, np.float32), update_params(prof), R, 0, draw_key(np.random.default_rng(8)),
                        False, np.zeros((n_in, n_out), np.float32), np.zeros((0, 0), np.float32),
                        np.zeros((n_in, 1), np.float32), n_out, 1.0, 0.0, 1.0, np.zeros(3, np.float32), 1.0, 1.0,
                        rowsum)
    cells = n_in * n_out
    # total count: Poisson(λ cells), mean within 5 sd
    assert abs(n - lam * cells) < 5 * np.sqrt(lam * cells)
    steps = (g[0] - 0.5) / (1e-4 / R)  # net number of up steps per cell
    # E[up - down] = net per cell, Var = λ (each pulse ±1, Poisson thinning)
    assert abs(steps.mean() - net) < 5 * np.sqrt(lam / cells)
    assert abs(steps.var() - lam) < 5 * lam * np.sqrt(2 / cells) + 0.05


def test_rational_tanh_matches_numpy():
    from ffsim.crossbar.periphery import tanh_rational

    xs = np.linspace(-12, 12, 20001)
    approx = np.array([tanh_rational(v) for v in xs])
    assert np.max(np.abs(approx - np.tanh(xs))) < 3e-7


def test_pulse_prologue_kernels_equal_the_array_expressions():
    """``pulse_maxima`` / ``pulse_factors`` (the fused prologue of an aggregate pulse update) give exactly what
    the array expressions they replace give: max |x| per row (NaN kept), min(|x|·c, 1)·√BL and that times
    sign(x) (float32, down to the sign of zeros)."""
    from ffsim.devices.pulse import pulse_factors, pulse_maxima

    rng = np.random.default_rng(8)
    X = rng.standard_normal((6, 11)).astype(np.float32) * 3
    D = rng.standard_normal((6, 5)).astype(np.float32)
    X[0, :3] = [0.0, -0.0, 50.0]  # zeros of both signs, and an entry clipped at p = 1
    D[1] = 0.0
    coef = np.abs(rng.standard_normal((3, 6))).astype(np.float32)
    coef[0, 2] = 0.0  # an inactive case
    m = np.empty((2, 6), np.float32)
    pulse_maxima(X, D, m)
    np.testing.assert_array_equal(m, np.stack([np.abs(X).max(axis=1), np.abs(D).max(axis=1)]))
    A, As = np.empty_like(X), np.empty_like(X)
    C, Cs = np.empty_like(D), np.empty_like(D)
    pulse_factors(X, D, coef, A, As, C, Cs)
    sq = coef[2][:, None]
    A_ref = np.minimum(np.abs(X) * coef[0][:, None], 1.0) * sq
    C_ref = np.minimum(np.abs(D) * coef[1][:, None], 1.0) * sq
    for got, ref in [(A, A_ref), (As, A_ref * np.sign(X)), (C, C_ref), (Cs, C_ref * np.sign(D))]:
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(ref))  # zeros' signs too
    assert A[0, 2] == sq[0, 0]  # clipped
    X[3, 4] = np.nan
    pulse_maxima(X, D, m)
    assert np.isnan(m[0, 3]) and np.isfinite(np.delete(m[0], 3)).all()
