"""Where a layer's weights live and how its local update reaches them: the three training modes.

* ``ideal`` — float32 weights in digital memory; forward is ``x @ W``; updates follow Hinton's optimizer
  (gradient smoothed over mini-batches with ``momentum``, weight cost, learning rate).  The reference.
* ``insitu`` — the weights live on a :class:`~ffsim.crossbar.Crossbar`; forward is the chip's
  ``forward``; the update ``ΔW = lr · xᵀ δ / B`` is applied by ``pulse_update`` (stochastic pulse trains).
  The periphery holds only the current mini-batch's inputs and local gradients (row and column pulse
  trains); it has no memory for momentum or weight cost, so none is applied: the device's own response
  (bounds, asymmetry, noise) is what the learning sees.
* ``hybrid`` — mixed-precision training: forward on the chip as in ``insitu``; the periphery holds a
  float copy of every weight and the smoothed gradient (digital memory beside the array), applies
  Hinton's optimizer to that copy, and re-programs (write-verify) every cell whose copy has moved more
  than ``threshold`` (in units of ``w_max``) since it was last written.

All three keep an :class:`~ffsim.crossbar.OpCounter`; the float store counts its multiply-accumulates.
Every store has a ``backend`` (its chip's, or where its float weights live) and takes and returns arrays of
that backend: on the GPU backend what a chip measures stays on the device, and the float copies of
``hybrid`` mode (master weights, smoothed gradient, what was last written) are device arrays too.
Checkpoints are numpy arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ffsim.backend import Backend, select_backend
from ffsim.crossbar import Crossbar, OpCounter
from ffsim.profiles import HardwareProfile

__all__ = ["MODES", "DeviceFloatWeights", "FloatWeights", "HybridWeights", "InSituWeights", "make_weights"]

MODES = ("ideal", "insitu", "hybrid")


@njit(inline="always", cache=True, error_model="numpy")
def _smoothed_cell(W, grad, g, momentum, a, lr, weight_cost, i, j):
    """Weight (i, j) of :func:`_smoothed_step` (``a`` = (1 − m) g_scale, float64), in the types numba gives the
    fused loop; the GPU twin compiles this body (ffsim.gpu.twin)."""
    gs = np.float64(np.float32(momentum * grad[i, j])) + a * np.float64(g[i, j])
    grad[i, j] = gs
    W[i, j] = np.float64(W[i, j]) + np.float64(lr) * (gs - np.float64(np.float32(weight_cost * W[i, j])))


@njit(parallel=True, cache=True, error_model="numpy")
def _smoothed_step(W, grad, g, momentum, g_scale, lr, weight_cost):
    """One fused pass: grad ← m grad + (1 − m) g_scale g;  W ← W + lr (grad − wc W)."""
    n_in, n_out = W.shape
    a = (1 - momentum) * g_scale
    for i in prange(n_in):
        for j in range(n_out):
            _smoothed_cell(W, grad, g, momentum, a, lr, weight_cost, i, j)


class _Smoothed:
    """Hinton's optimizer state: g_s ← m g_s + (1 − m) g;  W ← W + lr (g_s − wc W)."""

    def __init__(self, shape: tuple[int, int], momentum: float, weight_cost: float):
        self.grad = np.zeros(shape, dtype=np.float32)
        self.momentum = np.float32(momentum)
        self.weight_cost = np.float32(weight_cost)

    def step(self, W: np.ndarray, g: np.ndarray, lr: float, g_scale: float = 1.0) -> None:
        """Apply the update for the (unscaled) gradient ``g``; ``g_scale`` multiplies it (e.g. 1/batch)."""
        _smoothed_step(W, self.grad, g, self.momentum, np.float32(g_scale), np.float32(lr), self.weight_cost)


class FloatWeights:
    """``ideal`` mode: float32 weights in digital memory."""

    mode = "ideal"

    def __init__(self, W0: np.ndarray, momentum: float, weight_cost: float, **_: object):
        self.backend = select_backend("cpu")
        self.W = np.ascontiguousarray(W0, dtype=np.float32)
        self.opt = _Smoothed(self.W.shape, momentum, weight_cost)
        self.ops = OpCounter()

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.ops.macs += x.shape[0] * self.W.shape[0] * self.W.shape[1]
        return x @ self.W

    def update(self, x: np.ndarray, delta: np.ndarray, lr: float, batch: int) -> None:
        """Ascend along the gradient ``xᵀ δ / batch`` (δ = dC/dz per case)."""
        self.ops.macs += x.shape[0] * self.W.shape[0] * self.W.shape[1]
        self.opt.step(self.W, x.T @ delta, lr, 1.0 / batch)

    def weights_for_checkpoint(self) -> dict[str, np.ndarray]:
        ops = self.ops.as_dict()
        return {"W": self.W, "grad": self.opt.grad, "ops_values": np.array(list(ops.values()), dtype=np.float64)}

    def load_checkpoint(self, d: dict[str, np.ndarray]) -> None:
        self.W[...] = d["W"]
        self.opt.grad[...] = d["grad"]
        for name, v in zip(self.ops.as_dict(), d["ops_values"], strict=True):
            setattr(self.ops, name, type(getattr(self.ops, name))(v))


