"""numba-cuda twins of the FF engine's fused per-row kernels (:mod:`ffsim.ff.kernels`), same signatures.

The scalar and per-row bodies are the CPU module's own Python functions, compiled here as device
functions; only the parallel loops differ:

=====================  ==========================================================================
kernel                 threads
=====================  ==========================================================================
``embed_rows``         one warp of ``LANES`` = 32 threads per row, twice: lane l first sums columns
``act_rows``           l, l + 32, … (float64) into a (rows × 32) scratch array; then every thread
``layer_rows``         combines its row's 32 sums by the CPU kernel's tree and writes its columns
                       (``layer_rows`` sums ``mean_act`` by lanes first, where peer normalization is
                       on).  No block barrier: the CUDA simulator runs barriers very slowly
``head_rows``          one thread per row
``negative_rows``      one thread per row
``peer_update``        one thread per column (rows in order)
``bias_step``          one thread per column (rows in order)
=====================  ==========================================================================

So the CUDA simulator reproduces the CPU kernels bit for bit; on a GPU, libdevice ``exp``/``log`` and FMA
contraction may change last bits (as for the crossbar twins, :mod:`ffsim.gpu.kernels`).

A 784-2000 FF step has 100-200 rows: 200 warps for the per-row kernels, 2000 threads for the per-column
ones, on a GPU of 132 multiprocessors.  With so few warps each waits out every load of its loop (these
kernels took 12-29 µs per launch on an H200, BENCHMARKS.md).  So the loops that walk a row's columns or a
column's rows load ``_U`` elements first and then use them in order: the additions are the same, in the
same order (bit-equal results), with ``_U`` loads in flight instead of the few the compiler overlaps.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from ffsim.ff import kernels as cpu
from ffsim.ff.kernels import LANES
from ffsim.gpu import kernels as _gk
from ffsim.gpu.kernels import _T1, _cupy_type, _g1
from ffsim.gpu.twin import jit_kernel

__all__ = ["act_rows", "bias_step", "embed_rows", "head_rows", "layer_rows", "negative_rows", "peer_update"]

_tree = cuda.jit(device=True)(cpu._tree_py)
_scale = cuda.jit(device=True)(cpu._scale_py)
_embedded = cuda.jit(device=True)(cpu._embedded_py)
_act = cuda.jit(device=True)(cpu._act_py)
_row_stats = cuda.jit(device=True)(cpu._row_stats_py)
_head_row = cuda.jit(device=True)(cpu._head_row_py)
_negative_row = cuda.jit(device=True)(cpu._negative_row_py)
_mean_step = cuda.jit(device=True)(cpu._mean_step_py)
_bias_apply = cuda.jit(device=True)(cpu._bias_apply_py)
_U = 8  # loads in flight per thread in the loops along a row (see the module's text)
_UC = 16  # ... and in the column sums (100-200 rows)


@cuda.jit(device=True)
def _column_sum(M, j):
    """Σ_i M[i, j] in float64, rows in order (the CPU's ``_column_sum``), loads ``_UC`` rows at a time."""
    n = M.shape[0]
    acc = 0.0
    buf = cuda.local.array(_UC, numba.float32)
    i = 0
    while i + _UC <= n:
        for k in range(_UC):
            buf[k] = M[i + k, j]
        for k in range(_UC):
            acc += np.float64(buf[k])
        i += _UC
    while i < n:
        acc += np.float64(M[i, j])
        i += 1
    return acc


@cuda.jit(device=True)
def _row_total(P, i, lanes):
    """Σ of row i's lane sums ``P[i, :lanes]`` (the other lanes hold no column: 0.0, as on the CPU),
    combined by the CPU kernels' tree on a private copy."""
    acc = cuda.local.array(LANES, dtype=numba.float64)
    for lane in range(LANES):
        acc[lane] = P[i, lane] if lane < lanes else 0.0
    return _tree(acc)


def _lanes(n_cols: int) -> int:
    """Threads per row: 32, or one per column where a row has fewer (the other lanes would sum nothing)."""
    return max(1, min(LANES, n_cols))


def _lanes_grid(n_rows: int, lanes: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(grid, block) of one thread per (lane, row): x the lane (a warp per row), y the row."""
    rows = 4
    return (1, max(1, -(-n_rows // rows))), (lanes, rows)


@jit_kernel
def _embed_lanes(X, lab, strength, n_classes, concat, P):
    lane, r = cuda.grid(2)
    if r >= P.shape[0]:
        return
    acc = 0.0
    n = X.shape[1] + n_classes if concat else X.shape[1]
    for j in range(lane, n, LANES):
        v = _embedded(X, r, j, lab, strength, n_classes, concat)
        acc += np.float64(v) * np.float64(v)
    P[r, lane] = acc


@jit_kernel
def _embed_finish(X, lab, strength, n_classes, concat, rms, lanes, P, H):
    lane, r = cuda.grid(2)
    if r >= H.shape[0]:
        return
    n = H.shape[1]
    s = _scale(_row_total(P, r, lanes), n, rms)
    for j in range(lane, n, LANES):
        H[r, j] = _embedded(X, r, j, lab, strength, n_classes, concat) * s


def embed_rows(X, lab, strength, n_classes, concat, rms, H) -> None:
    """Twin of :func:`ffsim.ff.kernels.embed_rows` (lane sums, then the rows: two launches)."""
    if not H.shape[0]:
        return
    P = _scratch(H, H.shape[0])
    lanes = _lanes(H.shape[1])
    grid, block = _lanes_grid(H.shape[0], lanes)
    args = (X, lab, np.float32(strength), int(n_classes), bool(concat))
    _gk._launch(_embed_lanes, grid, block, *args, P)
    _gk._launch(_embed_finish, grid, block, *args, bool(rms), lanes, P, H)


@jit_kernel
def _act_lanes(Z, b, has_bias, relu, A, P):
    lane, i = cuda.grid(2)
    if i >= Z.shape[0]:
        return
    n = Z.shape[1]
    acc = 0.0
    buf = cuda.local.array(_U, numba.float32)
    j = lane
    while j + (_U - 1) * LANES < n:  # _U columns of the lane at a time
        for k in range(_U):
            buf[k] = _act(Z, b, has_bias, relu, i, j + k * LANES)
        for k in range(_U):
            v = buf[k]
            A[i, j + k * LANES] = v
            acc += np.float64(v) * np.float64(v)
        j += _U * LANES
    while j < n:
        v = _act(Z, b, has_bias, relu, i, j)
        A[i, j] = v
        acc += np.float64(v) * np.float64(v)
        j += LANES
    P[i, lane] = acc


@jit_kernel
def _act_finish(A, rms, lanes, P, SS, H):
    lane, i = cuda.grid(2)
    if i >= A.shape[0]:
        return
    n = A.shape[1]
    ss = _row_total(P, i, lanes)
    if lane == 0:
        SS[i] = ss
    s = _scale(ss, n, rms)
    buf = cuda.local.array(_U, numba.float32)
    j = lane
    while j + (_U - 1) * LANES < n:
        for k in range(_U):
            buf[k] = A[i, j + k * LANES]
        for k in range(_U):
            H[i, j + k * LANES] = buf[k] * s
        j += _U * LANES
    while j < n:
        H[i, j] = A[i, j] * s
        j += LANES


def _float32(**arrays) -> None:
    """The batched loads hold float32 values: other dtypes are refused (naming the array)."""
    for name, a in arrays.items():
        if a.dtype != np.float32:
            raise TypeError(f"{name} must be float32 on the GPU backend (got {a.dtype})")


def act_rows(Z, b, has_bias, relu, rms, A, SS, H) -> None:
    """Twin of :func:`ffsim.ff.kernels.act_rows` (lane sums, then the rows: two launches)."""
    _float32(Z=Z, A=A)
    if not Z.shape[0]:
        return
    P = _scratch(Z, Z.shape[0])
    lanes = _lanes(Z.shape[1])
    grid, block = _lanes_grid(Z.shape[0], lanes)
    _gk._launch(_act_lanes, grid, block, Z, b, bool(has_bias), bool(relu), A, P)
    _gk._launch(_act_finish, grid, block, A, bool(rms), lanes, P, SS, H)


@jit_kernel
def _vector_lanes(v, P):
    lane = cuda.grid(1)
    if lane < LANES and lane < v.shape[0]:  # (the builtin min does not compile for CUDA in numba 0.68)
        acc = 0.0
        for j in range(lane, v.shape[0], LANES):
            acc += np.float64(v[j])
        P[0, lane] = acc


@jit_kernel
def _layer_rows(A, SS, kind, theta, temperature, positive, peer, peer_norm, mean_act, lanes, P, D, G_out, L_out):
    lane, i = cuda.grid(2)
    if i >= A.shape[0]:
        return
    n = A.shape[1]
    m = np.float32(0.0)
    if peer:
        m = np.float32(_row_total(P, 0, lanes) / n)
    G, loss, w = _row_stats(SS[i], n, kind, theta, temperature, positive)
    if lane == 0:
        G_out[i] = G
        L_out[i] = loss
    buf = cuda.local.array(_U, numba.float32)
    mb = cuda.local.array(_U, numba.float32)
    j = lane
    while j + (_U - 1) * LANES < n:
        for k in range(_U):
            buf[k] = A[i, j + k * LANES]
            if peer:
                mb[k] = mean_act[j + k * LANES]
        for k in range(_U):
            d = buf[k] * w
            if peer:
                d = d + peer_norm * (m - mb[k])
            D[i, j + k * LANES] = d
        j += _U * LANES
    while j < n:
        d = A[i, j] * w
        if peer:
            d = d + peer_norm * (m - mean_act[j])
        D[i, j] = d
        j += LANES


def layer_rows(A, SS, kind, theta, temperature, positive, peer, peer_norm, mean_act, D, G_out, L_out) -> None:
    """Twin of :func:`ffsim.ff.kernels.layer_rows` (with ``peer``, the lane sums of ``mean_act`` first)."""
    _float32(A=A, mean_act=mean_act)
    if not A.shape[0]:
        return
    P = _scratch(A, 1)
    lanes = _lanes(A.shape[1])
    if peer:
        _gk._launch(_vector_lanes, (1,), (lanes,), mean_act, P)
    grid, block = _lanes_grid(A.shape[0], lanes)
    _gk._launch(_layer_rows, grid, block, A, SS, int(kind), float(theta), float(temperature), bool(positive),
            bool(peer), np.float32(peer_norm), mean_act, lanes, P, D, G_out, L_out)


def _scratch(like, n_rows: int):
    """A float64 (n_rows × 32) array for the lane sums, where ``like`` lives (CuPy, or numpy)."""
    cp_array = _cupy_type()
    if cp_array and isinstance(like, cp_array):
        import cupy

        return cupy.empty((n_rows, LANES), dtype=np.float64)
    return np.empty((n_rows, LANES), dtype=np.float64)


@jit_kernel
def _peer_update(A, mean_act, decay):
    j = cuda.grid(1)
    if j < A.shape[1]:
        _mean_step(j, _column_sum(A, j), A.shape[0], mean_act, decay)


def peer_update(A, mean_act, decay) -> None:
    """Twin of :func:`ffsim.ff.kernels.peer_update`."""
    _float32(A=A)
    _gk._launch(_peer_update, _g1(A.shape[1]), (_T1,), A, mean_act, np.float32(decay))


@jit_kernel
def _bias_step(D, b, b_grad, momentum, batch, lr):
    j = cuda.grid(1)
    if j < D.shape[1]:
        _bias_apply(j, _column_sum(D, j), b, b_grad, momentum, batch, lr)


def bias_step(D, b, b_grad, momentum, batch, lr) -> None:
    """Twin of :func:`ffsim.ff.kernels.bias_step`."""
    _float32(D=D)
    _gk._launch(_bias_step, _g1(D.shape[1]), (_T1,), D, b, b_grad, np.float32(momentum), int(batch), np.float32(lr))


@jit_kernel
def _head_rows(logits, lab, targets, has_targets, inv_t, batch, P, E, wrong, nll):
    i = cuda.grid(1)
    if i < logits.shape[0]:
        _head_row(i, logits, lab, targets, has_targets, inv_t, batch, P, E, wrong, nll)


def head_rows(logits, lab, targets, has_targets, inv_t, batch, P, E, wrong, nll) -> None:
    """Twin of :func:`ffsim.ff.kernels.head_rows`."""
    _gk._launch(_head_rows, _g1(logits.shape[0]), (_T1,), logits, lab, targets, bool(has_targets), float(inv_t),
            int(batch), P, E, wrong, nll)


@jit_kernel
def _negative_rows(probs, lab, u, redraw, neg):
    i = cuda.grid(1)
    if i < probs.shape[0]:
        _negative_row(i, probs, lab, u, redraw, neg)


def negative_rows(probs, lab, u, redraw, neg) -> None:
    """Twin of :func:`ffsim.ff.kernels.negative_rows`."""
    _gk._launch(_negative_rows, _g1(probs.shape[0]), (_T1,), probs, lab, u, redraw, neg)
