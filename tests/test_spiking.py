"""Spiking front-end: encoders (exact and statistical), the coincidence layer against a naive step-by-step
reference, many presentations in one Brian2 run against separate runs, agreement as coincidence, and the
spiking evaluation of FF networks.  Brian2 runs use the numpy target."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ffsim import Crossbar
from ffsim.ff import FFConfig
from ffsim.ff.network import FFNetwork
from ffsim.spiking import CoincidenceLayer, SpikeTrains, brian2_cache_dir, latency_encode, rate_encode
from ffsim.spiking.coincidence import CACHE_DIR_ENV, _brian2_prefs
from ffsim.spiking.ff_bridge import SpikingConfig, evaluate_spiking, layer_weights, spiking_layers

DT = 5e-5

# ---------------------------------------------------------------------------------------------
# naive reference: the neuron model of ffsim.spiking.coincidence, one presentation, step by step


def naive_layer(layer: CoincidenceLayer, trains: SpikeTrains, gain: np.ndarray) -> list[list[tuple[int, int]]]:
    """(neuron, step) of every output spike of each presentation, simulated with plain loops.

    Order within a step (as Brian2 schedules it): refractoriness → state update → threshold → synaptic
    input → reset.  Each presentation starts at rest."""
    S = layer.slot_steps(trains.duration_s)
    dt, tau, ts = layer.dt_s, layer.tau_s, layer.tau_syn_s
    a = math.exp(-dt / tau)
    b = math.exp(-dt / ts) if ts > 0 else 0.0
    c = tau * (b - a) / (ts - tau) if ts > 0 else 0.0
    ref = layer.refractory_s > 0
    ref_steps = int((layer.refractory_s + 1e-3 * dt) / dt)
    out = []
    for p in range(trains.n_samples):
        m = trains.sample == p
        steps = np.rint(trains.time_s[m] / dt).astype(int)
        inputs = trains.input[m]
        v = layer.bias.copy()
        current = np.zeros(layer.n_out)
        last = np.full(layer.n_out, -10**9)
        spikes = []
        for s in range(S):
            nr = (s - last) >= ref_steps if ref else np.ones(layer.n_out, bool)
            v = np.where(nr, layer.bias + (v - layer.bias) * a + current * c, v)
            current = current * b
            fire = (v > 1) & nr
            if ref:
                nr = nr & ~fire
                last[fire] = s
            drive = gain[p] * layer.weights[np.unique(inputs[steps == s])].sum(axis=0)  # one event per step
            if ref:
                drive = drive * nr
            if ts > 0:
                current = current + drive
            else:
                v = v + drive
            v = np.where(fire, 0.0 if layer.reset == "zero" else v - 1.0, v)
            spikes += [(int(j), s) for j in np.nonzero(fire)[0]]
        out.append(sorted(spikes, key=lambda js: (js[1], js[0])))
    return out


def spikes_of(trains: SpikeTrains, p: int, dt: float = DT) -> list[tuple[int, int]]:
    m = trains.sample == p
    return list(zip(trains.input[m].tolist(), np.rint(trains.time_s[m] / dt).astype(int).tolist(), strict=True))


# ---------------------------------------------------------------------------------------------
# encoders


def test_latency_times_are_exact_and_zeros_are_silent():
    x = np.array([[0.0, 0.25, 1.0, 0.5], [0.75, 0.0, 0.0, 0.1]])
    tr = latency_encode(x, 8e-3)
    assert (tr.n_samples, tr.n_inputs, tr.duration_s, len(tr)) == (2, 4, 8e-3, 5)
    s, i = np.nonzero(x > 0)
    expected = {(int(a), int(b)): (1.0 - x[a, b]) * 8e-3 for a, b in zip(s, i, strict=True)}
    got = {(int(a), int(b)): t for a, b, t in zip(tr.sample, tr.input, tr.time_s, strict=True)}
    assert got == expected  # exactly (1 - x) * window, one spike per nonzero input, none for zeros
    assert np.all(np.diff(tr.sample) >= 0)
    first = tr.time_s[tr.sample == 0]
    assert np.all(np.diff(first) >= 0)  # sorted in time within a sample: stronger inputs first
    counts = tr.counts()
    np.testing.assert_array_equal(counts, (x > 0).astype(int))
    # the threshold silences weak inputs
    tr2 = latency_encode(x, 8e-3, threshold=0.3)
    np.testing.assert_array_equal(tr2.counts(), (x > 0.3).astype(int))


def test_latency_jitter_statistics():
    # n spikes at (1 - 0.5) * window with N(0, σ) jitter: mean offset within 4σ/√n, std within 4σ/√(2n)
    n, window, sigma = 20000, 10e-3, 0.4e-3
    x = np.full((4, n // 4), 0.5)
    tr = latency_encode(x, window, jitter_s=sigma, rng=np.random.default_rng(1))
    assert len(tr) == n and tr.duration_s == pytest.approx(window + 5 * sigma)
    d = tr.time_s - 0.5 * window
    assert abs(d.mean()) < 4 * sigma / math.sqrt(n)
    assert abs(d.std(ddof=1) - sigma) < 4 * sigma / math.sqrt(2 * n)
    # jitter is clipped at 0: inputs of intensity 1 never spike before the presentation starts
    tr1 = latency_encode(np.ones((1, 2000)), window, jitter_s=sigma, rng=np.random.default_rng(2))
    assert tr1.time_s.min() == 0.0 and np.mean(tr1.time_s == 0.0) == pytest.approx(0.5, abs=0.05)
    # the same generator state gives the same spikes
    again = latency_encode(x, window, jitter_s=sigma, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(again.time_s, tr.time_s)


def test_rate_code_poisson_counts_and_uniform_times():
    # count per train ~ Poisson(λ = x·rate·T): mean within 4·√(λ/n), sample variance within 4·√((λ + 2λ²)/n)
    n, rate, T = 4000, 100.0, 0.5
    x = np.full((8, n // 8), 0.6)
    tr = rate_encode(x, T, rate, rng=np.random.default_rng(3))
    lam = 0.6 * rate * T
    c = tr.counts().ravel()
    assert abs(c.mean() - lam) < 4 * math.sqrt(lam / n)
    assert abs(c.var(ddof=1) - lam) < 4 * math.sqrt((lam + 2 * lam**2) / n)
    # times uniform on [0, T): mean T/2 within 4·T/√(12 N)
    assert tr.time_s.min() >= 0 and tr.time_s.max() < T
    assert abs(tr.time_s.mean() - T / 2) < 4 * T / math.sqrt(12 * len(tr))
    # zero intensity: no spikes; zero rate: no spikes
    assert len(rate_encode(np.zeros((3, 5)), T, rate, rng=np.random.default_rng(0))) == 0
    assert len(rate_encode(x, T, 0.0, rng=np.random.default_rng(0))) == 0
    # jitter moves spikes (clipped to the presentation) but keeps the Poisson counts of the same draws
    tj = rate_encode(x, T, rate, jitter_s=1e-3, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(tj.counts(), tr.counts())
    assert not np.array_equal(tj.time_s, tr.time_s) and tj.time_s.min() >= 0 and tj.time_s.max() <= T


@pytest.mark.parametrize(("call", "match"), [
    (lambda: latency_encode(np.array([[0.5, 1.2]]), 1e-3), r"x must hold intensities in \[0, 1\]"),
    (lambda: latency_encode(np.array([[-0.1]]), 1e-3), r"x must hold intensities in \[0, 1\]"),
    (lambda: latency_encode(np.array([[np.nan]]), 1e-3), r"x must hold intensities"),
    (lambda: latency_encode(np.array([0.5, 0.2]), 1e-3), r"x must be a 2-D array"),
    (lambda: latency_encode(np.array([[0.5]]), -1e-3), r"window_s must be a finite number > 0 \(got -0.001\)"),
    (lambda: latency_encode(np.array([[0.5]]), 0.0), r"window_s must be a finite number > 0"),
    (lambda: latency_encode(np.array([[0.5]]), 1e-3, jitter_s=-1.0), r"jitter_s must be a finite number >= 0"),
    (lambda: latency_encode(np.array([[0.5]]), 1e-3, jitter_s=1e-4), r"rng must be a numpy.random.Generator"),
    (lambda: latency_encode(np.array([[0.5]]), 1e-3, threshold=1.0), r"threshold must be a number in \[0, 1\)"),
    (lambda: rate_encode(np.array([[0.5]]), 1e-3, 10.0, rng=None), r"rng must be a numpy.random.Generator"),
    (lambda: rate_encode(np.array([[0.5]]), 1e-3, -10.0, rng=np.random.default_rng(0)), r"max_rate_hz must be"),
    (lambda: rate_encode(np.array([[2.0]]), 1e-3, 10.0, rng=np.random.default_rng(0)), r"x must hold intensities"),
    (lambda: rate_encode(np.array([[0.5]]), np.inf, 10.0, rng=np.random.default_rng(0)), r"duration_s must be"),
    (lambda: SpikeTrains([0], [3], [0.0], 1, 3, 1e-3), r"SpikeTrains.input must lie in \[0, 3\)"),
    (lambda: SpikeTrains([1], [0], [0.0], 1, 3, 1e-3), r"SpikeTrains.sample must lie in \[0, 1\)"),
    (lambda: SpikeTrains([0], [0], [2e-3], 1, 3, 1e-3), r"SpikeTrains.time_s must lie in \[0, duration_s"),
    (lambda: SpikeTrains([0, 0], [0], [0.0], 1, 3, 1e-3), r"equal lengths"),
    (lambda: SpikeTrains([], [], [], 1, 3, 0.0), r"SpikeTrains.duration_s must be a finite number > 0"),
])
def test_encoder_bad_inputs_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_spike_trains_sort_count_and_select():
    tr = SpikeTrains([1, 0, 1, 0], [2, 1, 0, 1], [1e-3, 2e-3, 1e-3, 0.0], 3, 4, 5e-3)
    np.testing.assert_array_equal(tr.sample, [0, 0, 1, 1])
    np.testing.assert_array_equal(tr.time_s, [0.0, 2e-3, 1e-3, 1e-3])
    np.testing.assert_array_equal(tr.input, [1, 1, 0, 2])
    np.testing.assert_array_equal(tr.counts(), [[0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    sub = tr.select([1, 2])
    assert sub.n_samples == 2 and len(sub) == 2
    np.testing.assert_array_equal(sub.counts(), [[1, 0, 1, 0], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"samples must be indices in \[0, 3\)"):
        tr.select([3])


# ---------------------------------------------------------------------------------------------
# coincidence layer


def test_k_coincident_spikes_fire_and_the_same_spikes_spread_out_do_not():
    # 4 inputs of weight 0.3 (threshold 1): 4 together reach 1.2 and fire once, one step later;
    # 3 together (0.9) do not; the 4 spaced 2 tau apart peak at 0.3 / (1 - e^-2) = 0.35 and do not
    tau = 1e-3
    layer = CoincidenceLayer(np.full((4, 1), 0.3), tau_s=tau, dt_s=DT)
    t_spread = [0.0, 2 * tau, 4 * tau, 6 * tau]
    tr = SpikeTrains([0] * 4 + [1] * 3 + [2] * 4, [0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3],
                     [1e-3] * 4 + [1e-3] * 3 + t_spread, 3, 4, 8e-3)
    r = layer.run(tr)
    np.testing.assert_array_equal(r.counts[:, 0], [1, 0, 0])
    assert r.spikes.time_s.tolist() == [pytest.approx(1e-3 + DT)]
    # spread over less than the window they still coincide: 4 spikes within 0.1 tau
    close = SpikeTrains([0] * 4, [0, 1, 2, 3], [0.0, 2e-5, 6e-5, 1e-4], 1, 4, 8e-3)
    assert layer.run(close).counts[0, 0] == 1
    # ... and with a longer window (tau = 20 ms) the spread-out volley sums as well (0.3·Σe^(-k/10) > 1)
    slow = CoincidenceLayer(np.full((4, 1), 0.3), tau_s=20 * tau, dt_s=DT)
    assert slow.run(tr.select([2])).counts[0, 0] == 1


def test_agreeing_sources_fire_more_than_disagreeing_ones():
    # image-like source A (6 inputs) and label-like source B (4 inputs) converge on 5 neurons; either
    # alone stays below threshold (6·0.13 = 0.78, 4·0.13 = 0.52), together they reach 1.3
    rng = np.random.default_rng(5)
    W = np.full((10, 5), 0.13)
    layer = CoincidenceLayer(W, tau_s=1e-3, dt_s=DT)
    volleys = np.arange(8) * 5e-3  # 8 volleys, 5 ms apart
    A = [(k, t) for t in volleys for k in range(6)]

    def trains(offset_s: float) -> SpikeTrains:
        B = [(6 + k, t + offset_s) for t in volleys for k in range(4)]
        i, t = zip(*(A + B), strict=True)
        return SpikeTrains(np.zeros(len(i), int), i, t, 1, 10, 45e-3)

    agree = layer.run(trains(0.0)).counts.sum()
    disagree = layer.run(trains(2.5e-3)).counts.sum()
    assert agree == 8 * 5 and disagree == 0
    # with timing jitter of 0.1 tau agreement still wins clearly
    jit = [layer.run(latency_like_jitter(trains(off), 1e-4, rng)).counts.sum() for off in (0.0, 2.5e-3)]
    assert jit[0] > 20 and jit[1] == 0


def latency_like_jitter(tr: SpikeTrains, sigma: float, rng: np.random.Generator) -> SpikeTrains:
    t = np.clip(tr.time_s + rng.normal(0, sigma, len(tr)), 0, tr.duration_s)
    return SpikeTrains(tr.sample, tr.input, t, tr.n_samples, tr.n_inputs, tr.duration_s)


def random_case(seed: int, n: int = 7):
    rng = np.random.default_rng(seed)
    W = rng.normal(0.1, 0.6, (12, 5))
    bias = np.array([0.0, -0.3, 1.2, 0.4, -1.0])  # neuron 2 fires tonically
    tr = rate_encode(rng.random((n, 12)), 4e-3, 900.0, rng=rng)
    gain = rng.uniform(0.5, 1.5, n)
    return W, bias, tr, gain


@pytest.mark.parametrize("kw", [
    {"reset": "subtract"},
    {"reset": "zero", "refractory_s": 3e-4},
    {"reset": "subtract", "tau_syn_s": 5e-4, "refractory_s": 2e-4},
])
def test_brian2_layer_matches_naive_reference(kw):
    W, bias, tr, gain = random_case(12)
    layer = CoincidenceLayer(W, bias, tau_s=1e-3, dt_s=DT, **kw)
    r = layer.run(tr, gain=gain)
    ref = naive_layer(layer, tr, gain)
    assert sum(map(len, ref)) > 30 and r.counts[:, [0, 1, 3, 4]].sum() > 10  # not only the tonic neuron
    for p in range(tr.n_samples):
        assert spikes_of(r.spikes, p) == ref[p], f"presentation {p}"
        assert r.counts[p].sum() == len(ref[p])


@pytest.mark.parametrize("kw", [{"reset": "subtract", "refractory_s": 2e-4}, {"reset": "zero", "tau_syn_s": 4e-4}])
def test_many_presentations_in_one_run_equal_separate_runs(kw):
    W, bias, tr, gain = random_case(12)
    layer = CoincidenceLayer(W, bias, tau_s=1e-3, dt_s=DT, **kw)
    together = layer.run(tr, gain=gain)
    assert together.parallel == tr.n_samples  # all side by side
    serial = layer.run(tr, gain=gain, parallel=1)  # all one after the other
    mixed = layer.run(tr, gain=gain, parallel=3)  # 3 slots, the last one partly empty
    counts_only = layer.run(tr, gain=gain, parallel=3, keep_spikes=False)
    assert counts_only.spikes is None
    assert together.counts.sum() > 20
    for other in (serial, mixed):
        np.testing.assert_array_equal(other.counts, together.counts)
        np.testing.assert_array_equal(other.spikes.sample, together.spikes.sample)
        np.testing.assert_array_equal(other.spikes.input, together.spikes.input)
        np.testing.assert_allclose(other.spikes.time_s, together.spikes.time_s, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(counts_only.counts, together.counts)
    np.testing.assert_array_equal(together.counts, together.spikes.counts())
    for p in range(tr.n_samples):
        alone = layer.run(tr.select([p]), gain=gain[p:p + 1])
        np.testing.assert_array_equal(alone.counts[0], together.counts[p])
        assert spikes_of(alone.spikes, 0) == spikes_of(together.spikes, p)


def test_goodness_of_counts_and_repeated_input_spikes():
    layer = CoincidenceLayer(np.array([[0.6, 2.5]]), reset="subtract", tau_s=1e-3, dt_s=DT)
    # the same input twice in one time step is one event; the second one is reported as dropped
    tr = SpikeTrains([0, 0, 1], [0, 0, 0], [1e-3, 1.01e-3, 1e-3], 2, 1, 3e-3)
    r = layer.run(tr, gain=np.array([1.0, 2.0]))
    assert r.dropped_input_spikes == 1
    # gain 1: 0.6 → no spike, 2.5 → 2 spikes (v: 2.5 → 1.5 → 0.5 after two steps of decay and reset)
    # gain 2: 1.2 → 1 spike, 5.0 → 4 spikes
    np.testing.assert_array_equal(r.counts, [[0, 2], [1, 4]])
    np.testing.assert_array_equal(r.spike_count, [2, 5])
    np.testing.assert_array_equal(r.goodness("sumsq"), [4.0, 17.0])
    np.testing.assert_array_equal(r.goodness("meansq"), [2.0, 8.5])


def test_from_analog_and_from_crossbar_scale_weights_to_threshold_units():
    W = np.array([[0.2, -0.4], [0.1, 0.3]])
    b = np.array([0.05, -0.1])
    layer = CoincidenceLayer.from_analog(W, b, threshold_drive=0.5)
    np.testing.assert_allclose(layer.weights, W / 0.5)
    np.testing.assert_allclose(layer.bias, b / 0.5)
    chip = Crossbar("pcm", 2, 2, fab_seed=3, rng=0, w_max=1.0)
    chip.program(W)
    layer_c = CoincidenceLayer.from_crossbar(chip, b, threshold_drive=0.5)
    assert not np.array_equal(layer_c.weights, layer.weights)  # device noise carries over
    np.testing.assert_allclose(layer_c.weights, layer.weights, atol=0.3)
    ideal = Crossbar("ideal", 2, 2, fab_seed=3, rng=0, w_max=1.0)
    ideal.program(W)
    np.testing.assert_allclose(CoincidenceLayer.from_crossbar(ideal, threshold_drive=0.5).weights, W / 0.5,
                               atol=1e-6)


@pytest.mark.parametrize(("kw", "match"), [
    ({"weights": np.zeros(3)}, r"CoincidenceLayer.weights must be a non-empty 2-D"),
    ({"weights": np.array([[np.inf]])}, r"CoincidenceLayer.weights must be finite"),
    ({"bias": np.zeros(3)}, r"CoincidenceLayer.bias must be finite with shape \(2,\)"),
    ({"tau_s": 0.0}, r"CoincidenceLayer.tau_s must be a finite number > 0 \(got 0.0\)"),
    ({"tau_s": -1e-3}, r"CoincidenceLayer.tau_s must be a finite number > 0"),
    ({"refractory_s": -1e-3}, r"CoincidenceLayer.refractory_s must be a finite number >= 0"),
    ({"dt_s": 1e-2}, r"CoincidenceLayer.dt_s must not exceed tau_s"),
    ({"tau_syn_s": 2e-3}, r"CoincidenceLayer.tau_syn_s must differ from tau_s"),
    ({"reset": "hold"}, r"CoincidenceLayer.reset must be one of \('zero', 'subtract'\) \(got 'hold'\)"),
    ({"codegen_target": "cpp"}, r"CoincidenceLayer.codegen_target must be one of"),
    ({"max_synapses": 0}, r"CoincidenceLayer.max_synapses must be a positive integer"),
])
def test_layer_bad_arguments_name_the_field(kw, match):
    args = {"weights": np.ones((3, 2))} | kw
    with pytest.raises(ValueError, match=match):
        CoincidenceLayer(args.pop("weights"), **args)


def test_layer_run_bad_arguments():
    layer = CoincidenceLayer(np.ones((3, 2)))
    tr = SpikeTrains([0], [1], [0.0], 2, 3, 1e-3)
    with pytest.raises(ValueError, match=r"trains.n_inputs must equal the layer's n_in=3 \(got 4\)"):
        layer.run(SpikeTrains([0], [1], [0.0], 1, 4, 1e-3))
    with pytest.raises(ValueError, match=r"gain must be finite, >= 0, with shape \(2,\)"):
        layer.run(tr, gain=np.ones(3))
    with pytest.raises(ValueError, match=r"gain must be finite, >= 0"):
        layer.run(tr, gain=np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"parallel must be a positive integer \(got 0\)"):
        layer.run(tr, parallel=0)
    with pytest.raises(ValueError, match=r"trains must be a SpikeTrains"):
        layer.run(np.zeros((2, 3)))


def test_presentations_without_input_spikes_and_empty_sets():
    layer = CoincidenceLayer(np.full((3, 2), 0.3), np.array([0.0, 1.5]), tau_s=1e-3, dt_s=DT)
    r = layer.run(SpikeTrains([], [], [], 2, 3, 1e-3))
    # no input: only the tonic neuron (rest 1.5 > threshold) fires, the same in both presentations
    assert r.counts[:, 0].sum() == 0 and r.counts[0, 1] == r.counts[1, 1] > 0
    empty = layer.run(SpikeTrains([], [], [], 0, 3, 1e-3))
    assert empty.counts.shape == (0, 2) and len(empty.spikes) == 0


def test_cache_dir_is_project_controlled(monkeypatch, tmp_path):
    import brian2

    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert brian2_cache_dir() == tmp_path / ".ffsim_cache" / "brian2"
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "elsewhere"))
    assert brian2_cache_dir() == tmp_path / "elsewhere" / "brian2"
    # the cython target compiles into that folder during a run and leaves Brian2's preferences as they were
    before = (brian2.prefs["codegen.target"], brian2.prefs["codegen.runtime.cython.cache_dir"])
    with _brian2_prefs("cython"):
        assert brian2.prefs["codegen.target"] == "cython"
        assert brian2.prefs["codegen.runtime.cython.cache_dir"] == str(tmp_path / "elsewhere" / "brian2")
        assert (tmp_path / "elsewhere" / "brian2").is_dir()
    assert (brian2.prefs["codegen.target"], brian2.prefs["codegen.runtime.cython.cache_dir"]) == before


def test_runs_in_two_threads_take_turns_with_the_global_prefs():
    """A run in another thread waits until this one has restored Brian2's preferences (they are global)."""
    import threading

    import brian2

    before = brian2.prefs["codegen.target"]
    b_trying, b_inside = threading.Event(), threading.Event()
    seen = []

    def b():
        b_trying.set()
        with _brian2_prefs("cython"):
            b_inside.set()
            seen.append(brian2.prefs["codegen.target"])

    t = threading.Thread(target=b)
    with _brian2_prefs("numpy"):
        t.start()
        assert b_trying.wait(5)
        b_inside.wait(0.3)  # (without the lock, the other run would be inside by now and have set its target)
        assert not b_inside.is_set() and brian2.prefs["codegen.target"] == "numpy"
    t.join(10)
    assert seen == ["cython"] and brian2.prefs["codegen.target"] == before


