"""The per-row arithmetic of an FF mini-batch, fused (Numba CPU kernels; numba-cuda twins in
:mod:`ffsim.gpu.ff_kernels`, reached through ``backend.kernels`` under the same names).

An FF step is mostly matrix products plus a little arithmetic on every row of activities: bias and ReLU,
Σy², normalization, goodness, p = σ((G − θ)/T), the loss, the local gradient, peer normalization, the
softmax head and the choice of negative labels.  As array operations that arithmetic is a few hundred
small operations per mini-batch, each a kernel launch on a GPU (BENCHMARKS.md, GPU backend); here each
group is one pass.  The formulas are those of :mod:`ffsim.ff.goodness` and :mod:`ffsim.ff.layer`, with
float64 where those use float64 and these choices where an array expression leaves them open:

* **row sums** (Σy² of a row, the mean of the running mean activities) are accumulated in float64 over
  ``LANES`` = 32 lanes: lane l adds elements l, l + 32, l + 64, … in order, and the lanes are combined by
  the tree (l += l + 16, then + 8, + 4, + 2, + 1).  The GPU twin computes lane l of every row in thread l
  of the row's warp and combines the lanes in exactly this order, so the CUDA simulator reproduces these
  kernels bit for bit;
* **column sums** over the rows of a mini-batch (peer normalization's mean activity, the bias gradient)
  are float64, in row order;
* the **softmax** accumulates exp in float64.

Label codes are float64 (exact for class indices): ``c ≥ 0`` is class c, ``−1`` the neutral label.  Every
kernel writes into arrays it is given.

The scalar and per-row bodies (``_tree``, ``_scale``, ``_embedded``, ``_act``, ``_row_stats``, ``_head_row``,
``_negative_row``, ``_mean_step``, ``_bias_apply``) are written once, as plain Python that both Numba targets
compile: here with ``njit(inline='always')``, in the twin module with ``cuda.jit(device=True)``.  Only the
loops around them (``prange`` here, threads there) differ, and the loops that sum (a column's rows, a
lane's columns), which the twins write with their loads in batches (the same additions in the same order).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["FF_KERNELS", "LANES", "act_rows", "bias_step", "embed_rows", "head_rows", "layer_rows", "negative_rows",
           "peer_update"]

LANES = 32
FF_KERNELS = ("embed_rows", "act_rows", "layer_rows", "peer_update", "bias_step", "head_rows", "negative_rows")
KIND_CODES = {"sumsq": 0, "meansq": 1, "neg_sumsq": 2}
NORM_CODES = {"rms": True, "l2": False}


_INLINE = {"inline": "always", "cache": True, "error_model": "numpy"}


def _tree_py(acc):
    """Σ of the 32 lane sums in ``acc`` (overwritten), combined in the fixed tree order."""
    s = LANES // 2
    while s >= 1:
        for lane in range(s):
            acc[lane] += acc[lane + s]
        s //= 2
    return acc[0]


def _scale_py(ss, n, rms):
    """The float32 factor that normalizes a row with Σy² = ``ss`` (``goodness.normalize``)."""
    d = math.sqrt(ss / n) if rms else math.sqrt(ss)
    return np.float32(1.0 / (d + 1e-20))


def _embedded_py(X, r, j, lab, strength, n_classes, concat):
    """Column j of embedded row r: a pixel of image ``r % len(X)`` or the label vector's entry."""
    n_pix = X.shape[1]
    c = lab[r]
    k = j
    if concat:
        if j < n_pix:
            return np.float32(X[r % X.shape[0], j])
        k = j - n_pix
    elif j >= n_classes:
        return np.float32(X[r % X.shape[0], j])
    if c < 0:
        return np.float32(strength * np.float32(1.0 / n_classes))
    if k == int(c):
        return np.float32(strength)
    return np.float32(0.0)


def _act_py(Z, b, has_bias, relu, i, j):
    """max(Z[i, j] + b[j], 0) in float32 (as ``z += b; maximum(z, 0)``; NaN stays NaN)."""
    v = Z[i, j]
    if has_bias:
        v = v + b[j]
    if relu and v < 0:
        v = np.float32(0.0)
    return v


def _row_stats_py(ss, n, kind, theta, temperature, positive):
    """(G, loss, w) of one case: goodness, −log p or −log(1 − p) (stable softplus), and the float32 factor
    of y in dC/dz (1 − p or −p, sign flipped for neg_sumsq)."""
    if kind == 1:
        G = ss / n
    elif kind == 2:
        G = -ss
    else:
        G = ss
    z = (G - theta) / temperature
    if z >= 0:
        p = 1.0 / (1.0 + math.exp(-z))
    else:
        e = math.exp(z)
        p = e / (1.0 + e)
    x = -z if positive else z
    loss = (x if x > 0.0 else 0.0) + math.log1p(math.exp(-math.fabs(x)))
    w = (1.0 - p) if positive else -p
    if kind == 2:
        w = -w
    return G, loss, np.float32(w)