class DeviceFloatWeights(FloatWeights):
    """``ideal`` mode on the GPU backend: the float32 weights and their smoothed gradient live on the device;
    the products and the fused optimizer step (the numba-cuda twin of ``_smoothed_step``) run there.

    Inputs are moved to the device where they are host arrays; outputs stay on the device.
    ``W`` is a device array (CuPy on a GPU): code that reads or writes it directly must use the backend.
    """

    def __init__(self, W0: np.ndarray, momentum: float, weight_cost: float, backend: Backend, **_: object):
        self.backend = backend
        dev = backend.to_device
        self.W = dev(np.ascontiguousarray(W0, dtype=np.float32))
        self.opt = _Smoothed(self.W.shape, momentum, weight_cost)
        self.opt.grad = dev(self.opt.grad)
        self._step = backend.kernels.smoothed_step
        self.ops = OpCounter()

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.ops.macs += x.shape[0] * self.W.shape[0] * self.W.shape[1]
        return self.backend.to_device(x) @ self.W

    def update(self, x: np.ndarray, delta: np.ndarray, lr: float, batch: int) -> None:
        self.ops.macs += x.shape[0] * self.W.shape[0] * self.W.shape[1]
        dev = self.backend.to_device
        g = dev(x).T @ dev(delta)
        o = self.opt
        self._step(self.W, o.grad, g, o.momentum, np.float32(1.0 / batch), np.float32(lr), o.weight_cost)

    def weights_for_checkpoint(self) -> dict[str, np.ndarray]:
        host = self.backend.to_host
        ops = self.ops.as_dict()
        return {"W": host(self.W), "grad": host(self.opt.grad),
                "ops_values": np.array(list(ops.values()), dtype=np.float64)}

    def load_checkpoint(self, d: dict[str, np.ndarray]) -> None:
        dev = self.backend.to_device
        self.W[...] = dev(d["W"])
        self.opt.grad[...] = dev(d["grad"])
        for name, v in zip(self.ops.as_dict(), d["ops_values"], strict=True):
            setattr(self.ops, name, type(getattr(self.ops, name))(v))


class InSituWeights:
    """``insitu`` mode: weights on a chip, updated by stochastic pulse trains."""

    mode = "insitu"

    def __init__(self, W0: np.ndarray, chip: Crossbar, **_: object):
        self.chip = chip
        self.backend = chip.backend
        chip.program(W0)
        self.ops = chip.ops

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.chip.forward(x)

    def update(self, x: np.ndarray, delta: np.ndarray, lr: float, batch: int) -> None:
        """``ΔW ≈ lr · xᵀ δ / batch`` by pulse trains (no smoothing, no weight cost: see module doc)."""
        self.chip.pulse_update(x, delta, lr / batch)

    def weights_for_checkpoint(self) -> dict[str, np.ndarray]:
        return {}

    def load_checkpoint(self, d: dict[str, np.ndarray]) -> None:
        pass


class HybridWeights:
    """``hybrid`` mode: float master copy with Hinton's optimizer; changed cells re-programmed."""

    mode = "hybrid"

    def __init__(self, W0: np.ndarray, chip: Crossbar, momentum: float, weight_cost: float,
                 threshold: float = 0.02, **_: object):
        self.chip = chip
        self.backend = bk = chip.backend
        W = np.ascontiguousarray(W0, dtype=np.float32)
        self.opt = _Smoothed(W.shape, momentum, weight_cost)
        self.threshold = np.float32(threshold * chip.w_max)
        chip.program(W)
        # on the GPU backend the float copies live on the device, the optimizer step is the CUDA twin
        self._step = bk.kernels.smoothed_step if bk.is_gpu else None
        if bk.is_gpu:
            W = bk.to_device(W)
            self.opt.grad = bk.to_device(self.opt.grad)
        self.W = W
        self.written = W.copy()
        self.ops = chip.ops

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.chip.forward(x)

    def update(self, x: np.ndarray, delta: np.ndarray, lr: float, batch: int) -> None:
        if self._step is None:
            self.opt.step(self.W, x.T @ delta, lr, 1.0 / batch)
        else:
            dev, o = self.backend.to_device, self.opt
            self._step(self.W, o.grad, dev(x).T @ dev(delta), o.momentum, np.float32(1.0 / batch), np.float32(lr),
                       o.weight_cost)
        moved = self.backend.xp.abs(self.W - self.written) > self.threshold
        if moved.any():
            self.chip.program(self.W, mask=moved)
            self.written[moved] = self.W[moved]

    def weights_for_checkpoint(self) -> dict[str, np.ndarray]:
        host = self.backend.to_host
        return {"W": host(self.W), "grad": host(self.opt.grad), "written": host(self.written)}

    def load_checkpoint(self, d: dict[str, np.ndarray]) -> None:
        dev = self.backend.to_device
        self.W[...] = dev(d["W"])
        self.opt.grad[...] = dev(d["grad"])
        self.written[...] = dev(d["written"])


def make_weights(mode: str, W0: np.ndarray, *, profile: HardwareProfile | None, fab_seed: tuple[int, ...],
                 rng: np.random.Generator, w_max: float, momentum: float, weight_cost: float,
                 hybrid_threshold: float, pulse_mode: str = "aggregate", backend=None):
    """Build the weight store of one layer (``backend``: of its chip; None for ``$FFSIM_BACKEND``, else cpu)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} (got {mode!r})")
    if mode == "ideal":
        bk = select_backend(backend)
        if bk.is_gpu:
            return DeviceFloatWeights(W0, momentum=momentum, weight_cost=weight_cost, backend=bk)
        return FloatWeights(W0, momentum=momentum, weight_cost=weight_cost)
    chip = Crossbar(profile, W0.shape[0], W0.shape[1], fab_seed=fab_seed, rng=rng, w_max=w_max,
                    pulse_mode=pulse_mode, backend=backend)
    if mode == "insitu":
        return InSituWeights(W0, chip)
    return HybridWeights(W0, chip, momentum=momentum, weight_cost=weight_cost, threshold=hybrid_threshold)
