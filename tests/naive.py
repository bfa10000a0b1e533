"""Deliberately slow loop implementations of the kernels' maths, to compare the kernels against.

They use the same counter-based random numbers as the kernels (``ffsim.devices.rng``), so stochastic
kernels can be compared exactly, element by element.
"""

from __future__ import annotations

import math

import numpy as np

from ffsim.devices.physics import P_ADD, P_REL, P_SMIN, P_STATE, lut_eval
from ffsim.devices.rng import mix64, normal32_from_word, uniform_at, word_at


def dac_naive(x, abs_max, bits, bound):
    B, n = x.shape
    xq = np.zeros((B, n), np.float32)
    scale = np.zeros(B, np.float32)
    lev = 2.0 ** (bits - 1) - 1 if bits > 0 else 0.0
    for b in range(B):
        s = float(bound)
        if abs_max:
            m = max(abs(float(v)) for v in x[b])
            s = m if m > 0 else 1.0
        scale[b] = s
        for i in range(n):
            v = float(np.float32(x[b, i]) / np.float32(s))
            if bits > 0:
                v = min(max(v, -1.0), 1.0)
                v = round(v * lev) / lev  # Python round: half to even, like np.rint
            xq[b, i] = v
    return xq, scale


def adc_naive_noiseless(Z, ZR, gain, off, kappa, tanh_kappa, coltile, bits, bound, scale):
    """ADC without noise: gain, offset, compression, clipping, rounding; accumulated over tiles."""
    T, B, N = Z.shape
    out = np.zeros((B, N), np.float64)
    lsb = 2.0 * bound / (2.0**bits - 2.0) if bits > 1 else 2.0 * bound
    for t in range(T):
        for b in range(B):
            for j in range(N):
                y = float(gain[t, j]) * (float(Z[t, b, j]) - float(ZR[t, b, j // coltile])) + float(off[t, j])
                if kappa[t, j] > 0:
                    y = bound * math.tanh(kappa[t, j] * y / bound) / tanh_kappa[t, j]
                if bits > 0:
                    y = min(max(y, -bound), bound)
                    y = round(y / lsb) * lsb
                out[b, j] += y * scale[b]
    return out


def ir_attenuation_naive(G_over_gmax, row_tile, col_tile, kappa):
    """Attenuation a[i, j] of one device plane (G/g_max given per cell), per the model in kernels.py."""
    n_in, n_out = G_over_gmax.shape
    a = np.zeros((n_in, n_out))
    for i in range(n_in):
        t = i // row_tile
        i0 = t * row_tile
        nr = min(row_tile, n_in - i0)
        for j in range(n_out):
            c = j // col_tile
            j0 = c * col_tile
            nc = min(col_tile, n_out - j0)
            lrow = np.mean(G_over_gmax[i, j0:j0 + nc])
            lcol = np.mean(G_over_gmax[i0:i0 + nr, j])
            pr = (j - j0 + 1) / nc
            pc = (nr - (i - i0)) / nr
            a[i, j] = 0.5 * kappa * (pr * (2 - pr) * lrow + pc * (2 - pc) * lcol)
    return a


def mean_step_naive(model, u, d, dw_up, dw_dn, g_up, g_dn, smin, smax, a=0.0, b=0.0, A_up=0.0, A_dn=0.0):
    """The update models of UpdateSpec's docstring, written out."""
    if model == "linear":
        f = (1 - g_up * u / smax if smax else 1.0) if d > 0 else (1 - g_dn * u / smin if smin else 1.0)
    elif model == "exponential":
        z = 2 * a * u / (smax - smin) + b
        f = 1 - A_up * math.exp(g_up * z) if d > 0 else 1 - A_dn * math.exp(-g_dn * z)
    elif model == "power":
        w = min(max((smax - u) / (smax - smin), 0.0), 1.0)
        f = w**g_up if d > 0 else (1 - w) ** g_dn
    else:
        f = 1.0
    f = max(f, 0.0)
    return dw_up * f if d > 0 else -dw_dn * f


def step_device_naive(prm, R, model, g, d, dwu, dwd, gu, gd, gmax, key, w32, exp_params):
    u = prm[P_SMIN] + g * R
    du = mean_step_naive(model, u, d, dwu, dwd, gu, gd, prm[P_SMIN], prm[P_SMIN] + R, *exp_params)
    std = prm[P_REL] * abs(du) + prm[P_ADD] + prm[P_STATE] * abs(u)
    if std > 0:
        du += std * float(normal32_from_word(np.uint64(w32), np.uint64(key)))
    return min(max(float(g) + du / R, 0.0), gmax)


def pulse_exact_naive(Pr, Pc, Sr, Sc, BL, g, gmax, dwu, dwd, gu, gd, prm, R, mode, key, model, exp_params):
    """Slot-by-slot pulse trains, sample by sample, with the kernel's counters (no stuck devices, no
    write noise).  Returns (new g, device pulses)."""
    g = g.astype(np.float32).copy()  # devices are stored in float32, as in the kernel
    B, n_in = Pr.shape
    n_out = Pc.shape[1]

    def trains(P, k):
        out = np.zeros(P.shape, dtype=np.uint64)
        for b in range(P.shape[0]):
            for i in range(P.shape[1]):
                bits = 0
                if P[b, i] > 0:
                    base = (b * P.shape[1] + i) * 64
                    for t in range(BL[b]):
                        if uniform_at(np.uint64(k), np.uint64(base + t)) < P[b, i]:
                            bits |= 1 << t
                out[b, i] = bits
        return out

    key = np.uint64(key)
    rows = trains(Pr, key)
    cols = trains(Pc, np.uint64(mix64(key ^ np.uint64(0x243F6A8885A308D3))))
    total = 0
    G2 = np.uint64(0xD6E8FEB86659FD93)
    for b in range(B):
        kb = np.uint64(mix64(key + np.uint64(b + 1) * G2))
        for i in range(n_in):
            for j in range(n_out):
                n = bin(int(rows[b, i]) & int(cols[b, j])).count("1")
                if n == 0:
                    continue
                d = 1 if Sr[b, i] * Sc[b, j] > 0 else -1
                ck = np.uint64(mix64(kb ^ np.uint64(i * n_out + j)))
                for k in range(n):
                    w = np.uint64(word_at(ck, np.uint64(k)))
                    lo = w & np.uint64(0xFFFFFFFF)
                    if mode == 0:
                        g[0, i, j] = step_device_naive(prm, R, model, g[0, i, j], d, dwu, dwd, gu, gd, gmax, ck, lo,
                                                       exp_params)
                        total += 1
                    elif mode == 1:
                        g[0, i, j] = step_device_naive(prm, R, model, g[0, i, j], d, dwu, dwd, gu, gd, gmax, ck, lo,
                                                       exp_params)
                        lo2 = np.uint64(mix64(w)) & np.uint64(0xFFFFFFFF)
                        g[1, i, j] = step_device_naive(prm, R, model, g[1, i, j], -d, dwu, dwd, gu, gd, gmax, ck, lo2,
                                                       exp_params)
                        total += 2
                    else:
                        p = 0 if d > 0 else 1
                        g[p, i, j] = step_device_naive(prm, R, model, g[p, i, j], 1, dwu, dwd, gu, gd, gmax, ck, lo,
                                                       exp_params)
                        total += 1
    return g, total


def lut_naive(table, inv_step, x):
    return float(lut_eval(table, inv_step, x))
