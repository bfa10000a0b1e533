"""Spiking twin of the recurrent FF network: exact spike counts of a constructed network whose neurons need the
bottom-up and the top-down volley together, agreeing labels giving more spike goodness than disagreeing ones,
agreement with the analog goodness evaluation of a small trained network, and argument checks.  Brian2 runs use
the numpy target."""

from __future__ import annotations

import numpy as np
import pytest

from ffsim.data import load_dataset
from ffsim.ff import FFConfig
from ffsim.ff.network import FFNetwork
from ffsim.ff.recurrent import RecurrentFF
from ffsim.spiking import SpikingConfig, evaluate_spiking_recurrent, relay_counts


def coincidence_net(C: int, n_layers: int, *, w_img: float = 0.6, w_top: float = 0.6, w_up: float = 0.5,
                    w_label: float = 0.5) -> tuple[RecurrentFF, np.ndarray, np.ndarray]:
    """Hidden unit c of every layer stands for class c.  Layer 0: pixels 2c, 2c+1 (weight ``w_img`` each) and
    unit c of the layer above (``w_top``; the label for a one-layer net).  Higher layers: unit c of the layer
    below (``w_up``) and unit c of the layer above or the label (``w_label``).  Images: class c lights 2c, 2c+1."""
    cfg = FFConfig(model="ff-recurrent", layers=(C,) * n_layers, recurrent_iters=3, recurrent_eval_iters=(2, 3),
                   min_level=0)
    net = RecurrentFF(cfg, 2 * C, C, np.random.default_rng(0))
    eye = np.eye(C, dtype=np.float32)
    for k, layer in enumerate(net.layers):
        if k == 0:
            W = np.concatenate([w_img * np.repeat(eye, 2, axis=0), w_top * eye])
        else:
            W = np.concatenate([w_up * eye, w_label * eye])
        assert layer.store.W.shape == W.shape
        layer.store.W[...] = W
        layer.b[...] = 0.0
    labels = np.arange(C)
    x = np.repeat(eye, 2, axis=1)
    return net, x, labels


FAST = {"tail_s": 1e-3}  # every count here is at most a few spikes: a 1 ms tail (20 steps) is plenty


def test_counts_of_coinciding_volleys_are_exact():
    # C = 2, threshold_drive = 1 (weights in threshold units), q = 4 spikes per unit, rms norm; image of class c
    # delivers its 2 pixels with gain 1/rms = sqrt(2).  A neuron fed by a synchronous volley of drive D at rest
    # fires while v > 1 (subtract reset, 2.5 % leak per step): D = 0.75 -> 0, 1.5 or 1.70 -> 1, 2.55 -> 2.
    # * layer 0, unit c: image 2 * 0.6 * sqrt(2) = 1.70 -> 1 spike; + top-down (unit c of layer 1 active:
    #   normalized sqrt(2), relayed as round(4 sqrt(2) / sqrt(2)) = 4 spikes of 0.6 / 4, times the gain sqrt(2))
    #   0.85 -> 2.55 -> 2 spikes;
    # * layer 1, unit c: bottom-up (layer-0 unit c active: round(4 sqrt(2)) = 6 spikes of 0.5 / 4) 0.75 alone
    #   -> 0; the label alone 0.75 -> 0; both in the same slot 1.5 -> 1 spike;
    # iteration 0 (bottom-up, no label): layer 0 -> 1, layer 1 -> 0; iteration 1: layer 1 fires if the label
    # agrees; iteration 2 on: its top-down volley lifts layer 0 to 2 spikes.  Damping does not change which
    # units are active, and normalization removes the states' scale, so the pattern then repeats.
    net, x, labels = coincidence_net(2, 2)
    ev = evaluate_spiking_recurrent(net, x, labels, SpikingConfig(threshold_drive=1.0, **FAST), spikes_per_unit=4)
    agree = np.array([[1, 0], [1, 1], [2, 1], [2, 1]])  # (iteration, layer): spikes with the true label
    disagree = np.array([[1, 0], [1, 0], [1, 0], [1, 0]])
    assert ev.step_spikes.shape == (4, 2, 2, 2)
    for img in range(2):
        for lab in range(2):
            want = agree if lab == img else disagree
            np.testing.assert_array_equal(ev.step_spikes[:, :, img, lab], want)
            np.testing.assert_array_equal(ev.step_goodness[:, :, img, lab], want**2)  # one active unit per layer
    # scores: iterations 2 and 3 averaged, summed over layers
    np.testing.assert_array_equal(ev.spike_scores, [[5, 1], [1, 5]])
    np.testing.assert_array_equal(ev.count_scores, [[3, 1], [1, 3]])
    # the damped state d_t = 0.3 d_(t-1) + 0.7 c_t of the agreeing case: layer 0 1, 1, 1.7, 1.91; layer 1 0, 0.7,
    # 0.91, 0.973; its goodness averaged over iterations 2 and 3
    g_state = ((1.7**2 + 0.91**2) + (1.91**2 + 0.973**2)) / 2
    np.testing.assert_allclose(ev.state_scores, [[g_state, 1], [1, g_state]], rtol=1e-12)
    assert ev.error_spiking == ev.error_state == ev.error_count == ev.error_analog == 0.0
    assert ev.agreement == 1.0 and ev.tie_fraction == 0.0 and ev.dropped_input_spikes == 0
    assert (ev.goodness_true, ev.goodness_wrong, ev.spikes_true, ev.spikes_wrong) == (5.0, 1.0, 3.0, 1.0)
    np.testing.assert_array_equal(ev.analog_scores, net.goodness_scores(x))
    assert ev.config["spikes_per_unit"] == 4.0 and ev.config["recurrent_eval_iters"] == [2, 3]
    # one image per Brian2 run gives the same spikes
    one = evaluate_spiking_recurrent(net, x, labels, SpikingConfig(threshold_drive=1.0, batch_images=1, **FAST))
    np.testing.assert_array_equal(one.step_spikes, ev.step_spikes)


