"""The chips of an FF step updated on streams of their own (``ffsim.gpu.streams``), on emulated streams.

The emulation (``stream_emulation.py``) checks every array access against a happens-before order, so a
lane that read its inputs before the fork, or a later operation that read a lane's results before the
join, raises :class:`Race`; the kernels run in the CUDA simulator.  The results must equal those of one
stream bit for bit (the lanes change the order of independent work only).
"""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np
import pytest

from ffsim import Crossbar, load_profile
from ffsim import backend as _backend
from ffsim.gpu import streams
from tests.gpu_sim.stream_emulation import EMU_BOX, TRACKED, Emulation, Race, track_launches


@pytest.fixture
def emulated(monkeypatch):
    """Lanes on (with the emulated stream API), launches tracked; yields a function that turns them off."""
    emu = Emulation()
    EMU_BOX.append(emu)
    monkeypatch.setattr(streams, "API", emu)
    monkeypatch.setattr(streams, "ENABLED", True)
    monkeypatch.setattr(streams, "_local", threading.local())
    with track_launches():
        yield emu
    EMU_BOX.remove(emu)


def _chips(n=3, name="pcm"):
    prof = load_profile(name).replace(tile={"rows": 4, "cols": 3}, update={"max_pulses": 12})
    chips = [Crossbar(prof, 7, 5 + k, fab_seed=k, rng=10 + k, backend=TRACKED) for k in range(n)]
    rng = np.random.default_rng(3)
    for c in chips:
        c.program(rng.uniform(-0.6, 0.6, c.shape).astype(np.float32))
    return chips


def _updates(chips, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 7)).astype(np.float32)
    return [(c, TRACKED.asarray(x), TRACKED.asarray(0.4 * rng.standard_normal((6, c.out_features))
                                                   .astype(np.float32)), 0.3) for c in chips]


def _state(chips):
    """(what must be equal bit for bit: conductances, write noise, weight caches, integer counts; what is
    summed by atomics in the simulator's thread order: per-row conductance sums, float counters)."""
    exact, summed = [], []
    for c in chips:
        exact += [TRACKED.to_host(a) for a in (c._g, c._wn, c._W)]
        ops = c.ops.as_dict()
        exact.append(np.array(sorted((k, v) for k, v in ops.items() if not isinstance(v, float)), dtype=object))
        summed += [TRACKED.to_host(c._rowsum), np.array([v for _, v in sorted(ops.items()) if isinstance(v, float)])]
    return exact, summed


def _same(a, b):
    for x, y in zip(a[0], b[0], strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a[1], b[1], strict=True):  # (atomics add in the order the simulator's threads run)
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=0)


def test_lanes_give_the_one_stream_results_in_order(emulated, monkeypatch):
    got = {}
    for on in (True, False):
        monkeypatch.setattr(streams, "ENABLED", on)
        chips = _chips()
        x = TRACKED.asarray(np.random.default_rng(5).standard_normal((3, 7)).astype(np.float32))
        for s in range(3):
            Crossbar.pulse_updates(_updates(chips, s))
            [c.forward(x) for c in chips]  # on the main stream: after the join
        got[on] = _state(chips)
        assert all(c.ops.as_dict()["device_pulses"] > 0 for c in chips)
        if on:
            lanes = [s for s in emulated.made if s.ops]
            assert len(lanes) == 3, "each chip's update ran on a lane of its own"
            assert all(s.ops >= 5 for s in lanes)
    _same(got[True], got[False])


def test_lanes_are_not_used_for_one_update_or_off(emulated, monkeypatch):
    chips = _chips(1)
    Crossbar.pulse_updates(_updates(chips, 0))
    assert not emulated.made
    monkeypatch.setattr(streams, "ENABLED", False)
    chips = _chips(2)
    Crossbar.pulse_updates(_updates(chips, 0))
    assert not emulated.made


@contextlib.contextmanager
def _broken_lanes(n, fork=True, join=True):
    api = streams.API
    main = api.get_current_stream()
    ss = streams._streams(api, n)
    if fork:
        ev = main.record()
        for s in ss:
            s.wait_event(ev)
    yield lambda k: ss[k]
    if join:
        for s in ss:
            main.wait_event(s.record())


@pytest.mark.parametrize("missing", ["fork", "join"])
def test_the_emulation_catches_a_missing_fork_or_join(emulated, monkeypatch, missing):
    chips = _chips(2)
    ups = _updates(chips, 1)
    monkeypatch.setattr(streams, "lanes", lambda n: _broken_lanes(n, fork=missing != "fork",
                                                                  join=missing != "join"))
    flag = TRACKED.asarray(np.zeros(1))  # (no flag read in the middle: it would synchronize the host)
    with pytest.raises(Race):
        Crossbar.pulse_updates(ups, nonfinite=flag)
        [c.forward(ups[0][1]) for c in chips]  # (reads what the lanes wrote)


@pytest.mark.parametrize("model", ["ff", "ff-recurrent"])
def test_ff_steps_on_lanes_equal_the_one_stream_steps(emulated, monkeypatch, model):
    from ffsim.ff import FFConfig
    from ffsim.ff.trainer import build_model

    monkeypatch.setitem(_backend._cache, "gpu", TRACKED)
    monkeypatch.setitem(os.environ, _backend.ENV_VAR, "gpu")
    over = {"tile": {"rows": 8, "cols": 6}, "update": {"max_pulses": 8}}
    rng = np.random.default_rng(0)
    x = rng.random((8, 16)).astype(np.float32)
    y = np.arange(8) % 10
    got = {}
    for on in (True, False):
        monkeypatch.setattr(streams, "ENABLED", on)
        cfg = FFConfig(model=model, layers=(6, 6, 6), epochs=1, batch_size=4, profile="pcm", mode="insitu", seed=0,
                       profile_overrides=over, recurrent_iters=2, recurrent_eval_iters=(2,))
        net = build_model(cfg, 16, 10)
        r = np.random.default_rng(1)
        stats = [net.train_step(x[s * 4:(s + 1) * 4], y[s * 4:(s + 1) * 4], r, 1.0) for s in range(2)]
        got[on] = (stats, _state([layer.store.chip for layer in net.layers]))
        if on:
            assert sum(1 for s in emulated.made if s.ops) == 3
    for a, b in zip(got[True][0], got[False][0], strict=True):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    _same(got[True][1], got[False][1])
