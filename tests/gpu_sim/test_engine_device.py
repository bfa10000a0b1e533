"""The FF engine on the GPU backend: a mini-batch stays on the device, without a GPU.

The GPU backend's ``xp`` is the strict CuPy stand-in of ``test_device_discipline`` (device arrays that
refuse to meet host arrays): a whole ``train_step`` (embedding, bottom-up passes, goodness, softmax head,
negative sampling, updates, hybrid re-programming) and the evaluations run on it without mixing, and give
the CPU model's statistics, states and predictions bit for bit (same seeds, same host draws).  A whole
``train`` (data moved to the device once, device batches, evaluation, checkpoint) gives the CPU run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ffsim import backend
from ffsim.backend import ENV_VAR
from ffsim.ff.config import FFConfig
from ffsim.ff.trainer import build_model, train

from .test_device_discipline import STRICT, XP, Device, _make

# what the engine asks of xp beyond the Crossbar's needs
for _n in ("einsum", "eye", "full", "arange", "log", "log1p", "cumsum", "stack", "zeros_like"):
    setattr(XP, _n, _make(getattr(np, _n)))

PCM_TINY = {"tile": {"rows": 8, "cols": 5}, "update": {"max_pulses": 12}}


@pytest.fixture
def strict_gpu(monkeypatch):
    """``backend='gpu'`` (and $FFSIM_BACKEND=gpu) selects the strict stand-in."""
    monkeypatch.setattr(backend, "_cache", {"gpu": STRICT})
    monkeypatch.setenv(ENV_VAR, "gpu")
    return monkeypatch


def _data(n=40, side=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = (rng.random((n, side * side)) + 0.2 * (y[:, None] % 3)).astype(np.float32)
    return x, y


def _models(monkeypatch, seed=3, **kw):
    cfg = FFConfig(layers=(7, 6), batch_size=6, seed=seed, **kw)
    monkeypatch.setenv(ENV_VAR, "cpu")
    cpu = build_model(cfg, 16, 10)
    monkeypatch.setenv(ENV_VAR, "gpu")
    gpu = build_model(cfg, 16, 10)
    return cpu, gpu


def _steps(model, x, y, distill=False):
    rng, extra = np.random.default_rng(11), np.random.default_rng(12)
    out = []
    for b in range(3):
        sl = slice(6 * b, 6 * (b + 1))
        kw = {}
        if distill:
            kw = {"head_targets": extra.dirichlet(np.ones(10), 6), "negative_probs": extra.dirichlet(np.ones(10), 6),
                  "head_temperature": 2.0 if b == 2 else 1.0}
        out.append(model.train_step(x[sl], y[sl], rng, 0.8, **kw))
    return out


def _assert_same(cpu, gpu, x, y, distill=False):
    s_cpu, s_gpu = _steps(cpu, x, y, distill), _steps(gpu, x, y, distill)
    for a, b in zip(s_cpu, s_gpu, strict=True):
        assert a.keys() == b.keys()
        for k, v in a.items():
            assert type(b[k]) is type(v), k
            np.testing.assert_array_equal(b[k], v, err_msg=k)
    st_cpu, st_gpu = cpu.state(), gpu.state()
    assert st_cpu.keys() == st_gpu.keys()
    for k, v in st_cpu.items():
        assert type(st_gpu[k]) is np.ndarray, k
        np.testing.assert_array_equal(st_gpu[k], v, err_msg=k)
    for name in ("predict_softmax", "goodness_scores"):
        if hasattr(cpu, name):
            r = getattr(gpu, name)(x[:4])
            assert type(r) is np.ndarray
            np.testing.assert_array_equal(r, getattr(cpu, name)(x[:4]))
    assert gpu.evaluate(x[:12], y[:12], batch=8) == cpu.evaluate(x[:12], y[:12], batch=8)


@pytest.mark.parametrize(("mode", "profile"), [("hybrid", "pcm"), ("insitu", "pcm"), ("ideal", "ideal")])
def test_ff_train_step_stays_on_the_device(strict_gpu, mode, profile):
    over = PCM_TINY if profile != "ideal" else {}
    cpu, gpu = _models(strict_gpu, mode=mode, profile=profile, profile_overrides=over)
    assert gpu.backend is STRICT and cpu.backend.name == "cpu"
    layer = gpu.layers[0]
    assert all(isinstance(v, Device) for v in (layer.b, layer.b_grad, layer.mean_act, *gpu.head.W, *gpu.head.grad))
    if mode == "hybrid":
        assert all(isinstance(v, Device) for v in (layer.store.W, layer.store.written, layer.store.opt.grad))
    x, y = _data()
    _assert_same(cpu, gpu, x, y)
    # device images are accepted as well (what the trainer passes)
    r = np.random.default_rng(1)
    stats = gpu.train_step(STRICT.to_device(x[:6]), y[:6], r, 1.0)
    assert isinstance(stats["loss"], float) and type(stats["negative_labels"]) is np.ndarray


def test_ff_train_step_refuses_nan_on_the_device_as_on_the_cpu(strict_gpu):
    """A NaN image reaches the chips' updates: the CPU refuses before the updates, the device flags it while
    planning them and the step raises the same error with its statistics (no transfer in between).  The
    chips' read-charge counters stay finite."""
    from ffsim.crossbar import NonFiniteInput

    cpu, gpu = _models(strict_gpu, mode="insitu", profile="pcm", profile_overrides=PCM_TINY)
    x, y = _data()
    x[2] = np.nan
    for model in (cpu, gpu):
        with pytest.raises(NonFiniteInput, match="NaN or inf"):
            model.train_step(x[:6], y[:6], np.random.default_rng(11), 0.8)
        assert all(np.isfinite(model.backend.to_host(layer.store.chip._g)).all() for layer in model.layers)
        charges = [layer.store.chip.ops.read_charge_S_s for layer in model.layers]
        assert all(np.isfinite(c) and c > 0 for c in charges), charges  # the NaN image counts no charge