# ---------------------------------------------------------------------------------------------
# spiking evaluation of FF networks

PIXELS, C = 40, 10


def agreeing_net(layers: tuple[int, ...] = (20,), **cfg_kw) -> tuple[FFNetwork, np.ndarray, np.ndarray]:
    """A network whose hidden unit 2c+r responds to label c together with image block c (pixels 10 + 3c..)
    and is pushed down by the other labels: image and label agree only for the true class."""
    cfg = FFConfig(layers=layers, min_level=len(layers) - 1, **cfg_kw)
    net = FFNetwork(cfg, PIXELS, C, np.random.default_rng(0))
    W = np.full((PIXELS, layers[0]), -0.02, dtype=np.float32)
    for c in range(C):
        for r in range(2):
            j = 2 * c + r
            W[:C, j] = -0.3
            W[c, j] = 0.6
            W[C + 3 * c: C + 3 * c + 3, j] = 0.4
    net.layers[0].store.W[...] = W
    net.layers[0].b[...] = -0.5
    for layer in net.layers[1:]:
        layer.store.W[...] = np.eye(*layer.store.W.shape, dtype=np.float32) * 0.8
        layer.b[...] = 0.0
    labels = np.arange(C).repeat(2)
    x = np.zeros((len(labels), PIXELS), dtype=np.float32)
    for n, c in enumerate(labels):
        x[n, C + 3 * c: C + 3 * c + 3] = [1.0, 0.9, 0.8]
    return net, x, labels