def test_relay_counts_normalize_each_source():
    # rms: a one-hot of C units normalizes to sqrt(C); counts scale freely (normalization removes it)
    np.testing.assert_array_equal(relay_counts(np.array([[0.0, 3.0], [0.7, 0.0]]), "rms", 4), [[0, 6], [6, 0]])
    np.testing.assert_array_equal(relay_counts(np.array([[1.0, 1.0, 0, 0]]), "rms", 4, np.array([2.0])), [[3, 3, 0, 0]])
    np.testing.assert_array_equal(relay_counts(np.array([[3.0, 4.0]]), "l2", 10), [[6, 8]])
    np.testing.assert_array_equal(relay_counts(np.zeros((1, 3)), "rms", 4), [[0, 0, 0]])  # silent stays silent
    with pytest.raises(ValueError, match=r"state must be a finite, non-negative 2-D array"):
        relay_counts(np.array([[-1.0, 2.0]]), "rms", 4)
    with pytest.raises(ValueError, match=r"norm must be 'rms' or 'l2' \(got 'max'\)"):
        relay_counts(np.ones((1, 2)), "max", 4)
    with pytest.raises(ValueError, match=r"gain must be finite, > 0, with shape \(1,\)"):
        relay_counts(np.ones((1, 2)), "rms", 4, np.array([0.0]))


@pytest.mark.parametrize(("n_layers", "jitter_s"), [(1, 0.0), (2, 0.0), (2, 5e-5)])
def test_agreeing_label_gives_more_spike_goodness(n_layers, jitter_s):
    # C = 4 classes; image c lights both pixels of class c and one of class c' = c + 1 (a distractor): gain
    # sqrt(8 / 3), so layer-0 unit c gets 2.45 (2 spikes) and unit c' 1.22 (1 spike).  The true label coincides
    # with the strong bottom-up volley, the distractor's label with a weaker one, the others with none: spike
    # goodness true > distractor > others, in every image, also with timing jitter of one time step on every
    # input spike (image and relayed volleys).
    C = 4
    kw = {"w_img": 0.75, "w_top": 0.6, "w_up": 0.4, "w_label": 0.4}
    net, x, labels = coincidence_net(C, n_layers, **kw)
    distractor = (labels + 1) % C
    x[labels, 2 * distractor] = 1.0
    cfg = SpikingConfig(threshold_drive=1.0, jitter_s=jitter_s, **FAST)
    ev = evaluate_spiking_recurrent(net, x, labels, cfg, rng=np.random.default_rng(3))
    rows = np.arange(C)
    true, dis = ev.spike_scores[rows, labels], ev.spike_scores[rows, distractor]
    others = ev.spike_scores.copy()
    others[rows, labels] = others[rows, distractor] = -np.inf
    assert np.all(true > dis) and np.all(dis > others.max(axis=1))
    assert ev.error_spiking == 0.0 and ev.error_analog == 0.0 and ev.agreement == 1.0
    assert ev.goodness_true > ev.goodness_wrong
    if n_layers == 2:
        assert ev.spikes_true > ev.spikes_wrong
    else:  # every label draws 4 spikes here, but the agreeing one concentrates them: 3 + 1 vs 2 + 2 or 2 + 1 + 1
        assert ev.spikes_true == ev.spikes_wrong == 4.0
    # with every label the bottom-up pass is the same; the difference appears once the label's volley arrives
    np.testing.assert_array_equal(ev.step_spikes[0], ev.step_spikes[0][..., :1].repeat(C, axis=-1))
    if jitter_s:  # the same generator gives the same spikes
        again = evaluate_spiking_recurrent(net, x, labels, cfg, rng=np.random.default_rng(3))
        np.testing.assert_array_equal(again.step_spikes, ev.step_spikes)


