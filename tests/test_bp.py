"""Backprop baseline: gradients against float64 finite differences, the three modes' use of the chip."""

from __future__ import annotations

import numpy as np
import pytest

from ffsim import Crossbar
from ffsim.bp import BPNetwork
from ffsim.ff import FFConfig


def _loss64(Ws, bs, x, labels):
    h = x.astype(np.float64)
    for k, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        z = h @ W + b
        h = np.maximum(z, 0) if k < len(Ws) - 1 else z
    z = h - h.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(labels)), labels].mean()


def test_gradients_match_float64_finite_differences():
    rng = np.random.default_rng(0)
    cfg = FFConfig(model="bp", layers=(7, 5), epochs=1)
    net = BPNetwork(cfg, 6, 4, rng)
    for layer in net.layers:
        layer.b[:] = rng.standard_normal(layer.b.shape) * 0.1
    x = rng.standard_normal((9, 6)).astype(np.float32)
    labels = rng.integers(0, 4, 9)
    loss, deltas, hs, _ = net.loss_and_grads(x, labels)
    Ws = [layer.store.W.astype(np.float64) for layer in net.layers]
    bs = [layer.b.astype(np.float64) for layer in net.layers]
    assert loss == pytest.approx(_loss64(Ws, bs, x, labels), rel=1e-5)
    eps = 1e-6
    for k in range(len(Ws)):
        analytic = hs[k].astype(np.float64).T @ deltas[k] / len(labels)
        numeric = np.zeros_like(Ws[k])
        for idx in np.ndindex(Ws[k].shape):
            Wp = [w.copy() for w in Ws]
            Wm = [w.copy() for w in Ws]
            Wp[k][idx] += eps
            Wm[k][idx] -= eps
            numeric[idx] = (_loss64(Wp, bs, x, labels) - _loss64(Wm, bs, x, labels)) / (2 * eps)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-3, atol=1e-6)
        # bias gradients too
        analytic_b = deltas[k].astype(np.float64).sum(axis=0) / len(labels)
        numeric_b = np.zeros_like(bs[k])
        for j in range(len(bs[k])):
            bp = [b.copy() for b in bs]
            bm = [b.copy() for b in bs]
            bp[k][j] += eps
            bm[k][j] -= eps
            numeric_b[j] = (_loss64(Ws, bp, x, labels) - _loss64(Ws, bm, x, labels)) / (2 * eps)
        np.testing.assert_allclose(analytic_b, numeric_b, rtol=1e-3, atol=1e-6)


def test_insitu_backward_goes_through_the_chip_and_model_mode_does_not(monkeypatch):
    calls = []
    real = Crossbar.transposed

    def spy(self, d):
        calls.append(self.shape)
        return real(self, d)

    monkeypatch.setattr(Crossbar, "transposed", spy)
    rng = np.random.default_rng(1)
    x = rng.random((20, 30), dtype=np.float32)
    y = rng.integers(0, 10, 20)
    for mode, expect in (("insitu", [(16, 10), (12, 16)]), ("model", [])):
        calls.clear()
        net = BPNetwork(FFConfig(model="bp", layers=(12, 16), mode=mode, profile="ecram"), 30, 10, rng)
        before = net.ops()
        net.train_step(x, y, rng, 1.0)
        ops = net.ops() - before
        assert calls == expect, mode
        assert ops.device_pulses > 0  # updates reach the chip by pulse trains in both modes


def test_model_mode_tracks_its_nominal_weights():
    rng = np.random.default_rng(2)
    net = BPNetwork(FFConfig(model="bp", layers=(8,), mode="model", profile="ecram"), 30, 10, rng)
    W0 = net.layers[0].store.W.copy()
    x = rng.random((20, 30), dtype=np.float32)
    y = rng.integers(0, 10, 20)
    _, deltas, hs, _ = net.loss_and_grads(x, y)
    net.layers[0].store.update(hs[0], deltas[0], 0.05, 20)
    np.testing.assert_allclose(net.layers[0].store.W, W0 - 0.05 / 20 * hs[0].T @ deltas[0], rtol=1e-5, atol=1e-7)


def test_bp_learns_a_small_problem():
    rng = np.random.default_rng(3)
    n = 400
    y = rng.integers(0, 2, n)
    x = np.zeros((n, 40), np.float32)
    x[:, :20] = (y[:, None] == 0) * rng.random((n, 20))
    x[:, 20:] = (y[:, None] == 1) * rng.random((n, 20))
    net = BPNetwork(FFConfig(model="bp", layers=(16,)), 40, 2, rng)
    for _ in range(3):
        for a in range(0, n, 20):
            net.train_step(x[a:a + 20], y[a:a + 20], rng, 1.0)
    assert net.evaluate(x, y)["error_softmax"] < 0.05
    assert net.evaluate(x, y)["error_goodness"] is None