def test_ff_distillation_arguments_on_the_device(strict_gpu):
    cpu, gpu = _models(strict_gpu)  # the engine's part of distillation; ideal weights keep the simulator quick
    x, y = _data()
    _assert_same(cpu, gpu, x, y, distill=True)


@pytest.mark.parametrize("kw", [{"negatives": "uniform", "label_mode": "concat", "goodness": "meansq", "norm": "l2"},
                                {"model": "ff-recurrent", "recurrent_iters": 2, "recurrent_eval_iters": (1, 2)},
                                {"model": "ff-unsupervised", "mode": "insitu", "profile": "pcm",
                                 "profile_overrides": PCM_TINY}])
def test_other_ff_models_on_the_device(strict_gpu, kw):
    cpu, gpu = _models(strict_gpu, **kw)
    x, y = _data()
    _assert_same(cpu, gpu, x, y)


def _dataset(path):
    x, y = _data(40, seed=2)
    xt, yt = _data(10, seed=3)
    np.savez(path, x_train=(x.reshape(-1, 4, 4) * 100).astype(np.uint8), y_train=y.astype(np.uint8),
             x_test=(xt.reshape(-1, 4, 4) * 100).astype(np.uint8), y_test=yt.astype(np.uint8))
    return str(path)


@pytest.mark.parametrize(("model", "mode"), [("ff", "hybrid"), ("ff", "ideal"), ("bp", "ideal"),
                                           ("ff-unsupervised", "ideal")])
def test_training_run_on_the_device_equals_the_cpu_run(strict_gpu, tmp_path, model, mode):
    data = _dataset(tmp_path / "d.npz")
    cfg = FFConfig(model=model, layers=(6, 6), batch_size=20, epochs=1, eval_train_cases=10, mode=mode,
                   profile="pcm" if mode != "ideal" else "ideal", profile_overrides=PCM_TINY if mode != "ideal" else {})
    res = {}
    for name in ("cpu", "gpu"):
        strict_gpu.setenv(ENV_VAR, name)
        res[name] = train(cfg, tmp_path / name, dataset=data, progress=False, log=lambda m: None)
    from ffsim.gpu import settings

    assert res["gpu"]["backend"] == {"weights": "gpu", "simulated": True, "engine": "gpu", "requested": "gpu",
                                     "gpu_settings": settings()}
    assert res["cpu"]["backend"]["engine"] == "cpu"
    for a, b in zip(res["cpu"]["history"], res["gpu"]["history"], strict=True):
        for k, v in a.items():
            if k.endswith("_time_s"):
                continue
            if "energy" in k or "latency" in k:  # per-row sums in another order: equal to rounding
                assert abs(b[k] - v) <= 1e-9 * abs(v), k
            else:
                assert b[k] == v, k
    # the checkpoint is numpy and resumable on the CPU
    ck = json.loads((tmp_path / "gpu" / "checkpoint.json").read_text())
    assert ck["epoch"] == 1
    with np.load(tmp_path / "gpu" / "checkpoint.npz") as a, np.load(tmp_path / "cpu" / "checkpoint.npz") as b:
        model_keys = sorted(k for k in b.files if k.startswith("model."))
        assert sorted(k for k in a.files if k.startswith("model.")) == model_keys
        for k in model_keys:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize(("mode", "profile"), [("insitu", "pcm"), ("model", "pcm"), ("ideal", "ideal")])