def test_spiking_evaluation_of_an_agreeing_network():
    net, x, labels = agreeing_net()
    ev = evaluate_spiking(net, x, labels, SpikingConfig(threshold_drive=0.1, tau_s=1e-3))
    np.testing.assert_array_equal(ev.analog_scores, net.goodness_scores(x))
    assert ev.error_analog == 0.0 and ev.error_spiking == 0.0 and ev.agreement == 1.0
    # the true label's spike goodness is the largest, by a margin
    true = ev.spike_scores[np.arange(len(labels)), labels]
    other = np.where(np.eye(C, dtype=bool)[labels], -1, ev.spike_scores).max(axis=1)
    assert np.all(true > other + 10)
    assert ev.spike_scores.shape == (len(labels), C) and ev.layer_spikes.shape == (1, len(labels), C)
    # a label that disagrees with the image is scored lower than the one that agrees, also by plain counts
    assert ev.error_count == 0.0
    # the score is the layer's Σ counts² (the network's goodness kind) of the coincidence layer's counts
    layer = spiking_layers(net, SpikingConfig(threshold_drive=0.1, tau_s=1e-3))[0]
    np.testing.assert_allclose(layer.weights, net.layers[0].store.W / 0.1, rtol=1e-6)


def test_latency_code_normalizes_the_input_its_spikes_deliver():
    # a latency volley delivers every spiking pixel's whole weight whatever its intensity: images that spike
    # on the same pixels are the same input to the layer, and get the same gain and the same spike scores
    net, x, labels = agreeing_net()
    cfg = SpikingConfig(threshold_drive=0.1, tau_s=1e-3)
    full = evaluate_spiking(net, (x > 0).astype(np.float32), labels, cfg)
    dim = evaluate_spiking(net, 0.3 * x, labels, cfg)
    np.testing.assert_array_equal(dim.layer_spikes, full.layer_spikes)
    assert full.layer_spikes.sum() > 0


