"""Refresh of 'set_only' device pairs (PCM): a Numba kernel.

A SET-only pair can only grow: every down-step of its weight is an up-step of the partner device.
When either device passes the refresh threshold (a fraction of its range), the periphery reads the
pair's weight (two verify reads with read noise), RESETs both devices (abrupt RESET, to a state with
cycle-to-cycle spread) and writes the weight back onto one of them by write-verify (programming noise
of the profile, level quantization), as aihwkit's ``OneSidedUnitCell`` does.  Reprogrammed devices draw
new drift exponents.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ffsim.devices.physics import lut_eval
from ffsim.devices.pulse import refresh_cache_cell
from ffsim.devices.rng import mix64, normal_at

__all__ = ["refresh_pairs"]

_G = np.uint64(0x9E3779B97F4A7C15)


@njit(inline="always", cache=True, error_model="numpy")
def _poly(c, x):
    out = 0.0
    for k in range(c.shape[0] - 1, -1, -1):
        out = out * x + c[k]
    return out


@njit(inline="always", cache=True, error_model="numpy")
def _nu(nu_prm, x, n):
    lx = np.log(max(x, 1e-12))
    m = min(max(nu_prm[0] * lx + nu_prm[1], nu_prm[2]), nu_prm[3])
    s = min(max(nu_prm[4] * lx + nu_prm[5], nu_prm[6]), nu_prm[7])
    return max(m + s * n, 0.0)


@njit(parallel=True, cache=True, error_model="numpy")
def refresh_pairs(g, wn, gmax, stuck, nu, drift_on, nu_prm, prog_poly_n, levels, thr, reset_n, reset_std_n,
                  gmin_n, xscale, lut, inv_step, t_factor, key, cache_on, Wc, S2c, ref, coltile, span, t2, rowsum):
    """Refresh every pair (i, j) of planes ``g[0]``, ``g[1]`` where a device exceeds ``thr``.

    ``prog_poly_n``: programming-noise polynomial in x = G/g_max, in units of g_max − g_min;
    ``nu_prm``: drift-exponent parameters (mean: ln-coefficient, offset, min, max; std: the same).
    Returns the number of pairs refreshed.
    """
    n_in, n_out = g.shape[1], g.shape[2]
    total = 0
    for i in prange(n_in):
        cnt = 0
        delta = 0.0
        for j in range(n_out):
            if stuck[0, i, j] != 0 or stuck[1, i, j] != 0:
                continue
            a = g[0, i, j]
            b = g[1, i, j]
            if a <= thr and b <= thr:
                continue
            k = mix64(key ^ (np.uint64(i * n_out + j) * _G))
            # verify reads of both devices
            wa = a + wn[0, i, j]
            wb = b + wn[1, i, j]
            sa = lut_eval(lut, inv_step, (gmin_n + wa) * xscale) * t_factor
            sb = lut_eval(lut, inv_step, (gmin_n + wb) * xscale) * t_factor
            w = (wa + sa * normal_at(k, np.uint64(0))) - (wb + sb * normal_at(k, np.uint64(1)))
            # RESET both
            ra = min(max(reset_n + reset_std_n * normal_at(k, np.uint64(2)), 0.0), gmax[0, i, j])
            rb = min(max(reset_n + reset_std_n * normal_at(k, np.uint64(3)), 0.0), gmax[1, i, j])
            # write |w| on top of the RESET state of the device of its sign
            p = 0 if w > 0 else 1
            base = ra if p == 0 else rb
            t = base + abs(w)
            if levels > 0:
                t = np.rint(t * (levels - 1)) / (levels - 1)
            gm = gmax[p, i, j]
            t = min(max(t, 0.0), gm)
            sig = max(_poly(prog_poly_n, (gmin_n + t) * xscale), 0.0)
            new = min(max(t + sig * normal_at(k, np.uint64(4)), 0.0), gm)
            if p == 0:
                ra = new
            else:
                rb = new
            delta += (ra + rb) - (a + b)
            g[0, i, j] = ra
            g[1, i, j] = rb
            if wn.shape[0] == 2 and wn.strides[0] != 0:
                wn[0, i, j] = 0.0
                wn[1, i, j] = 0.0
            if drift_on:
                nu[0, i, j] = _nu(nu_prm, (gmin_n + (t if p == 0 else ra)) * xscale, normal_at(k, np.uint64(5)))
                nu[1, i, j] = _nu(nu_prm, (gmin_n + (t if p == 1 else rb)) * xscale, normal_at(k, np.uint64(6)))
            if cache_on:
                refresh_cache_cell(g, wn, ref, coltile, span, gmin_n, xscale, lut, inv_step, t2, Wc, S2c, i, j)
            cnt += 1
        rowsum[i] += delta
        total += cnt
    return total
