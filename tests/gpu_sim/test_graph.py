"""CUDA-graph replay of the FF step (``ffsim.gpu.graph``), with an emulated capture on the CUDA simulator.

``graph_emulation`` records the step's array operations and numba-cuda launches and replays them on the
same arrays, as a CUDA graph does (fixed pointers and scalars).  A replayed step must equal the step run
directly, bit for bit: statistics, chip and layer states, operation counters.  That holds only if the step
keeps its state in place, reads its keys from the tape, zeroes its counters within the graph and decides
nothing on the host from device values -- what a real capture needs as well.
"""

from __future__ import annotations

import numpy as np
import pytest

from ffsim import backend
from ffsim.ff import FFConfig
from ffsim.ff.trainer import build_model
from ffsim.gpu import graph
from tests.gpu_sim.graph_emulation import RECORDING, EmulatedCapturer, recording_launches


@pytest.fixture
def gpu_recording(monkeypatch):
    monkeypatch.setitem(backend._cache, "gpu", RECORDING)
    monkeypatch.setenv(backend.ENV_VAR, "gpu")
    graph._warned.clear()
    with recording_launches():
        yield


B = 4  # mini-batch (the simulator runs a Python thread per CUDA thread: small everything)


def _model(profile: str, mode: str, layers=(4, 4), seed: int = 3, negatives: str = "hard"):
    cfg = FFConfig(layers=layers, epochs=1, batch_size=B, profile=profile, mode=mode, seed=seed, negatives=negatives)
    return build_model(cfg, 12, 10)


def _data(steps: int, batch: int = B, pixels: int = 12):
    rng = np.random.default_rng(7)
    x = rng.random((batch * steps, pixels)).astype(np.float32)
    y = rng.integers(0, 10, size=batch * steps)
    return RECORDING.asarray(x), y