def test_spiking_evaluation_chains_layers_and_scores_from_min_level():
    net, x, labels = agreeing_net((20, 20))
    cfg = SpikingConfig(threshold_drive=0.1, tau_s=1e-3)
    ev = evaluate_spiking(net, x, labels, cfg)
    assert ev.layer_spikes.shape == (2, len(labels), C)
    assert ev.layer_spikes[1].sum() > 0  # spikes of layer 0 drive layer 1
    np.testing.assert_array_equal(ev.spike_scores, ev.layer_goodness[1])  # min_level = 1: the first is skipped
    assert ev.error_spiking == 0.0
    ev0 = evaluate_spiking(net, x, labels, SpikingConfig(threshold_drive=0.1, tau_s=1e-3, from_layer=0,
                                                         batch_images=7))
    np.testing.assert_array_equal(ev0.layer_spikes, ev.layer_spikes)  # batching changes nothing
    np.testing.assert_array_equal(ev0.spike_scores, ev.layer_goodness.sum(axis=0))


def test_spiking_evaluation_with_rate_code_and_jitter_is_reproducible():
    net, x, labels = agreeing_net()
    cfg = SpikingConfig(encoding="rate", window_s=20e-3, max_rate_hz=300.0, threshold_drive=0.1, tau_s=3e-3)
    a = evaluate_spiking(net, x, labels, cfg, rng=np.random.default_rng(7))
    b = evaluate_spiking(net, x, labels, cfg, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.spike_scores, b.spike_scores)
    assert a.error_spiking <= 0.1
    jit = SpikingConfig(jitter_s=1e-4, tau_syn_s=1e-3, tau_s=3e-3, threshold_drive=0.1)
    assert evaluate_spiking(net, x, labels, jit, rng=np.random.default_rng(8)).error_spiking == 0.0


