"""Numba kernels of the in-situ pulsed update (stochastic pulse trains, Gokmen & Vlasov 2016).

Each row i of a tile fires a train of ``BL`` slots with probability ``p_i`` per slot, each column j with
probability ``q_j``; a coincidence at cell (i, j) is one pulse in direction sign(x_i d_j), whose effect
is the device's nonlinear, asymmetric, noisy step (:func:`ffsim.devices.physics.mean_step`), clipped at
the device's bounds.  Stuck devices do not move.

Two kernels implement it:

* :func:`pulse_exact` simulates every slot of every train, sample after sample (the reference);
* :func:`pulse_aggregate` draws, for each cell, the number of coincidences of a whole mini-batch at once:
  a Poisson number with the exact mean (two GEMMs give the expected up and down counts), each pulse up or
  down with the exact odds, in random order.  It ignores the correlation between cells that share a row
  or column train within one sample, and its count variance exceeds the exact one by
  Σ_b BL_b (p q)² (small when coincidence probabilities are small).  ``tests/test_pulse.py`` compares
  both kernels' statistics.

Device planes: ``g[P, n_in, n_out]`` holds normalized conductances; ``P = 1`` for the 'reference' mapping
and ``P = 2`` (G⁺, G⁻) for 'differential'.  ``mode`` selects how a weight pulse acts on the planes:
0 one device; 1 push-pull pair (G⁺ one way, G⁻ the other); 2 'set_only' pair (SET on G⁺ for up,
SET on G⁻ for down).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ffsim.devices.physics import P_ADD, P_INV_RANGE, P_REL, P_SMIN, P_STATE, P_WNOISE, lut_eval, mean_step
from ffsim.devices.rng import mix64, normal32_from_word, normal_at, poisson_at, uniform_at, word_at
from ffsim.dispatch import any_layout

__all__ = ["popcount64", "pulse_aggregate", "pulse_exact", "pulse_factors", "pulse_maxima", "refresh_cache_cell"]

_G2 = np.uint64(0xD6E8FEB86659FD93)


@njit(inline="always", cache=True, error_model="numpy")
def popcount64(v):
    v = np.uint64(v)
    v = v - ((v >> np.uint64(1)) & np.uint64(0x5555555555555555))
    v = (v & np.uint64(0x3333333333333333)) + ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((v * np.uint64(0x0101010101010101)) >> np.uint64(56))


_M32 = np.uint64(0xFFFFFFFF)


@njit(inline="always", cache=True, error_model="numpy")
def _step_device(prm, R, gval, d, dwu, dwd, gu, gd, gmax, key, w32):
    """One pulse on one device: returns the new normalized conductance (float64).

    ``w32`` is the 32-bit random word of this pulse's cycle-to-cycle noise.
    """
    u = prm[P_SMIN] + np.float64(gval) * R
    du = mean_step(prm, u, d, dwu, dwd, gu, gd)
    std = prm[P_REL] * abs(du) + prm[P_ADD] + prm[P_STATE] * abs(u)
    if std > 0.0:
        du += std * np.float64(normal32_from_word(w32, key))
    g = np.float64(gval) + du * prm[P_INV_RANGE]
    gm = np.float64(gmax)
    if g < 0.0:
        g = 0.0
    elif g > gm:
        g = gm
    return g


@njit(inline="always", cache=True, error_model="numpy")
def _cell_pulses(prm, R, mode, n, d, pu, g, gmax, dwu, dwd, gu, gd, stuck, i, j, ck):
    """The ``n`` weight pulses of cell (i, j), pulse k's noise from word k of stream ``ck``.  Direction ``d``
    (+1, -1) for every pulse, or, with ``d == 0``, each pulse's own: up where the word's upper half, as a
    uniform number, is below ``pu``.

    ``mode`` 0: one device; 1: push-pull pair (G⁺ one way, G⁻ the other, its noise from the word's hash);
    2: 'set_only' pair (SET on G⁺ for up, on G⁻ for down).  The cell's devices and their parameters are
    held in registers for the train and written back once (each pulse rounds the conductance to float32,
    as storing it would).  Returns (the last pulse's direction, the number of device pulses applied)."""
    a = g[0, i, j]
    a_on = stuck[0, i, j] == 0
    a_u, a_d, a_gu, a_gd, a_m = dwu[0, i, j], dwd[0, i, j], gu[0, i, j], gd[0, i, j], gmax[0, i, j]
    two = g.shape[0] == 2
    b, b_on, b_u, b_d, b_gu, b_gd, b_m = a, False, a_u, a_d, a_gu, a_gd, a_m
    if two:
        b = g[1, i, j]
        b_on = stuck[1, i, j] == 0
        b_u, b_d, b_gu, b_gd, b_m = dwu[1, i, j], dwd[1, i, j], gu[1, i, j], gd[1, i, j], gmax[1, i, j]
    dk = d
    pulses = 0
    for k in range(n):
        w = word_at(ck, np.uint64(k))
        if d == 0:
            dk = 1 if np.float64(w >> np.uint64(32)) * (1.0 / 4294967296.0) < pu else -1
        if mode == 2:
            if dk > 0:
                if a_on:
                    a = np.float32(_step_device(prm, R, a, 1, a_u, a_d, a_gu, a_gd, a_m, ck, w & _M32))
                    pulses += 1
            elif b_on:
                b = np.float32(_step_device(prm, R, b, 1, b_u, b_d, b_gu, b_gd, b_m, ck, w & _M32))
                pulses += 1
        else:
            if a_on:
                a = np.float32(_step_device(prm, R, a, dk, a_u, a_d, a_gu, a_gd, a_m, ck, w & _M32))
                pulses += 1
            if mode == 1 and b_on:
                b = np.float32(_step_device(prm, R, b, -dk, b_u, b_d, b_gu, b_gd, b_m, ck, mix64(w) & _M32))
                pulses += 1
    g[0, i, j] = a
    if two:
        g[1, i, j] = b
    return dk, pulses


@njit(inline="always", cache=True, error_model="numpy")
def _redraw_write_noise(prm, mode, d_last, stuck, wn, i, j, key, ctr):
    """Apparent-state noise redrawn on every device an update touched (aihwkit write_noise_std)."""
    s = prm[P_WNOISE]
    for p in range(wn.shape[0]):
        if stuck[p, i, j] != 0:
            continue
        if mode == 2 and ((d_last > 0 and p == 1) or (d_last < 0 and p == 0)):
            continue
        wn[p, i, j] = s * normal_at(key, np.uint64(ctr) + np.uint64(p))


@njit(inline="always", cache=True, error_model="numpy")
def refresh_cache_cell(g, wn, ref, coltile, span, gmin_n, xscale, lut, inv_step, t2, Wc, S2c, i, j):
    """Effective normalized weight and read-noise variance of cell (i, j) (no IR drop)."""
    noise = S2c.shape[0] > 0
    a = np.float32(g[0, i, j] + wn[0, i, j])
    var = 0.0
    if noise:
        sa = lut_eval(lut, inv_step, (gmin_n + np.float64(a)) * xscale)
        var = sa * sa
    b = np.float32(0.0)
    if g.shape[0] == 2:
        b = np.float32(g[1, i, j] + wn[1, i, j])
        if noise:
            sb = lut_eval(lut, inv_step, (gmin_n + np.float64(b)) * xscale)
            var += sb * sb
    else:
        b = ref[i, j // coltile]
    Wc[i, j] = np.float64(np.float32(a - b)) / span
    if noise:
        S2c[i, j] = var * t2 / (span * span)


@njit(inline="always", cache=True, error_model="numpy")
def _pulse_count(Etot, key, i, j):
    """Cell (i, j)'s number of pulses in :func:`pulse_aggregate` (its Poisson draw)."""
    lam = np.float32(Etot[i, j])
    if lam <= 0.0:
        return 0
    return poisson_at(key, np.uint64(i * Etot.shape[1] + j), lam)


@njit(inline="always", cache=True, error_model="numpy")
def _cell_done(prm, mode, d_last, n, g, stuck, wn, cache_on, Wc, S2c, ref, coltile, span, gmin_n, xscale, lut, inv_step,
               t2, i, j, ck, acc, s0):
    """After a cell's ``n`` pulses (the last of direction ``d_last``): ``acc`` plus its devices' conductances
    minus ``s0``; its write noise redrawn and its cache entries refreshed."""
    for p in range(g.shape[0]):
        acc += np.float64(g[p, i, j])
    acc -= s0
    if prm[P_WNOISE] > 0.0:
        _redraw_write_noise(prm, mode, d_last, stuck, wn, i, j, ck, np.uint64(2 * n + 1))
    if cache_on:
        refresh_cache_cell(g, wn, ref, coltile, span, gmin_n, xscale, lut, inv_step, t2, Wc, S2c, i, j)
    return acc


@njit(inline="always", cache=True, error_model="numpy")
def _pulse_train(n, Etot, Enet, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode, key, cache_on, Wc, S2c, ref,
                 coltile, span, gmin_n, xscale, lut, inv_step, t2, i, j, acc):
    """The ``n`` > 0 pulses of cell (i, j) in :func:`pulse_aggregate`, each up or down with the odds of the
    expected counts; returns (``acc`` plus the cell's conductance change, device pulses)."""
    lam = np.float32(Etot[i, j])
    c = np.uint64(i * Etot.shape[1] + j)
    ck = mix64(np.uint64(key) ^ (c * _G2 + np.uint64(0x7F4A7C159E3779B9)))
    pu = 0.5 * (1.0 + np.float64(np.float32(Enet[i, j] / lam)))
    s0 = 0.0
    for p in range(g.shape[0]):
        s0 += np.float64(g[p, i, j])
    d, pulses = _cell_pulses(prm, R, mode, n, 0, pu, g, gmax, dwu, dwd, gu, gd, stuck, i, j, ck)
    acc = _cell_done(prm, mode, d, n, g, stuck, wn, cache_on, Wc, S2c, ref, coltile, span, gmin_n, xscale, lut,
                     inv_step, t2, i, j, ck, acc, s0)
    return acc, pulses


@njit(inline="always", cache=True, error_model="numpy")
def _exact_cell(n, d, kb, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode, cache_on, Wc, S2c, ref, coltile, span,
                gmin_n, xscale, lut, inv_step, t2, i, j, acc):
    """The ``n`` > 0 coincidences of direction ``d`` at cell (i, j) of one sample in :func:`pulse_exact`
    (``kb``: the sample's key); returns (``acc`` plus the cell's conductance change, device pulses)."""
    ck = mix64(np.uint64(kb) ^ np.uint64(i * g.shape[2] + j))
    for p in range(g.shape[0]):
        acc -= np.float64(g[p, i, j])
    d, pulses = _cell_pulses(prm, R, mode, n, d, 0.0, g, gmax, dwu, dwd, gu, gd, stuck, i, j, ck)
    acc = _cell_done(prm, mode, d, n, g, stuck, wn, cache_on, Wc, S2c, ref, coltile, span, gmin_n, xscale, lut,
                     inv_step, t2, i, j, ck, acc, 0.0)
    return acc, pulses


@any_layout("gmax", "dwu", "dwd", "gu", "gd", "stuck", "wn")
@njit(parallel=True, cache=True, error_model="numpy")
def pulse_aggregate(Etot, Enet, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode, key,
                    cache_on, Wc, S2c, ref, coltile, span, gmin_n, xscale, lut, inv_step, t2, rowsum):
    """Apply a mini-batch of pulses from the expected coincidence counts of each cell.

    ``Etot[i, j]`` is the expected number of coincidences, ``Enet[i, j]`` the expected number of up
    minus down ones (n_in × n_out).  Returns the number of device pulses applied; ``rowsum`` (per-row
    Σ of normalized conductance) is kept current.
    """
    n_in, n_out = Etot.shape
    total = 0
    for i in prange(n_in):
        row_total = 0
        row_delta = 0.0
        for j in range(n_out):
            n = _pulse_count(Etot, key, i, j)
            if n == 0:
                continue
            row_delta, pulses = _pulse_train(n, Etot, Enet, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode, key,
                                             cache_on, Wc, S2c, ref, coltile, span, gmin_n, xscale, lut, inv_step, t2,
                                             i, j, row_delta)
            row_total += pulses
        rowsum[i] += row_delta
        total += row_total
    return total


# --- the update's prologue: per-case maxima (they set the trains: planned on the host, on the GPU by
# ffsim.gpu.kernels.plan_trains), then the train factors.
# The factor's body is plain Python compiled by both Numba targets (here inline, in ffsim.gpu.kernels as a
# CUDA device function): float32 arithmetic as numpy's array expressions do it, so the GPU twin equals it.
# The GPU twin of the maxima reduces each row with a block of threads (a maximum does not depend on the
# order, so it equals this one as well).


def _abs_max_py(M, b):
    """max_j |M[b, j]| as float32 (NaN if the row holds one, as numpy's max)."""
    m = np.float32(0.0)
    for j in range(M.shape[1]):
        a = abs(M[b, j])
        if a > m or a != a:
            m = a
            if a != a:
                break
    return m


def _factor_py(v, c, sq):
    """An entry's train factor ``min(|v| c, 1) · sq`` and the same times sign(v) (float32); 0 where that is
    NaN (an entry NaN or inf in a case whose trains are empty, c = 0: only on the GPU, whose updates can
    leave such cases out instead of refusing them, ``Crossbar.pulse_updates``)."""
    p = abs(v) * c
    if p > np.float32(1.0):
        p = np.float32(1.0)
    elif p != p:
        p = np.float32(0.0)
    a = p * sq
    if v > 0:
        return a, a
    if v < 0:
        return a, -a
    return a, a * np.float32(0.0)


_abs_max = njit(inline="always", cache=True, error_model="numpy")(_abs_max_py)
_factor = njit(inline="always", cache=True, error_model="numpy")(_factor_py)


@njit(parallel=True, cache=True, error_model="numpy")
def pulse_maxima(X, D, out):
    """``out[0, b] = max |X[b]|``, ``out[1, b] = max |D[b]|`` (float32): what sets sample b's trains."""
    B = X.shape[0]
    for k in prange(2 * B):
        if k < B:
            out[0, k] = _abs_max(X, k)
        else:
            out[1, k - B] = _abs_max(D, k - B)


@njit(parallel=True, cache=True, error_model="numpy")
def pulse_factors(X, D, coef, A, As, C, Cs):
    """The trains' factors for :func:`pulse_aggregate`'s GEMMs: ``A = min(|X| cx, 1) · √BL``, ``As = A ·
    sign(X)`` per row (sample) b, and the same for ``D`` with cd (``coef`` rows: cx, cd, √BL; float32)."""
    B = X.shape[0]
    for b in prange(B):
        cx, cd, sq = coef[0, b], coef[1, b], coef[2, b]
        for i in range(X.shape[1]):
            A[b, i], As[b, i] = _factor(X[b, i], cx, sq)
        for j in range(D.shape[1]):
            C[b, j], Cs[b, j] = _factor(D[b, j], cd, sq)


@njit(inline="always", cache=True, error_model="numpy")
def _train_bits(P, BL, key, b, i):
    """Sample b's train of line i: bit t set where slot t fires (probability ``P[b, i]``, ``BL[b]`` slots)."""
    p = np.float64(P[b, i])
    bits = np.uint64(0)
    if p > 0.0:
        base = np.uint64((b * P.shape[1] + i) * 64)
        for t in range(BL[b]):
            if uniform_at(key, base + np.uint64(t)) < p:
                bits |= np.uint64(1) << np.uint64(t)
    return bits


@njit(parallel=True, cache=True, error_model="numpy")
def _fill_trains(P, BL, key, out):
    B, n = P.shape
    for b in range(B):
        for i in prange(n):
            out[b, i] = _train_bits(P, BL, key, b, i)


@any_layout("gmax", "dwu", "dwd", "gu", "gd", "stuck", "wn")
@njit(parallel=True, cache=True, error_model="numpy")
def pulse_exact(Pr, Pc, Sr, Sc, BL, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode, key,
                cache_on, Wc, S2c, ref, coltile, span, gmin_n, xscale, lut, inv_step, t2, rowsum):
    """Slot-by-slot simulation: sample b's row i fires each of BL[b] slots with probability Pr[b, i] and
    sign Sr[b, i]; columns likewise (Pc, Sc).  Samples are applied one after the other.

    Returns the number of device pulses applied.
    """
    B, n_in = Pr.shape
    n_out = Pc.shape[1]
    rows = np.empty((B, n_in), dtype=np.uint64)
    cols = np.empty((B, n_out), dtype=np.uint64)
    _fill_trains(Pr, BL, key, rows)
    _fill_trains(Pc, BL, mix64(key ^ np.uint64(0x243F6A8885A308D3)), cols)
    total = 0
    for b in range(B):
        kb = mix64(key + np.uint64(b + 1) * _G2)
        for i in prange(n_in):
            ri = rows[b, i]
            if ri == 0:
                continue
            row_total = 0
            row_delta = 0.0
            for j in range(n_out):
                n = popcount64(ri & cols[b, j])
                if n == 0:
                    continue
                d = 1 if Sr[b, i] * Sc[b, j] > 0 else -1
                row_delta, pulses = _exact_cell(n, d, kb, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode,
                                                cache_on, Wc, S2c, ref, coltile, span, gmin_n, xscale, lut, inv_step,
                                                t2, i, j, row_delta)
                row_total += pulses
            rowsum[i] += row_delta
            total += row_total
    return total