def _same_stats(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


_ATOMIC_SUMS = ("rowsum",)  # summed by float atomics in the order the simulator's threads run


def _same_models(a, b) -> None:
    sa, sb = a.state(), b.state()
    assert sa.keys() == sb.keys()
    for k in sa:
        if k.endswith(_ATOMIC_SUMS):  # equal to the rounding of the additions' order
            np.testing.assert_allclose(np.asarray(sa[k]), np.asarray(sb[k]), rtol=1e-12, atol=0, err_msg=k)
        else:
            np.testing.assert_array_equal(np.asarray(sa[k]), np.asarray(sb[k]), err_msg=k)
    oa, ob = a.ops().as_dict(), b.ops().as_dict()
    np.testing.assert_allclose(oa.pop("read_charge_S_s"), ob.pop("read_charge_S_s"), rtol=1e-12, atol=0)  # (NaN = NaN)
    assert oa == ob


def _run_both(direct, replayed, steps: int, gains=None, batch: int = B, pixels: int = 12):
    x, y = _data(steps, batch, pixels)
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    for s in range(steps):
        g = 1.0 if gains is None else gains[s]
        sl = slice(s * batch, (s + 1) * batch)
        _same_stats(direct.train_step(x[sl], y[sl], rng_a, g), replayed.train_step(x[sl], y[sl], rng_b, g))
    _same_models(direct, replayed)


@pytest.mark.parametrize(("profile", "mode", "negatives"), [("pcm", "insitu", "hard"), ("ideal", "ideal", "hard"),
                                                            ("ecram", "insitu", "uniform")])
def test_replayed_steps_equal_the_direct_steps(gpu_recording, profile, mode, negatives):
    direct = _model(profile, mode, negatives=negatives)
    replayed = _model(profile, mode, negatives=negatives)
    cap = EmulatedCapturer()
    runner = graph.runner_for(replayed, replayed._device_step, capturer=cap)
    _run_both(direct, replayed, steps=4)
    # the first step of a shape runs directly (compiles, checks layouts); then one capture, three launches
    assert (runner.captures, runner.replays, cap.launches) == (1, 3, 3)
    assert graph.record(replayed) == {"captures": 1, "replays": 3} and graph.record(direct) is None


@pytest.mark.parametrize(("model", "profile", "mode", "negatives"), [
    ("ff-recurrent", "pcm", "insitu", "hard"), ("ff-recurrent", "ideal", "ideal", "uniform"),
    ("ff-unsupervised", "pcm", "insitu", "hard"), ("ff-unsupervised", "ecram", "insitu", "hard")])
def test_recurrent_and_unsupervised_steps_replay_as_the_direct_steps(gpu_recording, model, profile, mode, negatives):
    """The recurrent network's step (label clamped on top, iterations, hard negatives drawn on the device from
    host uniforms) and the unsupervised one (hybrids drawn on the host, uploaded with the labels) are captured
    and replayed like the supervised step: the same statistics, states and counts as the direct steps."""
    def make():
        cfg = FFConfig(model=model, layers=(4, 4), epochs=1, batch_size=B, profile=profile, mode=mode, seed=3,
                       negatives=negatives, recurrent_iters=2, recurrent_eval_iters=(1, 2), head_layers=2)
        return build_model(cfg, 16, 10)

    direct, replayed = make(), make()
    cap = EmulatedCapturer()
    runner = graph.runner_for(replayed, replayed._device_step, capturer=cap)
    _run_both(direct, replayed, steps=4, pixels=16)
    assert (runner.captures, runner.replays, cap.launches) == (1, 3, 3)


def test_steps_submitted_ahead_of_their_statistics_equal_the_direct_steps(gpu_recording):
    """``submit_step`` queues a replay and reads its statistics later (how ``ffsim train`` keeps one step in
    flight): each step's statistics are its own (copied out in stream order, before the next replay
    overwrites the graph's buffer), also where every step is submitted before any is read.  A non-finite
    input surfaces at its own step's ``stats()``, and the steps after it equal the direct ones."""
    from ffsim.crossbar import NonFiniteInput

    direct, replayed = _model("pcm", "insitu"), _model("pcm", "insitu")
    cap = EmulatedCapturer()
    runner = graph.runner_for(replayed, replayed._device_step, capturer=cap)
    x, y = _data(6)
    x = x.copy()
    x[4 * B + 1] = np.nan  # mini-batch 4, one case
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    expected = []
    for s in range(6):
        sl = slice(s * B, (s + 1) * B)
        try:
            expected.append(direct.train_step(x[sl], y[sl], rng_a, 1.0))
        except NonFiniteInput as e:
            expected.append(e)
    submitted = [replayed.submit_step(x[s * B:(s + 1) * B], y[s * B:(s + 1) * B], rng_b, 1.0) for s in range(6)]
    assert (runner.captures, runner.replays, cap.downloads) == (1, 5, 5)  # step 0 direct, then replays
    assert isinstance(expected[4], NonFiniteInput)
    for s, (want, got) in enumerate(zip(expected, submitted, strict=True)):
        if isinstance(want, Exception):
            with pytest.raises(NonFiniteInput, match="NaN or inf"):
                got.stats()
        else:
            _same_stats(want, got.stats())
            assert got.stats() is got.stats(), s  # read once
    _same_models(direct, replayed)


def test_a_new_gain_is_captured_again(gpu_recording):
    direct, replayed = _model("pcm", "insitu"), _model("pcm", "insitu")
    runner = graph.runner_for(replayed, replayed._device_step, capturer=EmulatedCapturer())
    _run_both(direct, replayed, steps=4, gains=[1.0, 1.0, 0.5, 0.5])
    assert (runner.captures, runner.replays) == (2, 3)


def test_a_model_changed_between_steps_is_captured_again(gpu_recording):
    """Time passes on the chips between mini-batches (drift, read noise grow: ``Crossbar.advance``): the
    graph's baked-in read-noise factor is stale, so the next step is captured again."""
    direct, replayed = _model("pcm", "insitu"), _model("pcm", "insitu")
    runner = graph.runner_for(replayed, replayed._device_step, capturer=EmulatedCapturer())
    _run_both(direct, replayed, steps=2)
    for m in (direct, replayed):
        for layer in m.layers:
            layer.store.chip.advance(3600.0)
    _run_both(direct, replayed, steps=3)
    assert (runner.captures, runner.replays) == (2, 3)  # the step after the change runs directly


def test_distillation_targets_run_without_a_graph(gpu_recording):
    m = _model("ideal", "ideal")
    runner = graph.runner_for(m, m._device_step, capturer=EmulatedCapturer())
    x, y = _data(3)
    t = np.full((B, 10), 0.1, dtype=np.float32)
    for s in range(3):
        m.train_step(x[s * B:(s + 1) * B], y[s * B:(s + 1) * B], np.random.default_rng(s), 1.0, head_targets=t)
    assert runner.captures == 0 and runner.replays == 0


def _sabotaged(model, what: str):
    """The model's device step with something a graph cannot replay."""
    body = model._device_step
    chip = model.layers[0].store.chip

    def step(x, up, gain):
        if what == "host draw":
            chip._rng.random()  # host randomness inside the step
        S = body(x, up, gain)
        if what == "new state":
            model.layers[0].store.chip._rowsum = model.layers[0].store.chip._rowsum.copy()  # state not in place
        if what == "flag":
            chip._updates_since_refresh += 1  # a host value the next step would branch on
        return S
    return step


@pytest.mark.parametrize(("what", "reason"), [("host draw", "generator drew more"),
                                              ("new state", "_rowsum changed"),
                                              ("flag", "_updates_since_refresh changed")])
def test_a_step_that_cannot_be_replayed_runs_directly_and_unchanged(gpu_recording, what, reason):
    direct, replayed = _model("pcm", "insitu"), _model("pcm", "insitu")
    runner = graph.runner_for(replayed, _sabotaged(replayed, what), capturer=EmulatedCapturer())
    with pytest.warns(RuntimeWarning, match=reason):
        _run_both(direct, replayed, steps=5)
    # the failed captures were undone (generators, attributes, counters): the steps are the direct ones;
    # after three tries the step is no longer captured
    assert runner.captures == 0 and runner.replays == 0 and list(runner._failed.values()) == [3]


def test_a_transfer_inside_the_step_stops_the_capture(gpu_recording):
    direct, replayed = _model("pcm", "insitu"), _model("pcm", "insitu")
    body = replayed._device_step

    def step(x, up, gain):
        S = body(x, up, gain)
        float(S[0, 0])  # a host read of a device value
        return S
    runner = graph.runner_for(replayed, step, capturer=EmulatedCapturer())
    with pytest.warns(RuntimeWarning, match="read on the host during a capture"):
        _run_both(direct, replayed, steps=3)
    assert runner.captures == 0


def test_an_operation_sized_by_the_data_stops_the_capture(gpu_recording):
    direct, replayed = _model("pcm", "insitu"), _model("pcm", "insitu")
    body = replayed._device_step

    def step(x, up, gain):
        S = body(x, up, gain)
        S[0][S[0] > 0]  # a boolean mask's gather: CuPy reads the count back to size it
        return S
    runner = graph.runner_for(replayed, step, capturer=EmulatedCapturer())
    with pytest.warns(RuntimeWarning, match="size depends on the data"):
        _run_both(direct, replayed, steps=3)
    assert runner.captures == 0


def test_graphs_stay_off_without_a_capture(monkeypatch, gpu_recording):
    monkeypatch.setattr(graph, "ENABLED", True)
    m = _model("ideal", "ideal")
    assert graph.runner_for(m, m._device_step) is None  # the simulator has no stream capture
