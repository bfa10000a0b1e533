"""Host/device discipline of the Crossbar on the GPU backend, without a GPU.

Under the CUDA simulator the GPU backend's arrays are numpy arrays, so code that mixes host and device
arrays (which CuPy refuses: no implicit conversion) would pass unnoticed.  Here the backend's ``xp`` is a
strict stand-in for CuPy: its arrays are a numpy subclass that refuses to meet a host array in any
operation or assignment, and moves only through ``asarray`` / ``asnumpy``.  A chip driven through its
whole life on it must give the CPU chip's results, bit for bit.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ffsim import Crossbar, load_profile
from ffsim.backend import Backend
from ffsim.gpu.standin import StandIn, raw


class Device(StandIn):
    """An array 'on the device': mixing it with a host ndarray (not a scalar) raises TypeError."""

    @classmethod
    def _operate(cls, name, fn, args, kwargs, result=True):
        _refuse_host(name, *args, *kwargs.values())
        return super()._operate(name, fn, args, kwargs, result)


def _refuse_host(what, *objs):
    for a in objs:
        if type(a) is np.ndarray and a.ndim > 0 and a.size > 1:
            raise TypeError(f"{what}: a host array {a.shape} meets a device array")
        if isinstance(a, tuple | list):
            _refuse_host(what, *a)


def _make(f):
    def g(*args, **kwargs):
        return Device._operate(f.__name__, f, args, kwargs)
    return g


XP = SimpleNamespace(ndarray=Device,
                     asarray=lambda a, dtype=None: np.array(raw(a), dtype=dtype, order="C").view(Device),
                     asnumpy=lambda a: np.array(raw(a)),
                     **{n: _make(getattr(np, n)) for n in ("zeros", "empty", "empty_like", "matmul", "sqrt", "maximum",
                                                         "minimum", "abs", "sign", "exp", "where", "broadcast_to",
                                                         "any", "all", "isfinite", "ascontiguousarray", "stack",
                                                         "concatenate")})
STRICT = Backend("gpu", XP, simulated=True)


def test_the_stand_in_refuses_mixing():
    d = STRICT.to_device(np.ones(3))
    with pytest.raises(TypeError):
        d + np.ones(3)
    with pytest.raises(TypeError):
        d[...] = np.ones(3)
    assert type(STRICT.to_host(d + 1)) is np.ndarray


@pytest.mark.parametrize(("name", "mode"), [("pcm", "aggregate"), ("ecram", "exact"), ("ideal", "aggregate")])
def test_gpu_chip_keeps_host_and_device_apart(name, mode):
    prof = load_profile(name).replace(tile={"rows": 4, "cols": 3}, update={"max_pulses": 12})
    cpu, gpu = (Crossbar(prof, 9, 7, fab_seed=2, rng=7, pulse_mode=mode, backend=b) for b in ("cpu", STRICT))
    rng = np.random.default_rng(4)
    W = rng.uniform(-1.0, 1.0, cpu.shape).astype(np.float32)
    x = rng.standard_normal((4, 9)).astype(np.float32)
    outs = []
    for chip in (cpu, gpu):
        r = np.random.default_rng(9)
        chip.program(W)
        o = [chip.forward(x), chip.transposed(r.standard_normal((3, 7)).astype(np.float32))]
        for _ in range(2):
            chip.pulse_update(x, 0.3 * r.standard_normal((4, 7)).astype(np.float32), lr=0.2)
        o.append(chip.forward(chip.backend.to_device(x)))  # device inputs are accepted too
        if name != "ideal":
            chip.program(0.5 * W, mask=r.random(W.shape) < 0.4)
        chip.advance(3600.0, compensate=chip.profile.device.drift.model != "none")
        o += [chip.forward(x[0]), chip.read_weights()]
        outs.append([chip.backend.to_host(v) for v in o])
        arrays, scalars = chip._checkpoint()
        chip._restore(arrays, scalars)
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(b, a)
    assert isinstance(gpu._W, Device) and isinstance(gpu.forward(x), Device)
    if name != "ideal":
        assert all(isinstance(getattr(gpu, n), Device) for n in ("_g", "_gmax", "_stuck", "_rowsum", "_lut"))


def test_device_float_weights_equal_the_host_ones():
    from ffsim.ff.weights import DeviceFloatWeights, FloatWeights

    rng = np.random.default_rng(2)
    W0 = rng.standard_normal((9, 7)).astype(np.float32)
    cpu = FloatWeights(W0, momentum=0.9, weight_cost=0.001)
    gpu = DeviceFloatWeights(W0, momentum=0.9, weight_cost=0.001, backend=STRICT)
    for _ in range(3):
        x = rng.standard_normal((5, 9)).astype(np.float32)
        d = rng.standard_normal((5, 7)).astype(np.float32)
        y = gpu.forward(x)
        assert isinstance(y, Device)  # the product stays on the device
        np.testing.assert_array_equal(STRICT.to_host(y), cpu.forward(x))
        cpu.update(x, d, 0.1, 5)
        gpu.update(x, d, 0.1, 5)
    assert isinstance(gpu.W, Device) and isinstance(gpu.opt.grad, Device)
    ck_cpu, ck_gpu = cpu.weights_for_checkpoint(), gpu.weights_for_checkpoint()
    for k, v in ck_cpu.items():
        assert type(ck_gpu[k]) is np.ndarray
        np.testing.assert_array_equal(ck_gpu[k], v)
    fresh = DeviceFloatWeights(np.zeros_like(W0), momentum=0.9, weight_cost=0.001, backend=STRICT)
    fresh.load_checkpoint(ck_cpu)
    np.testing.assert_array_equal(STRICT.to_host(fresh.W), cpu.W)
