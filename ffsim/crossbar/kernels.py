"""Numba kernels that turn a chip's device states into what its arrays compute.

``rebuild_caches`` derives, from the normalized conductances of every device plane, the effective
normalized weight of each cell (after IR drop) and the variance of one read, which the forward pass
feeds to BLAS.  It runs after programming, drift and refresh, and after pulse updates when the IR-drop
model is on (otherwise the pulse kernels update the touched cells in place).

First-order IR-drop model (documented in ``TileSpec.ir_drop``): within a tile, row drivers sit at the
left edge and sense amplifiers at the bottom.  A cell at relative distance p_r along its row wire from
the driver and p_c along its column wire from the sense amplifier loses the fraction

    a = κ/2 · ( d(p_r) · L_row + d(p_c) · L_col ),     d(p) = p (2 − p),

of its voltage, where L_row and L_col are the mean G/g_max of the devices on that row and column wire
of the tile (the wire's current load) and d(p) is the voltage profile of a uniformly loaded wire fed
from one end, normalized to 1 at the far end.  κ is the loss at the far corner of a tile whose devices
are all at g_max.  The cell's current (signal and read noise alike) is scaled by (1 − a).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ffsim.devices.physics import lut_eval, smin
from ffsim.dispatch import any_layout

__all__ = ["column_sums", "ir_loads", "rebuild_caches"]


@njit(inline="always", cache=True, error_model="numpy")
def _dprof(p):
    return p * (2.0 - p)


# Per-wire and per-cell bodies, shared with the GPU twins (ffsim.gpu.twin compiles them as device functions):
# operands converted explicitly, so the CUDA simulator, which runs them as Python, computes what numba does.


@njit(inline="always", cache=True, error_model="numpy")
def _row_load(g, p, i, c, col_tile, gmin_n, xscale):
    """Mean G/g_max of plane p's row wire i over column tile c."""
    j0 = c * col_tile
    j1 = smin(j0 + col_tile, g.shape[2])
    s = 0.0
    for j in range(j0, j1):
        s += gmin_n + np.float64(g[p, i, j])
    return s * xscale / (j1 - j0)


@njit(inline="always", cache=True, error_model="numpy")
def _column_load(M, t, c, row_tile, gmin_n, xscale):
    """Mean G/g_max of column c of ``M`` (a plane's devices, or the reference columns) over row tile t."""
    i0 = t * row_tile
    i1 = smin(i0 + row_tile, M.shape[0])
    s = 0.0
    for i in range(i0, i1):
        s += gmin_n + np.float64(M[i, c])
    return s * xscale / (i1 - i0)


@njit(parallel=True, cache=True, error_model="numpy")
def ir_loads(g, ref, row_tile, col_tile, gmin_n, xscale, Lrow, Lcol, Lref):
    """Mean G/g_max on each row wire (per column tile) and column wire (per row tile) of every plane."""
    P, n_in, n_out = g.shape
    C = Lrow.shape[2]
    T = Lcol.shape[2]
    for p in range(P):
        for i in prange(n_in):
            for c in range(C):
                Lrow[p, i, c] = _row_load(g, p, i, c, col_tile, gmin_n, xscale)
        for j in prange(n_out):
            for t in range(T):
                Lcol[p, j, t] = _column_load(g[p], t, j, row_tile, gmin_n, xscale)
    if Lref.shape[0] > 0:
        for t in range(T):
            for c in range(C):
                Lref[t, c] = _column_load(ref, t, c, row_tile, gmin_n, xscale)


@njit(inline="always", cache=True, error_model="numpy")
def _row_profile(i, row_tile, n_in):
    """(row tile t, the IR-drop profile factor of row i's position in it)."""
    t = i // row_tile
    i0 = t * row_tile
    nr = smin(row_tile, n_in - i0)
    return t, _dprof((nr - (i - i0)) / nr)