def test_bp_train_step_stays_on_the_device(strict_gpu, mode, profile):
    over = PCM_TINY if profile != "ideal" else {}
    cpu, gpu = _models(strict_gpu, model="bp", mode=mode, profile=profile, profile_overrides=over)
    assert gpu.backend is STRICT and isinstance(gpu.layers[0].b, Device)
    if mode != "insitu":
        assert isinstance(gpu.layers[0].store.W, Device)
    x, y = _data()
    _assert_same(cpu, gpu, x, y)


@pytest.mark.parametrize("mode", ["ideal", "insitu"])
def test_spiking_evaluation_of_a_network_on_the_device(strict_gpu, mode):
    """The spiking twin of a network whose weights and engine live on the device (CuPy arrays on a GPU)
    reads them through the backend and scores as the CPU network's twin does."""
    from ffsim.spiking.ff_bridge import SpikingConfig, evaluate_spiking, layer_weights

    kw = {"profile": "pcm", "profile_overrides": PCM_TINY} if mode == "insitu" else {}
    cpu, gpu = _models(strict_gpu, mode=mode, **kw)
    x, y = _data(n=3)
    x = x / x.max()
    for (wc, bc), (wg, bg) in zip(layer_weights(cpu), layer_weights(gpu), strict=True):
        assert type(wg) is np.ndarray and type(bg) is np.ndarray
        if mode == "ideal":  # a chip's read_weights is a fresh noisy measurement on each
            np.testing.assert_array_equal(wg, wc)
        np.testing.assert_array_equal(bg, bc)
    cfg = SpikingConfig(threshold_drive=0.1, tau_s=1e-3, weight_source="float" if mode == "ideal" else "auto")
    ev_c, ev_g = evaluate_spiking(cpu, x, y, cfg), evaluate_spiking(gpu, x, y, cfg)
    assert type(ev_g.spike_scores) is np.ndarray
    np.testing.assert_array_equal(ev_g.analog_scores, ev_c.analog_scores)
    if mode == "ideal":
        np.testing.assert_array_equal(ev_g.spike_scores, ev_c.spike_scores)


def test_recurrent_spiking_evaluation_of_a_network_on_the_device(strict_gpu):
    from ffsim.spiking.ff_bridge import SpikingConfig
    from ffsim.spiking.recurrent import evaluate_spiking_recurrent

    cpu, gpu = _models(strict_gpu, model="ff-recurrent", recurrent_iters=2, recurrent_eval_iters=(1, 2))
    x, y = _data(n=2)
    x = x / x.max()
    cfg = SpikingConfig(threshold_drive=0.1, tau_s=1e-3, encoding="latency")
    ev_c, ev_g = evaluate_spiking_recurrent(cpu, x, y, cfg), evaluate_spiking_recurrent(gpu, x, y, cfg)
    np.testing.assert_array_equal(ev_g.spike_scores, ev_c.spike_scores)
    np.testing.assert_array_equal(ev_g.analog_scores, ev_c.analog_scores)


@pytest.mark.parametrize("mode", ["insitu", "hybrid"])
def test_mortal_weight_copy_on_the_device(strict_gpu, mode):
    """Weight copy from one chip network into another (read back, programmed) with both on the device:
    the student ends as the CPU student does, bit for bit."""
    from ffsim.mortal.transfer import copy_weights

    kw = {"mode": mode, "profile": "pcm", "profile_overrides": PCM_TINY}
    (cpu_t, gpu_t), (cpu_s, gpu_s) = _models(strict_gpu, **kw), _models(strict_gpu, seed=4, **kw)
    x, y = _data()
    _steps(cpu_t, x, y)
    _steps(gpu_t, x, y)
    copy_weights(cpu_t, cpu_s)
    copy_weights(gpu_t, gpu_s)
    st_cpu, st_gpu = cpu_s.state(), gpu_s.state()
    for k, v in st_cpu.items():
        np.testing.assert_array_equal(st_gpu[k], v, err_msg=k)
    np.testing.assert_array_equal(gpu_s.predict_softmax(x[:4]), cpu_s.predict_softmax(x[:4]))
