"""The FF engine's fused per-row kernels: each numba-cuda twin against its Numba CPU kernel (simulator).

Both share the per-row bodies and the 32-lane summation order (``ffsim.ff.kernels``), so every array a
kernel writes must be equal bit for bit, for every variant (goodness kinds, peer normalization, norms,
label modes, temperatures, targets), with widths that are not multiples of the 32 lanes.
"""

from __future__ import annotations

import numpy as np
import pytest

from ffsim.backend import select_backend

CPU = select_backend("cpu").kernels
TWINS = select_backend("gpu").kernels
RNG = np.random.default_rng(7)


def _both(name, *args):
    """Run kernel ``name`` on copies of ``args`` on the CPU and as the twin; return both argument lists."""
    a = [x.copy() if isinstance(x, np.ndarray) else x for x in args]
    b = [x.copy() if isinstance(x, np.ndarray) else x for x in args]
    getattr(CPU, name)(*a)
    getattr(TWINS, name)(*b)
    for x, y in zip(a, b, strict=True):
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(y, x, err_msg=name)
    return a


@pytest.mark.parametrize("n", [5, 37, 70, 531])  # 531: the twin's batched loads (8 x 32 columns) and a remainder
@pytest.mark.parametrize(("has_bias", "relu", "rms"), [(True, True, True), (False, False, False)])
def test_act_rows(n, has_bias, relu, rms):
    Z = RNG.standard_normal((3, n)).astype(np.float32)
    b = RNG.standard_normal(n).astype(np.float32)
    _both("act_rows", Z, b, has_bias, relu, rms, np.zeros_like(Z), np.zeros(3), np.zeros_like(Z))


@pytest.mark.parametrize(("concat", "rms"), [(False, True), (True, False)])
def test_embed_rows(concat, rms):
    X = RNG.random((2, 40)).astype(np.float32)
    codes = np.array([3.0, -1.0, 9.0, 0.0])
    _both("embed_rows", X, codes, np.float32(0.7), 10, concat, rms, np.zeros((4, 50 if concat else 40), np.float32))


@pytest.mark.parametrize("n", [45, 300])
@pytest.mark.parametrize("kind", [0, 1, 2])
@pytest.mark.parametrize(("positive", "peer"), [(True, True), (True, False), (False, False)])
def test_layer_rows(kind, positive, peer, n):
    A = np.maximum(RNG.standard_normal((4, n)), 0).astype(np.float32) * 1.5
    SS = (A.astype(np.float64) ** 2).sum(axis=1)
    mean_act = RNG.random(n).astype(np.float32)
    _both("layer_rows", A, SS, kind, float(n) if kind != 2 else -float(n), 1.0, positive, peer, np.float32(0.03),
          mean_act, np.zeros_like(A), np.zeros(4), np.zeros(4))


@pytest.mark.parametrize("rows", [6, 21])  # 21: the twin's batched loads (16 rows) and a remainder
def test_column_kernels(rows):
    # magnitudes from 1e-12 to 1e12: the float64 sums round, so a different order of additions would show
    D = (RNG.standard_normal((rows, 40)) * 10.0 ** RNG.uniform(-12, 12, (rows, 40))).astype(np.float32)
    _both("peer_update", D, RNG.random(40).astype(np.float32), np.float32(0.9))
    _both("bias_step", D, RNG.standard_normal(40).astype(np.float32), RNG.standard_normal(40).astype(np.float32),
          np.float32(0.9), 3, np.float32(0.01))


@pytest.mark.parametrize(("has_targets", "inv_t"), [(False, 1.0), (True, 0.5)])
def test_head_rows(has_targets, inv_t):
    logits = (RNG.standard_normal((5, 10)) * 3).astype(np.float32)
    lab = np.array([0.0, 3.0, 9.0, 4.0, 4.0])
    targets = RNG.dirichlet(np.ones(10), 5).astype(np.float32)
    _both("head_rows", logits, lab, targets, has_targets, inv_t, 5, np.zeros((5, 10), np.float32),
          np.zeros((5, 10), np.float32), np.zeros(5), np.zeros(5))


def test_negative_rows():
    probs = RNG.dirichlet(np.ones(10) * 0.3, 6).astype(np.float32)
    probs[0] = 0.0
    probs[0, 2] = 1.0  # all mass on the true class: uniform over the others
    lab = np.array([2.0, 0.0, 9.0, 5.0, 5.0, 1.0])
    neg = _both("negative_rows", probs, lab, RNG.random(6), RNG.integers(0, 9, 6).astype(np.float64), np.zeros(6))[4]
    assert np.all(neg != lab)


def test_twins_refuse_arrays_that_are_not_float32():
    """The twins' batched loads hold float32 values: a float64 array is refused, named, not rounded."""
    D = RNG.standard_normal((6, 40))
    with pytest.raises(TypeError, match="D must be float32"):
        TWINS.bias_step(D, np.zeros(40, np.float32), np.zeros(40, np.float32), np.float32(0.9), 3, np.float32(0.01))
