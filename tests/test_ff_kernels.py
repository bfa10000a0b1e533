"""The FF engine's fused per-row kernels (``ffsim.ff.kernels``) against the array formulas they fuse.

Each kernel must give what ``ffsim.ff.goodness`` / the textbook expressions give, to the rounding of the
stated summation order (float64 sums: 1e-12 relative; float32 outputs: 1 ulp-scale tolerances), and the
lane order of the row sums must be exactly the documented one (what the GPU twin reproduces).
"""

from __future__ import annotations

import numpy as np
import pytest

from ffsim.ff import kernels as K
from ffsim.ff.goodness import goodness_grad, log_sigmoid_loss, normalize, sigmoid

RNG = np.random.default_rng(11)


def _lane_sum(v):
    """The documented order: lane l sums v[l], v[l + 32], … in order; lanes combined by the tree."""
    acc = np.zeros(K.LANES)
    for j, x in enumerate(np.asarray(v, dtype=np.float64)):
        acc[j % K.LANES] += x
    s = K.LANES // 2
    while s >= 1:
        acc[:s] = acc[:s] + acc[s:2 * s]
        s //= 2
    return acc[0]


@pytest.mark.parametrize("rms", [True, False])
def test_act_rows_bias_relu_sumsq_and_normalization(rms):
    Z = RNG.standard_normal((5, 77)).astype(np.float32)
    b = RNG.standard_normal(77).astype(np.float32)
    A, SS, H = np.empty_like(Z), np.empty(5), np.empty_like(Z)
    K.act_rows(Z, b, True, True, rms, A, SS, H)
    np.testing.assert_array_equal(A, np.maximum(Z + b, 0))  # float32 add, then the ReLU: exact
    assert all(SS[i] == _lane_sum(A[i].astype(np.float64) ** 2) for i in range(5))  # the lane order, exactly
    np.testing.assert_allclose(SS, (A.astype(np.float64) ** 2).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(H, normalize(A, "rms" if rms else "l2"), rtol=2e-6)  # normalize: float32 Σ
    # in place (A is Z) and without bias/ReLU: the normalization of the rows as they are
    Z2 = Z.copy()
    K.act_rows(Z2, b, False, False, True, Z2, SS, H)
    np.testing.assert_array_equal(Z2, Z)
    np.testing.assert_allclose(H, normalize(Z), rtol=2e-6)


@pytest.mark.parametrize("concat", [False, True])
def test_embed_rows_is_the_normalized_embedding(concat):
    X = RNG.random((3, 30)).astype(np.float32)
    codes = np.array([4.0, -1.0, 0.0, 9.0, 2.0, -1.0])  # rows 3.. reuse images 0..
    n = 40 if concat else 30
    H = np.empty((6, n), np.float32)
    K.embed_rows(X, codes, np.float32(0.5), 10, concat, True, H)
    imgs = X[np.arange(6) % 3]
    lab = np.where(codes[:, None] < 0, np.float32(0.1), np.eye(10, dtype=np.float32)[codes.astype(int)])
    emb = np.concatenate([imgs, 0.5 * lab], axis=1) if concat else np.concatenate([0.5 * lab, imgs[:, 10:]], axis=1)
    np.testing.assert_allclose(H, normalize(emb.astype(np.float32)), rtol=2e-6)


@pytest.mark.parametrize("kind", ["sumsq", "meansq", "neg_sumsq"])
@pytest.mark.parametrize("positive", [True, False])
def test_layer_rows_goodness_loss_and_gradient(kind, positive):
    n = 50
    A = (np.maximum(RNG.standard_normal((8, n)), 0) * 1.4).astype(np.float32)
    SS = (A.astype(np.float64) ** 2).sum(axis=1)
    theta = {"sumsq": n, "meansq": 1.0, "neg_sumsq": -n}[kind]
    D, G, L = np.empty_like(A), np.empty(8), np.empty(8)
    K.layer_rows(A, SS, K.KIND_CODES[kind], float(theta), 2.0, positive, False, np.float32(0), np.zeros(n, np.float32),
                 D, G, L)
    G_ref = {"sumsq": SS, "meansq": SS / n, "neg_sumsq": -SS}[kind]
    np.testing.assert_array_equal(G, G_ref)
    np.testing.assert_allclose(L, log_sigmoid_loss(G_ref, theta, 2.0, positive), rtol=1e-12)
    p = sigmoid((G_ref - theta) / 2.0)
    np.testing.assert_array_equal(D, goodness_grad(A, p, positive, kind))


def test_peer_normalization_update_and_push():
    n = 40
    A = (np.maximum(RNG.standard_normal((6, n)), 0)).astype(np.float32)
    mean_act = RNG.random(n).astype(np.float32)
    expected = np.float32(0.9) * mean_act + np.float32(0.1) * A.mean(axis=0, dtype=np.float64).astype(np.float32)
    K.peer_update(A, mean_act, np.float32(0.9))
    np.testing.assert_allclose(mean_act, expected, rtol=1e-6)
    SS = (A.astype(np.float64) ** 2).sum(axis=1)
    D, G, L = np.empty_like(A), np.empty(6), np.empty(6)
    K.layer_rows(A, SS, 0, float(n), 1.0, True, True, np.float32(0.03), mean_act, D, G, L)
    p = sigmoid(SS - n)
    push = np.float32(0.03) * (np.float32(_lane_sum(mean_act) / n) - mean_act)
    np.testing.assert_allclose(D, goodness_grad(A, p, True) + push, rtol=1e-6, atol=1e-9)


def test_bias_step_is_the_smoothed_step_of_the_summed_gradient():
    D = RNG.standard_normal((10, 30)).astype(np.float32)
    b, g = RNG.standard_normal(30).astype(np.float32), RNG.standard_normal(30).astype(np.float32)
    g_ref = np.float32(0.9) * g + np.float32(0.1) * (D.sum(axis=0, dtype=np.float64) / 5).astype(np.float32)
    b_ref = b + np.float32(0.01) * g_ref
    K.bias_step(D, b, g, np.float32(0.9), 5, np.float32(0.01))
    np.testing.assert_allclose(g, g_ref, rtol=1e-6)
    np.testing.assert_allclose(b, b_ref, rtol=1e-6)


@pytest.mark.parametrize(("has_targets", "T"), [(False, 1.0), (True, 3.0)])
def test_head_rows_softmax_error_and_statistics(has_targets, T):
    B, C = 7, 10
    logits = (RNG.standard_normal((B, C)) * 4).astype(np.float32)
    lab = RNG.integers(0, C, B).astype(np.float64)
    targets = RNG.dirichlet(np.ones(C), B).astype(np.float32)
    P, E, wrong, nll = np.empty((B, C), np.float32), np.empty((B, C), np.float32), np.empty(B), np.empty(B)
    K.head_rows(logits, lab, targets, has_targets, 1.0 / T, B, P, E, wrong, nll)

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    z = logits.astype(np.float64)
    np.testing.assert_allclose(P, softmax(z), rtol=1e-6)
    t = targets.astype(np.float64) if has_targets else np.eye(C)[lab.astype(int)]
    # (logits - max) is taken in float32, as in the array softmax: E within float32 rounding of t - q
    np.testing.assert_allclose(E, (t - softmax(z / T)) / B, rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(wrong, (P.argmax(axis=1) != lab).astype(float))
    np.testing.assert_allclose(nll, -np.log(P[np.arange(B), lab.astype(int)].astype(np.float64) + 1e-30), rtol=1e-12)


def test_negative_rows_is_the_inverse_cdf_without_the_true_class():
    C = 5
    p = np.array([[0.1, 0.2, 0.3, 0.15, 0.25]], np.float32)
    lab = np.array([2.0])
    # without class 2 the CDF over 0, 1, 3, 4 is (0.1, 0.3, 0.45, 0.7) / 0.7
    for u, want in ((0.0, 0), (0.1 / 0.7 - 1e-6, 0), (0.1 / 0.7 + 1e-6, 1), (0.3 / 0.7 + 1e-6, 3), (0.999, 4)):
        neg = np.empty(1)
        K.negative_rows(p, lab, np.array([u]), np.array([0.0]), neg)
        assert neg[0] == want, (u, neg[0])
    # nothing left but the true class: uniform over the others
    q = np.zeros((1, C), np.float32)
    q[0, 2] = 1.0
    got = set()
    for u in np.linspace(0, 0.999, 20):
        neg = np.empty(1)
        K.negative_rows(q, lab, np.array([u]), np.array([0.0]), neg)
        got.add(int(neg[0]))
    assert got == {0, 1, 3, 4}