def _head_row_py(i, logits, lab, targets, has_targets, inv_t, batch, P, E, wrong, nll):
    """One case of :func:`head_rows`."""
    C = logits.shape[1]
    c_true = int(lab[i])
    mx = logits[i, 0]
    for c in range(1, C):
        if logits[i, c] > mx:
            mx = logits[i, c]
    tot = 0.0
    for c in range(C):
        tot += math.exp(np.float64(logits[i, c] - mx))
    best = 0
    p_best = np.float32(-1.0)
    for c in range(C):
        p = np.float32(math.exp(np.float64(logits[i, c] - mx)) / tot)
        P[i, c] = p
        if p > p_best:
            best = c
            p_best = p
    wrong[i] = 1.0 if best != c_true else 0.0
    nll[i] = -math.log(np.float64(P[i, c_true]) + 1e-30)
    tot_t = 0.0
    for c in range(C):
        tot_t += math.exp(np.float64(logits[i, c] - mx) * inv_t)
    for c in range(C):
        q = math.exp(np.float64(logits[i, c] - mx) * inv_t) / tot_t
        t = 0.0
        if has_targets:
            t = np.float64(targets[i, c])
        elif c == c_true:
            t = 1.0
        E[i, c] = np.float32((t - q) / batch)


def _negative_row_py(i, probs, lab, u, redraw, neg):
    """One case of :func:`negative_rows`."""
    C = probs.shape[1]
    c_true = int(lab[i])
    tot = 0.0
    for c in range(C):
        if c != c_true:
            tot += np.float64(probs[i, c])
    flat = not tot > 1e-300
    last = 0.0
    for c in range(C):
        if c != c_true:
            last += (1.0 / (C - 1)) if flat else np.float64(probs[i, c]) / tot
    x = u[i] * last
    cdf = 0.0
    k = 0
    for c in range(C):
        if c != c_true:
            cdf += (1.0 / (C - 1)) if flat else np.float64(probs[i, c]) / tot
        if x >= cdf:
            k += 1
    if k > C - 1:
        k = C - 1
    if k == c_true:
        k = (c_true + 1 + int(redraw[i])) % C
    neg[i] = k


def _column_sum_py(M, j):
    """Σ_i M[i, j] in float64, rows in order."""
    acc = 0.0
    for i in range(M.shape[0]):
        acc += np.float64(M[i, j])
    return acc


def _mean_step_py(j, acc, n, mean_act, decay):
    """Column j of :func:`peer_update`, its rows' sum ``acc`` (of ``n`` rows) given."""
    keep = np.float32(1.0) - decay
    mean_act[j] = mean_act[j] * decay + keep * np.float32(acc / n)


def _bias_apply_py(j, acc, b, b_grad, momentum, batch, lr):
    """Column j of :func:`bias_step`, its rows' sum ``acc`` given."""
    keep = np.float32(1.0) - momentum
    b_grad[j] = momentum * b_grad[j] + keep * np.float32(acc / batch)
    b[j] = b[j] + lr * b_grad[j]


_tree = njit(**_INLINE)(_tree_py)
_scale = njit(**_INLINE)(_scale_py)
_embedded = njit(**_INLINE)(_embedded_py)
_act = njit(**_INLINE)(_act_py)
_row_stats = njit(**_INLINE)(_row_stats_py)
_head_row = njit(**_INLINE)(_head_row_py)
_negative_row = njit(**_INLINE)(_negative_row_py)
_column_sum = njit(**_INLINE)(_column_sum_py)
_mean_step = njit(**_INLINE)(_mean_step_py)
_bias_apply = njit(**_INLINE)(_bias_apply_py)


@njit(parallel=True, cache=True, error_model="numpy")
def embed_rows(X, lab, strength, n_classes, concat, rms, H):
    """Embed label ``lab[r]`` in image ``X[r % len(X)]`` and normalize: ``H[r]`` (float32).

    ``concat``: the label vector follows the pixels; else it overwrites the first ``n_classes`` pixels.
    ``strength`` (float32) scales the label vector; ``rms`` (else L2) picks the normalization."""
    n = H.shape[1]
    for r in prange(H.shape[0]):
        acc = np.zeros(LANES)
        for j in range(n):
            v = _embedded(X, r, j, lab, strength, n_classes, concat)
            acc[j % LANES] += np.float64(v) * np.float64(v)
        s = _scale(_tree(acc), n, rms)
        for j in range(n):
            H[r, j] = _embedded(X, r, j, lab, strength, n_classes, concat) * s


