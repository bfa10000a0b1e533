"""Refresh of 'set_only' device pairs (PCM): a Numba kernel.

A SET-only pair can only grow: every down-step of its weight is an up-step of the partner device.
When either device passes the refresh threshold (a fraction of its range), the periphery reads the
pair's weight (two verify reads with read noise), RESETs both devices (abrupt RESET, to a state with
cycle-to-cycle spread) and writes the weight back onto one of them by write-verify (programming noise
of the profile, level quantization), as aihwkit's ``OneSidedUnitCell`` does.  Reprogrammed devices draw
new drift exponents.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ffsim.devices.physics import lut_eval, smax, smin
from ffsim.devices.pulse import refresh_cache_cell
from ffsim.devices.rng import mix64, normal_at
from ffsim.dispatch import any_layout

__all__ = ["refresh_pairs"]

_G = np.uint64(0x9E3779B97F4A7C15)


rint = np.rint  # (the GPU twins bind a libdevice rint here, ffsim.gpu.twin)


@njit(inline="always", cache=True, error_model="numpy")
def _poly(c, x):
    out = 0.0
    for k in range(c.shape[0] - 1, -1, -1):
        out = out * x + np.float64(c[k])
    return out


@njit(inline="always", cache=True, error_model="numpy")
def _nu(nu_prm, x, n):
    lx = math.log(smax(np.float64(x), 1e-12))
    m = smin(smax(nu_prm[0] * lx + nu_prm[1], nu_prm[2]), nu_prm[3])
    s = smin(smax(nu_prm[4] * lx + nu_prm[5], nu_prm[6]), nu_prm[7])
    return smax(np.float64(m + s * n), 0.0)


@njit(inline="always", cache=True, error_model="numpy")
def _refresh_cell(g, wn, wn_on, gmax, stuck, nu, drift_on, nu_prm, prog_poly_n, levels, thr, reset_n, reset_std_n,
                  gmin_n, xscale, lut, inv_step, t_factor, key, cache_on, Wc, S2c, ref, coltile, span, t2, i, j):
    """Pair (i, j) of :func:`refresh_pairs`; returns (the pair's conductance change, 1 if refreshed else 0)."""
    n_out = g.shape[2]
    if stuck[0, i, j] != 0 or stuck[1, i, j] != 0:
        return 0.0, 0
    g0 = g[0, i, j]
    g1 = g[1, i, j]
    if g0 <= thr and g1 <= thr:
        return 0.0, 0
    k = mix64(np.uint64(key) ^ (np.uint64(i * n_out + j) * _G))
    # verify reads of both devices
    wa = np.float32(g[0, i, j] + wn[0, i, j])
    wb = np.float32(g[1, i, j] + wn[1, i, j])
    sa = lut_eval(lut, inv_step, (gmin_n + np.float64(wa)) * xscale) * t_factor
    sb = lut_eval(lut, inv_step, (gmin_n + np.float64(wb)) * xscale) * t_factor
    w = (np.float64(wa) + sa * normal_at(k, np.uint64(0))) - (np.float64(wb) + sb * normal_at(k, np.uint64(1)))
    # RESET both
    ra = smin(smax(reset_n + reset_std_n * normal_at(k, np.uint64(2)), 0.0), np.float64(gmax[0, i, j]))
    rb = smin(smax(reset_n + reset_std_n * normal_at(k, np.uint64(3)), 0.0), np.float64(gmax[1, i, j]))
    # write |w| on top of the RESET state of the device of its sign
    p = 0 if w > 0 else 1
    base = ra if p == 0 else rb
    t = base + abs(w)
    if levels > 0:
        t = rint(t * (levels - 1)) / (levels - 1)
    gm = np.float64(gmax[p, i, j])
    t = smin(smax(t, 0.0), gm)
    sig = smax(_poly(prog_poly_n, (gmin_n + t) * xscale), 0.0)
    new = smin(smax(t + sig * normal_at(k, np.uint64(4)), 0.0), gm)
    if p == 0:
        ra = new
    else:
        rb = new
    g[0, i, j] = ra
    g[1, i, j] = rb
    if wn_on:
        wn[0, i, j] = 0.0
        wn[1, i, j] = 0.0
    if drift_on:
        nu[0, i, j] = _nu(nu_prm, (gmin_n + (t if p == 0 else ra)) * xscale, normal_at(k, np.uint64(5)))
        nu[1, i, j] = _nu(nu_prm, (gmin_n + (t if p == 1 else rb)) * xscale, normal_at(k, np.uint64(6)))
    if cache_on:
        refresh_cache_cell(g, wn, ref, coltile, span, gmin_n, xscale, lut, inv_step, t2, Wc, S2c, i, j)
    return (ra + rb) - np.float64(np.float32(g0 + g1)), 1


@any_layout("wn", "gmax", "stuck")
@njit(parallel=True, cache=True, error_model="numpy")
def refresh_pairs(g, wn, gmax, stuck, nu, drift_on, nu_prm, prog_poly_n, levels, thr, reset_n, reset_std_n,
                  gmin_n, xscale, lut, inv_step, t_factor, key, cache_on, Wc, S2c, ref, coltile, span, t2, rowsum):
    """Refresh every pair (i, j) of planes ``g[0]``, ``g[1]`` where a device exceeds ``thr``.

    ``prog_poly_n``: programming-noise polynomial in x = G/g_max, in units of g_max − g_min;
    ``nu_prm``: drift-exponent parameters (mean: ln-coefficient, offset, min, max; std: the same).
    Returns the number of pairs refreshed.
    """
    n_in, n_out = g.shape[1], g.shape[2]
    wn_on = wn.shape[0] == 2 and wn.strides[0] != 0
    total = 0
    for i in prange(n_in):
        cnt = 0
        delta = 0.0
        for j in range(n_out):
            d, n = _refresh_cell(g, wn, wn_on, gmax, stuck, nu, drift_on, nu_prm, prog_poly_n, levels, thr, reset_n,
                                 reset_std_n, gmin_n, xscale, lut, inv_step, t_factor, key, cache_on, Wc, S2c, ref,
                                 coltile, span, t2, i, j)
            delta += d
            cnt += n
        rowsum[i] += delta
        total += cnt
    return total