def test_trained_network_spiking_and_analog_classifications_agree():
    # A 784-40-40 recurrent network trained for 5 epochs on 5000 MNIST images (lr 0.03; ~3 s: one epoch on 1000
    # images leaves it near chance, ~70 % error, where the labels' scores are nearly tied and agreement is
    # noise).  On 30 test images its analog goodness error is ~30 %.  Tolerance: the spiking and analog
    # predictions must agree on at least 70 % of the images (measured: 25/30) and the spiking error may exceed
    # the analog one by at most 10 points.  They cannot agree everywhere: the latency code delivers every
    # nonzero pixel at full intensity (binarizing the image alone changes 4 of the 30 analog predictions),
    # neurons fire about z / threshold_drive = 2 spikes per unit of drive, relayed activities are rounded to
    # 1/4 unit, and the true and the best wrong label of a weak network are often within a few percent.
    x_tr, y_tr, x_te, y_te = load_dataset("mnist").arrays(5000, 30)
    cfg = FFConfig(model="ff-recurrent", layers=(40, 40), epochs=5, lr=0.03, seed=0)
    net = RecurrentFF(cfg, 784, 10, np.random.default_rng([0, 0]))
    neg_rng = np.random.default_rng([0, 2])
    for epoch in range(cfg.epochs):
        order = np.random.default_rng([0, 1, epoch]).permutation(len(y_tr))
        for b in range(0, len(y_tr), cfg.batch_size):
            idx = order[b:b + cfg.batch_size]
            net.train_step(x_tr[idx], y_tr[idx], neg_rng, 1.0)
    ev = evaluate_spiking_recurrent(net, x_te, y_te, SpikingConfig())
    assert ev.error_analog < 0.5  # trained, far from chance
    assert ev.agreement >= 0.7
    assert ev.error_spiking <= ev.error_analog + 0.1
    assert ev.goodness_true > ev.goodness_wrong  # the true label draws more spikes on average
    assert ev.step_spikes.shape == (6, 2, 30, 10) and ev.step_spikes[1:].sum() > 0


def test_bad_inputs_name_the_argument():
    net, x, labels = coincidence_net(2, 2)
    with pytest.raises(ValueError, match=r"net must be a RecurrentFF \(got FFNetwork\)"):
        evaluate_spiking_recurrent(FFNetwork(FFConfig(layers=(4,), min_level=0), 40, 10, np.random.default_rng(0)), x)
    with pytest.raises(ValueError, match=r"x must have shape \(n_images, 4\)"):
        evaluate_spiking_recurrent(net, x[:, :3])
    with pytest.raises(ValueError, match=r"x must hold intensities in \[0, 1\]"):
        evaluate_spiking_recurrent(net, x * 2)
    with pytest.raises(ValueError, match=r"labels must be 2 integer class indices in \[0, 2\)"):
        evaluate_spiking_recurrent(net, x, labels + 1)
    with pytest.raises(ValueError, match=r"labels must be 2 integer class indices"):
        evaluate_spiking_recurrent(net, x, labels[:1])
    with pytest.raises(ValueError, match=r"cfg.encoding must be 'latency'"):
        evaluate_spiking_recurrent(net, x, labels, SpikingConfig(encoding="rate"), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"rng must be a numpy.random.Generator with jitter_s=0.0001"):
        evaluate_spiking_recurrent(net, x, labels, SpikingConfig(jitter_s=1e-4))
    with pytest.raises(ValueError, match=r"spikes_per_unit must be a finite number > 0 \(got 0\)"):
        evaluate_spiking_recurrent(net, x, labels, spikes_per_unit=0)
    with pytest.raises(ValueError, match=r"cfg.from_layer must be in \[0, 1\] \(got 2\)"):
        evaluate_spiking_recurrent(net, x, labels, SpikingConfig(from_layer=2))
