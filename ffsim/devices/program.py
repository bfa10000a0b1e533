"""Selective write-verify programming of masked cells (mixed-precision transfers): a Numba kernel.

Each selected cell's devices are written to their targets (level quantization, each device's own
maximum conductance), with the profile's state-dependent programming error; stuck devices keep their
value; reprogrammed devices draw new drift exponents.  The chip's caches of effective weights and read
variances are updated for the written cells (no IR drop), so no full rebuild is needed.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ffsim.devices.physics import smax, smin
from ffsim.devices.pulse import refresh_cache_cell
from ffsim.devices.refresh import _nu, _poly, rint
from ffsim.devices.rng import mix64, normal_at
from ffsim.dispatch import any_layout

__all__ = ["program_masked"]

_G = np.uint64(0xA0761D6478BD642F)


@njit(inline="always", cache=True, error_model="numpy")
def _write_device(t, gm, levels, prog_poly_n, gmin_n, xscale, key, ctr):
    """A device written to the normalized target ``t`` by write-verify: level quantization, its own maximum
    ``gm``, the profile's programming error; float64."""
    gm = np.float64(gm)
    t = smin(smax(np.float64(t), 0.0), 1.0)
    if levels > 0:
        t = rint(t * (levels - 1)) / (levels - 1)
    t = smin(t, gm)
    sig = smax(_poly(prog_poly_n, (gmin_n + t) * xscale), 0.0)
    if sig > 0.0:
        t = t + sig * normal_at(key, ctr)
    return smin(smax(t, 0.0), gm)


@njit(inline="always", cache=True, error_model="numpy")
def _program_cell(Wn, g, gmax, stuck, wn, wn_on, nu, drift_on, nu_prm, prog_poly_n, levels, gref0, span, gmin_n,
                  xscale, key, cache_on, Wc, S2c, ref, coltile, lut, inv_step, t2, i, j, delta):
    """Cell (i, j) of :func:`program_masked`; returns ``delta`` plus its devices' conductance changes."""
    P, n_out = g.shape[0], g.shape[2]
    ck = mix64(np.uint64(key) ^ (np.uint64(i * n_out + j) * _G))
    wv = np.float64(Wn[i, j])
    for p in range(P):
        if stuck[p, i, j] == 0:
            target = 0.0
            if P == 2:
                target = smax(wv, 0.0) if p == 0 else smax(-wv, 0.0)
            else:
                target = gref0 + wv * span
            old = np.float64(g[p, i, j])
            new = _write_device(target, gmax[p, i, j], levels, prog_poly_n, gmin_n, xscale, ck, np.uint64(2 * p))
            g[p, i, j] = new
            delta += new - old
            if wn_on:
                wn[p, i, j] = 0.0
            if drift_on:
                xt = (gmin_n + smin(smax(target, 0.0), 1.0)) * xscale
                nu[p, i, j] = _nu(nu_prm, xt, normal_at(ck, np.uint64(2 * p + 1)))
    if cache_on:
        refresh_cache_cell(g, wn, ref, coltile, span, gmin_n, xscale, lut, inv_step, t2, Wc, S2c, i, j)
    return delta


@any_layout("gmax", "stuck", "wn")
@njit(parallel=True, cache=True, error_model="numpy")
def program_masked(Wn, mask, g, gmax, stuck, wn, nu, drift_on, nu_prm, prog_poly_n, levels, gref0, span,
                   gmin_n, xscale, key, cache_on, Wc, S2c, ref, coltile, lut, inv_step, t2, rowsum, rows_touched):
    """Write the normalized weights ``Wn`` (W / w_max) into the cells where ``mask`` is set.

    Returns the number of cells written; ``rows_touched[i]`` is set for rows with a written cell.
    """
    n_in, n_out = g.shape[1], g.shape[2]
    wn_on = wn.strides[0] != 0
    total = 0
    for i in prange(n_in):
        cnt = 0
        delta = 0.0
        for j in range(n_out):
            if mask[i, j]:
                delta = _program_cell(Wn, g, gmax, stuck, wn, wn_on, nu, drift_on, nu_prm, prog_poly_n, levels, gref0,
                                      span, gmin_n, xscale, key, cache_on, Wc, S2c, ref, coltile, lut, inv_step, t2,
                                      i, j, delta)
                cnt += 1
        rowsum[i] += delta
        rows_touched[i] = cnt > 0
        total += cnt
    return total