@njit(inline="always", cache=True, error_model="numpy")
def _cache_cell(g, wn, ref, row_tile, col_tile, span, gmin_n, xscale, lut, inv_step, t2, kir, noise_on, Lrow, Lcol,
                Lref, W, S2, i, j):
    """Effective normalized weight ``W[i, j]`` and read variance ``S2[i, j]`` of cell (i, j), IR drop included."""
    P, n_in, n_out = g.shape
    inv_span = 1.0 / span
    t, dpc = _row_profile(i, row_tile, n_in)
    c = j // col_tile
    j0 = c * col_tile
    ncl = smin(col_tile, n_out - j0)
    ga = np.float32(g[0, i, j] + wn[0, i, j])
    att_a = 1.0
    if kir > 0.0:
        att_a = 1.0 - 0.5 * kir * (_dprof((j - j0 + 1) / ncl) * Lrow[0, i, c] + dpc * Lcol[0, j, t])
    gb = np.float32(0.0)
    att_b = 1.0
    if P == 2:
        gb = np.float32(g[1, i, j] + wn[1, i, j])
        if kir > 0.0:
            att_b = 1.0 - 0.5 * kir * (_dprof((j - j0 + 1) / ncl) * Lrow[1, i, c] + dpc * Lcol[1, j, t])
    else:
        gb = ref[i, c]
        if kir > 0.0:
            att_b = 1.0 - 0.5 * kir * (Lrow[0, i, c] + dpc * Lref[t, c])
    if kir > 0.0:
        W[i, j] = ((gmin_n + np.float64(ga)) * att_a - (gmin_n + np.float64(gb)) * att_b) * inv_span
    else:
        W[i, j] = np.float64(np.float32(ga - gb)) * inv_span
    if noise_on:
        sa = lut_eval(lut, inv_step, (gmin_n + np.float64(ga)) * xscale) * att_a
        var = sa * sa
        if P == 2:
            sb = lut_eval(lut, inv_step, (gmin_n + np.float64(gb)) * xscale) * att_b
            var += sb * sb
        S2[i, j] = var * t2 * (inv_span * inv_span)


@njit(inline="always", cache=True, error_model="numpy")
def _ref_var_row(ref, row_tile, n_in, span, gmin_n, xscale, lut, inv_step, t2, kir, Lrow, Lref, S2ref, i):
    """Read variances ``S2ref[i, :]`` of row i's reference cells (one per column tile)."""
    inv_span = 1.0 / span
    t, dpc = _row_profile(i, row_tile, n_in)
    for c in range(S2ref.shape[1]):
        att_r = 1.0
        if kir > 0.0:
            att_r = 1.0 - 0.5 * kir * (Lrow[0, i, c] + dpc * Lref[t, c])
        sr = lut_eval(lut, inv_step, (gmin_n + np.float64(ref[i, c])) * xscale) * att_r
        S2ref[i, c] = sr * sr * t2 * (inv_span * inv_span)


@any_layout("wn")
@njit(parallel=True, cache=True, error_model="numpy")
def rebuild_caches(g, wn, ref, row_tile, col_tile, span, gmin_n, xscale, lut, inv_step, t2, kir, noise_on,
                   Lrow, Lcol, Lref, W, S2, S2ref, rowsum):
    """Effective normalized weights ``W``, read variances ``S2`` (and ``S2ref`` of the reference
    column), and per-row sums of normalized conductance ``rowsum`` (hidden states, for read energy)."""
    P, n_in, n_out = g.shape
    for i in prange(n_in):
        rs = 0.0
        for j in range(n_out):
            rs += np.float64(g[0, i, j])
            if P == 2:
                rs += np.float64(g[1, i, j])
            _cache_cell(g, wn, ref, row_tile, col_tile, span, gmin_n, xscale, lut, inv_step, t2, kir, noise_on,
                        Lrow, Lcol, Lref, W, S2, i, j)
        rowsum[i] = rs
        if noise_on and P == 1:
            _ref_var_row(ref, row_tile, n_in, span, gmin_n, xscale, lut, inv_step, t2, kir, Lrow, Lref, S2ref, i)


@njit(inline="always", cache=True, error_model="numpy")
def _column_total(g, j):
    """Σ over planes and rows of column j's normalized conductances (float64, planes then rows in order)."""
    s = 0.0
    for p in range(g.shape[0]):
        for i in range(g.shape[1]):
            s += np.float64(g[p, i, j])
    return s


@njit(parallel=True, cache=True, error_model="numpy")
def column_sums(g, out):
    """Σ over rows and planes of normalized conductance, per column."""
    for j in prange(g.shape[2]):
        out[j] = _column_total(g, j)
