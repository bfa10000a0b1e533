"""Forward-Forward maths and rules: goodness, loss, normalization, negatives, peer normalization,
locality (forward passes only), modes, recurrent dynamics, hybrid masks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ffsim import Crossbar
from ffsim.ff import FFConfig
from ffsim.ff.goodness import default_threshold, goodness, goodness_grad, log_sigmoid_loss, normalize, sigmoid
from ffsim.ff.network import FFNetwork, sample_negative_labels
from ffsim.ff.recurrent import RecurrentFF
from ffsim.ff.trainer import lr_gain
from ffsim.ff.unsupervised import hybrid_images, hybrid_masks

# ---------------------------------------------------------------------------------------------
# goodness, probability, loss


def test_goodness_kinds_and_thresholds():
    y = np.array([[1.0, 2.0, 0.0, 3.0]], np.float32)
    assert goodness(y, "sumsq")[0] == 14.0
    assert goodness(y, "meansq")[0] == 3.5
    assert goodness(y, "neg_sumsq")[0] == -14.0
    assert default_threshold("sumsq", 4) == 4 and default_threshold("meansq", 4) == 1
    assert default_threshold("neg_sumsq", 4) == -4
    with pytest.raises(ValueError, match="goodness kind must be one of"):
        goodness(y, "max")


def test_loss_is_stable_for_huge_goodness_and_matches_log_sigmoid():
    G = np.array([-1e6, -50.0, 0.0, 3.0, 50.0, 1e6])
    for positive in (True, False):
        loss = log_sigmoid_loss(G, 0.0, 1.0, positive)
        assert np.all(np.isfinite(loss))
        p = sigmoid(G)
        with np.errstate(divide="ignore"):
            ref = -np.log(p) if positive else -np.log1p(-p)
        ok = np.isfinite(ref)
        np.testing.assert_allclose(loss[ok], ref[ok], rtol=1e-9, atol=1e-12)
    # far on the wrong side the loss grows linearly (no overflow to inf)
    assert log_sigmoid_loss(np.array([-1e6]), 0.0, 1.0, True)[0] == pytest.approx(1e6)
    assert np.all(np.isfinite(sigmoid(np.array([-1e6, 1e6]))))


def test_local_gradient_ascends_log_p():
    # dC/dz = (1 - p) y for positives, -p y for negatives (Hinton's scaling of d log p / dz = 2(1 - p) y / T)
    rng = np.random.default_rng(0)
    y = np.abs(rng.standard_normal((5, 7))).astype(np.float64)
    theta, T = 7.0, 2.0

    def logp(yy, positive):
        return -log_sigmoid_loss(goodness(yy[None]), theta, T, positive)[0]

    for positive in (True, False):
        p = sigmoid((goodness(y) - theta) / T)
        d = goodness_grad(y.astype(np.float32), p, positive)
        for b in range(5):
            num = np.array([(logp(y[b] + e, positive) - logp(y[b] - e, positive)) / 2e-6
                            for e in np.eye(7) * 1e-6])
            np.testing.assert_allclose(num, 2.0 / T * d[b], rtol=1e-4, atol=1e-8)


def test_normalization():
    rng = np.random.default_rng(1)
    y = np.abs(rng.standard_normal((6, 50))).astype(np.float32)
    r = normalize(y, "rms")
    np.testing.assert_allclose(np.sqrt((r**2).mean(axis=1)), 1.0, rtol=1e-5)
    l2 = normalize(y, "l2")
    np.testing.assert_allclose(np.linalg.norm(l2, axis=1), 1.0, rtol=1e-5)
    assert np.all(normalize(np.zeros((2, 5), np.float32)) == 0)


# ---------------------------------------------------------------------------------------------
# negatives


def test_true_label_is_never_a_negative():
    rng = np.random.default_rng(2)
    n, C = 20000, 10
    labels = rng.integers(0, C, n)
    probs = rng.dirichlet(np.ones(C) * 0.3, size=n)
    probs[:200] = 0.0
    probs[np.arange(200), labels[:200]] = 1.0  # all mass on the true class
    neg = sample_negative_labels(probs, labels, rng)
    assert np.all(neg != labels)
    assert np.all((neg >= 0) & (neg < C))


def test_hard_negatives_follow_the_predictions():
    rng = np.random.default_rng(3)
    C, n = 10, 60000
    p = np.array([0.5, 0.3, 0.1, 0.05, 0.03, 0.01, 0.005, 0.003, 0.001, 0.001])
    labels = np.zeros(n, int)  # true class 0 excluded: the others in proportion to p[1:]
    neg = sample_negative_labels(np.tile(p, (n, 1)), labels, rng)
    counts = np.bincount(neg, minlength=C)
    assert counts[0] == 0
    expected = p[1:] / p[1:].sum() * n
    assert stats.chisquare(counts[1:], expected).pvalue > 1e-4


# ---------------------------------------------------------------------------------------------
# networks


def _data(n=200, seed=5):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784), dtype=np.float32)
    x[:, :10] = 0
    return x, rng.integers(0, 10, n)


def test_label_embedding_and_neutral_label():
    cfg = FFConfig(layers=(20, 20), epochs=1)
    net = FFNetwork(cfg, 784, 10, np.random.default_rng(0))
    x, y = _data(4)
    e = net.embed(x, net.onehot(y))
    np.testing.assert_array_equal(e[:, :10], np.eye(10)[y])
    np.testing.assert_array_equal(e[:, 10:], x[:, 10:])
    np.testing.assert_allclose(net.embed(x, net.neutral(4))[:, :10], 0.1)
    cfg2 = FFConfig(layers=(20, 20), epochs=1, label_mode="concat")
    net2 = FFNetwork(cfg2, 784, 10, np.random.default_rng(0))
    assert net2.in_features == 794
    np.testing.assert_array_equal(net2.embed(x, net2.onehot(y))[:, 784:], np.eye(10)[y])


def test_peer_normalization_is_not_gated_by_relu():
    cfg = FFConfig(layers=(8,), epochs=1, peer_norm=0.03, min_level=0)
    net = FFNetwork(cfg, 784, 10, np.random.default_rng(0))
    layer = net.layers[0]
    a = np.zeros((4, 8), np.float32)
    a[:, 0] = 3.0  # only unit 0 is ever active
    before = layer.mean_act.copy()
    d, G, loss = layer.local(a, True)
    np.testing.assert_allclose(G, 9.0)  # Σa² of each case
    p = 1 / (1 + np.exp(-(G - layer.theta) / layer.temperature))
    np.testing.assert_allclose(loss, -np.log(p), rtol=1e-12)
    expected_mean = 0.9 * before + 0.1 * a.mean(axis=0)
    np.testing.assert_allclose(layer.mean_act, expected_mean, rtol=1e-6)
    peer = 0.03 * (expected_mean.mean() - expected_mean)
    np.testing.assert_allclose(d - (1 - p[:, None]) * a, np.broadcast_to(peer, (4, 8)), rtol=1e-5, atol=1e-7)
    # silent units get a positive push even though their ReLU output is zero
    assert np.all(d[:, 1:] > 0)


def test_ff_never_calls_transposed(monkeypatch):
    def forbidden(self, d):
        raise AssertionError("Forward-Forward called Crossbar.transposed")

    monkeypatch.setattr(Crossbar, "transposed", forbidden)
    for mode in ("insitu", "hybrid"):
        cfg = FFConfig(layers=(16, 16), epochs=1, mode=mode, profile="pcm")
        net = FFNetwork(cfg, 784, 10, np.random.default_rng(0))
        x, y = _data(20)
        net.train_step(x, y, np.random.default_rng(1), 1.0)
        net.evaluate(x, y)


@pytest.mark.parametrize("mode", ["ideal", "insitu"])
def test_layer_updates_use_nothing_from_later_layers(mode):
    """Changing the last layer's weights must leave the earlier layers' updates unchanged (negatives fixed)."""
    x, y = _data(30)
    cfg = FFConfig(layers=(12, 12, 12), epochs=1, negatives="uniform", mode=mode, profile="ecram")

    def step(perturb: bool):
        net = FFNetwork(cfg, 784, 10, np.random.default_rng(0))
        if perturb:
            last = net.layers[-1].store
            if mode == "ideal":
                last.W *= -3.0
            else:
                last.chip.program(np.zeros(last.chip.shape))
        net.train_step(x, y, np.random.default_rng(7), 1.0)
        return [layer.state() for layer in net.layers[:-1]], net

    a, net_a = step(False)
    b, net_b = step(True)
    for sa, sb in zip(a, b, strict=True):
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k])
    if mode == "insitu":
        for la, lb in zip(net_a.layers[:-1], net_b.layers[:-1], strict=True):
            np.testing.assert_array_equal(la.store.chip._g, lb.store.chip._g)


def test_modes_touch_the_chip_as_documented():
    x, y = _data(40)
    for mode, check in (("insitu", lambda ops: ops.device_pulses > 0 and ops.update_slots > 0),
                        ("hybrid", lambda ops: ops.program_steps > 0 and ops.update_slots == 0)):
        cfg = FFConfig(layers=(16,), epochs=1, mode=mode, profile="pcm", min_level=0, hybrid_threshold=1e-4)
        net = FFNetwork(cfg, 784, 10, np.random.default_rng(0))
        before = net.ops()
        net.train_step(x, y, np.random.default_rng(1), 1.0)
        assert check(net.ops() - before), mode
    net = FFNetwork(FFConfig(layers=(16,), epochs=1, min_level=0), 784, 10, np.random.default_rng(0))
    assert not hasattr(net.layers[0].store, "chip")


def test_hybrid_mode_reprograms_only_cells_that_moved():
    x, y = _data(40)
    cfg = FFConfig(layers=(16,), epochs=1, mode="hybrid", profile="pcm", min_level=0, lr=0.5, hybrid_threshold=0.01)
    net = FFNetwork(cfg, 784, 10, np.random.default_rng(0))
    store = net.layers[0].store
    W0 = store.W.copy()
    before = net.ops()
    net.train_step(x, y, np.random.default_rng(1), 1.0)
    written = store.written != W0  # cells re-programmed in this step
    assert 0 < written.sum() < W0.size
    np.testing.assert_array_equal(store.written[written], store.W[written])
    # every cell whose master copy moved past the threshold was written, no other
    assert np.all(np.abs(store.W - W0)[~written] <= store.threshold)
    assert np.all(np.abs(store.W - W0)[written] > store.threshold)
    ops = net.ops() - before
    wv = store.chip.profile.cost.write_verify_pulses
    assert ops.device_pulses == round(2 * written.sum() * wv)  # two devices per re-written weight


def test_lr_schedule_is_hintons():
    gains = [lr_gain(e, 10) for e in range(1, 11)]
    assert gains[:5] == [1.0] * 5
    np.testing.assert_allclose(gains[5:], [(1 + 2 * (10 - e)) / 10 for e in range(6, 11)])
    assert gains[-1] == pytest.approx(0.1)


def test_supervised_ff_learns_a_small_problem():
    # two well-separated classes in the pixels: FF must get both evaluations far below chance
    rng = np.random.default_rng(11)
    n = 400
    y = rng.integers(0, 2, n)
    x = np.zeros((n, 784), np.float32)
    x[:, 100:300] = (y[:, None] == 0) * rng.random((n, 200))
    x[:, 400:600] = (y[:, None] == 1) * rng.random((n, 200))
    cfg = FFConfig(layers=(50, 50), epochs=1, lr=0.01, batch_size=20)
    net = FFNetwork(cfg, 784, 2, rng)
    for _ in range(3):
        for a in range(0, n, 20):
            net.train_step(x[a:a + 20], y[a:a + 20], rng, 1.0)
    res = net.evaluate(x, y)
    assert res["error_goodness"] < 0.1 and res["error_softmax"] < 0.1


# ---------------------------------------------------------------------------------------------
# unsupervised and recurrent


def test_hybrid_masks_are_binary_and_coherent():
    rng = np.random.default_rng(4)
    m = hybrid_masks(200, (28, 28), rng, blurs=6)
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert 0.3 < m.mean() < 0.7
    # neighbouring pixels agree far more often than independent bits (0.5)
    agree = (m[:, :, 1:] == m[:, :, :-1]).mean()
    assert agree > 0.85
    raw = hybrid_masks(200, (28, 28), rng, blurs=0)
    assert abs((raw[:, :, 1:] == raw[:, :, :-1]).mean() - 0.5) < 0.02


def test_hybrid_images_mix_two_different_digits():
    rng = np.random.default_rng(6)
    n = 300
    labels = rng.integers(0, 10, n)
    x = np.repeat(labels[:, None].astype(np.float32) + 1, 784, axis=1)  # image k is the constant k + 1
    h = hybrid_images(x, labels, rng)
    for i in range(n):
        vals = set(np.unique(h[i]))
        assert labels[i] + 1 in vals or len(vals) == 1
        others = vals - {labels[i] + 1.0}
        assert len(others) <= 1  # one partner image
        if others:
            assert others.pop() != labels[i] + 1


def test_recurrent_damping_and_clamped_top():
    cfg = FFConfig(model="ff-recurrent", layers=(12, 9), epochs=1, recurrent_iters=3, recurrent_damping=0.3,
                   recurrent_eval_iters=(2, 3))
    net = RecurrentFF(cfg, 784, 10, np.random.default_rng(0))
    x, y = _data(5)
    x_n = normalize(x)
    top = normalize(np.eye(10, dtype=np.float32)[y])
    hist = net._iterate(x_n, top, 3)
    assert len(hist) == 4
    # iteration 1 from the bottom-up state: a_k(1) = 0.3 a_k(0) + 0.7 relu(W [below; above] + b)
    a0 = hist[0]
    below = x_n
    above = normalize(a0[1])
    z = net.layers[0].store.forward(np.concatenate([below, above], axis=1)) + net.layers[0].b
    np.testing.assert_allclose(hist[1][0], 0.3 * a0[0] + 0.7 * np.maximum(z, 0), rtol=1e-5, atol=1e-6)
    z_top = net.layers[1].store.forward(np.concatenate([normalize(a0[0]), top], axis=1)) + net.layers[1].b
    np.testing.assert_allclose(hist[1][1], 0.3 * a0[1] + 0.7 * np.maximum(z_top, 0), rtol=1e-5, atol=1e-6)
    scores = net.goodness_scores(x)
    assert scores.shape == (5, 10) and np.all(np.isfinite(scores))