def test_chip_backed_network_uses_read_weights():
    net, x, labels = agreeing_net(mode="hybrid", profile="pcm", w_max_scale=8.0)
    net.layers[0].store.chip.program(net.layers[0].store.W)
    (W_chip, _), = layer_weights(net)
    (W_float, _), = layer_weights(net, "float")
    assert not np.array_equal(W_chip, W_float)
    np.testing.assert_allclose(W_chip, W_float, atol=0.25)
    with pytest.raises(ValueError, match=r"weight_source 'chip': layer 0 has no chip"):
        layer_weights(agreeing_net()[0], "chip")


@pytest.mark.parametrize(("kw", "match"), [
    ({"encoding": "burst"}, r"encoding = 'burst': must be one of \('latency', 'rate'\)"),
    ({"window_s": -1.0}, r"window_s = -1.0: must be a finite number > 0"),
    ({"threshold_drive": 0.0}, r"threshold_drive = 0.0: must be a finite number > 0"),
    ({"reset": "hold"}, r"reset = 'hold': must be one of"),
    ({"batch_images": 0}, r"batch_images = 0: must be an int >= 1"),
    ({"tau_syn_s": -1e-3}, r"tau_syn_s = -0.001: must be a finite number >= 0"),
    ({"codegen_target": "cpp"}, r"codegen_target = 'cpp'"),
    ({"weight_source": "disk"}, r"weight_source = 'disk'"),
    ({"from_layer": -1}, r"from_layer = -1"),
])
def test_spiking_config_bad_fields(kw, match):
    with pytest.raises(ValueError, match=match):
        SpikingConfig(**kw)


def test_spiking_evaluation_bad_inputs():
    net, x, labels = agreeing_net()
    with pytest.raises(ValueError, match=r"x must hold intensities in \[0, 1\]"):
        evaluate_spiking(net, x * 2, labels)
    with pytest.raises(ValueError, match=r"x must have shape \(n_images, 40\)"):
        evaluate_spiking(net, x[:, :30], labels)
    with pytest.raises(ValueError, match=r"labels must be 20 class indices in \[0, 10\)"):
        evaluate_spiking(net, x, labels + 5)
    with pytest.raises(ValueError, match=r"rng must be a numpy.random.Generator for encoding 'rate'"):
        evaluate_spiking(net, x, labels, SpikingConfig(encoding="rate"))
    with pytest.raises(ValueError, match=r"from_layer must be in \[0, 0\] \(got 1\)"):
        evaluate_spiking(net, x, labels, SpikingConfig(from_layer=1))