@njit(parallel=True, cache=True, error_model="numpy")
def act_rows(Z, b, has_bias, relu, rms, A, SS, H):
    """Activities, their Σy² and the normalized rows in one pass over the measured outputs ``Z``.

    ``A = max(Z + b, 0)`` (float32; without ``b`` if not ``has_bias``, without the max if not ``relu``;
    ``A`` may be ``Z``), ``SS[i] = Σ_j A[i, j]²`` (float64), ``H[i] = A[i] / rms(A[i])`` (or L2 length)."""
    n = Z.shape[1]
    for i in prange(Z.shape[0]):
        acc = np.zeros(LANES)
        for j in range(n):
            v = _act(Z, b, has_bias, relu, i, j)
            A[i, j] = v
            acc[j % LANES] += np.float64(v) * np.float64(v)
        ss = _tree(acc)
        SS[i] = ss
        s = _scale(ss, n, rms)
        for j in range(n):
            H[i, j] = A[i, j] * s


@njit(parallel=True, cache=True, error_model="numpy")
def layer_rows(A, SS, kind, theta, temperature, positive, peer, peer_norm, mean_act, D, G_out, L_out):
    """Goodness, loss and local gradient of every case (``goodness``/``layer`` formulas, Hinton's scaling).

    ``kind``: 0 sumsq, 1 meansq, 2 neg_sumsq; ``SS``: Σy² of the rows of ``A``.  ``D[i] = w_i A[i]``
    with w = 1 − p (positive) or −p (negative), sign flipped for neg_sumsq; with ``peer`` (positive
    cases) ``peer_norm · (mean(mean_act) − mean_act)`` is added (float32).  ``G_out[i]``, ``L_out[i]``:
    goodness and loss (float64)."""
    n = A.shape[1]
    m = np.float32(0.0)
    if peer:
        acc = np.zeros(LANES)
        for j in range(n):
            acc[j % LANES] += np.float64(mean_act[j])
        m = np.float32(_tree(acc) / n)
    for i in prange(A.shape[0]):
        G, loss, w = _row_stats(SS[i], n, kind, theta, temperature, positive)
        G_out[i] = G
        L_out[i] = loss
        for j in range(n):
            d = A[i, j] * w
            if peer:
                d = d + peer_norm * (m - mean_act[j])
            D[i, j] = d


@njit(parallel=True, cache=True, error_model="numpy")
def peer_update(A, mean_act, decay):
    """``mean_act ← decay · mean_act + (1 − decay) · mean over the rows of A`` (float32 state; the column
    means in float64, rows in order)."""
    for j in prange(A.shape[1]):
        _mean_step(j, _column_sum(A, j), A.shape[0], mean_act, decay)


@njit(parallel=True, cache=True, error_model="numpy")
def bias_step(D, b, b_grad, momentum, batch, lr):
    """The digital bias's smoothed step: ``b_grad ← m b_grad + (1 − m) Σ_i D[i] / batch``; ``b ← b + lr b_grad``
    (float32 state; the column sums in float64, rows in order)."""
    for j in prange(D.shape[1]):
        _bias_apply(j, _column_sum(D, j), b, b_grad, momentum, batch, lr)


@njit(parallel=True, cache=True, error_model="numpy")
def head_rows(logits, lab, targets, has_targets, inv_t, batch, P, E, wrong, nll):
    """The softmax head's per-case arithmetic.

    ``P[i]``: softmax of ``logits[i]`` (float32, exp summed in float64); ``E[i] = (t_i − softmax(logits[i] ·
    inv_t)) / batch`` (float32), the head's error signal, with targets ``t_i`` = ``targets[i]`` if
    ``has_targets`` else the one-hot of ``lab[i]``; ``wrong[i]`` = 1.0 where the most probable class (the
    first, on ties) is not ``lab[i]``; ``nll[i] = −log(P[i, lab[i]] + 1e-30)``."""
    for i in prange(logits.shape[0]):
        _head_row(i, logits, lab, targets, has_targets, inv_t, batch, P, E, wrong, nll)


@njit(parallel=True, cache=True, error_model="numpy")
def negative_rows(probs, lab, u, redraw, neg):
    """One wrong label per case, drawn by inverse CDF from ``probs[i]`` with the true class ``lab[i]``
    removed (renormalized in float64; uniform over the wrong classes where nothing is left).

    ``u[i]``: a uniform draw in [0, 1); ``redraw[i]``: an integer draw in [0, C − 1), used only where
    rounding lands on the true class.  ``neg[i]``: the label (float64 code)."""
    for i in prange(probs.shape[0]):
        _negative_row(i, probs, lab, u, redraw, neg)
