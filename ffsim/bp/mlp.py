"""Backpropagation baseline on the same chips: a ReLU MLP with a softmax output and cross-entropy.

Three ways to train it (``mode``):

* ``ideal`` — float weights, exact forward and backward, Hinton's optimizer (gradient smoothed over
  mini-batches, weight cost) so that FF and BP share one optimizer;
* ``insitu`` — classic in-situ analog backprop (Gokmen & Vlasov 2016): forward through each chip's
  ``forward``, errors sent back through ``transposed`` (the chip's own transposed read, with its DAC/ADC
  quantization and noise), weights updated by ``pulse_update`` with the raw mini-batch gradient;
* ``model`` — what backprop must do when the forward pass is a black box: activations are measured on
  the chip, but the backward pass is computed digitally from a software model of the chip (the nominal
  weights it believes it holds, ideal converters, no knowledge of fabrication variations or device
  nonlinearity); the resulting update is applied by ``pulse_update`` and the model's nominal weights
  follow the intended change.  The gap between model and chip is the point.

The output layer's logits are measured like any other layer (on the chip in ``insitu`` and ``model``).
Biases are digital.

On the GPU backend (the chips', or for ``ideal`` mode ``$FFSIM_BACKEND``'s) the engine computes with the
backend's ``xp``: activations, errors, float weights (stepped by the CUDA twin of the optimizer), the
model's nominal weights and the biases stay on the device; ``predict_softmax`` and the statistics are
numpy / Python floats.
"""

from __future__ import annotations

import math

import numpy as np

from ffsim.backend import select_backend
from ffsim.crossbar import Crossbar, OpCounter
from ffsim.ff.config import FFConfig
from ffsim.ff.layer import softmax
from ffsim.ff.model import LayeredModel
from ffsim.ff.weights import _Smoothed

__all__ = ["BPNetwork"]


class _Store:
    """One weight matrix of the MLP and how its three operations reach the weights."""

    def __init__(self, mode: str, W0: np.ndarray, chip: Crossbar | None, momentum: float, weight_cost: float):
        self.mode = mode
        self.chip = chip
        self.backend = bk = chip.backend if chip is not None else select_backend()
        self.W = W0.astype(np.float32) if mode != "insitu" else None  # float weights, or the model's nominal ones
        self.opt = _Smoothed(W0.shape, momentum, weight_cost) if mode == "ideal" else None
        self.ops = chip.ops if chip is not None else OpCounter()
        if chip is not None:
            chip.program(W0)
        self._step = None
        if bk.is_gpu:  # float copies on the device; the optimizer step is the CUDA twin
            if self.W is not None:
                self.W = bk.to_device(self.W)
            if self.opt is not None:
                self.opt.grad = bk.to_device(self.opt.grad)
                self._step = bk.kernels.smoothed_step

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.chip is not None:
            return self.chip.forward(x)
        self.ops.macs += x.shape[0] * self.W.size
        return x @ self.W

    def backward(self, d: np.ndarray) -> np.ndarray:
        """``d @ Wᵀ``: through the chip's transposed read (insitu) or the digital model / float weights."""
        if self.mode == "insitu":
            return self.chip.transposed(d)
        self.ops.macs += d.shape[0] * self.W.size
        return d @ self.W.T

    def update(self, x: np.ndarray, delta: np.ndarray, lr: float, batch: int) -> None:
        """Descend: ΔW = −lr xᵀ δ / batch (δ = dL/dz per case)."""
        if self.mode == "ideal":
            self.ops.macs += x.shape[0] * self.W.size
            if self._step is None:
                self.opt.step(self.W, x.T @ delta, lr, -1.0 / batch)
            else:
                o = self.opt
                self._step(self.W, o.grad, x.T @ delta, o.momentum, np.float32(-1.0 / batch), np.float32(lr),
                           o.weight_cost)
            return
        self.chip.pulse_update(x, -delta, lr / batch)
        if self.mode == "model":  # the software model assumes the intended change happened
            self.W -= np.float32(lr / batch) * (x.T @ delta)

    def state(self) -> dict[str, np.ndarray]:
        out = {}
        host = self.backend.to_host
        if self.W is not None:
            out["W"] = host(self.W)
        if self.opt is not None:
            out["grad"] = host(self.opt.grad)
        if self.chip is None:
            out["ops_values"] = np.array(list(self.ops.as_dict().values()), dtype=np.float64)
        return out

    def load_state(self, d: dict[str, np.ndarray]) -> None:
        dev = self.backend.asarray
        if self.W is not None:
            self.W[...] = dev(d["W"])
        if self.opt is not None:
            self.opt.grad[...] = dev(d["grad"])
        if self.chip is None:
            for name, v in zip(self.ops.as_dict(), d["ops_values"], strict=True):
                setattr(self.ops, name, type(getattr(self.ops, name))(v))


class _Layer:
    def __init__(self, store: _Store, n_out: int, momentum: float):
        self.store = store
        self.backend = store.backend
        self.xp = self.backend.xp
        self.b = self.backend.asarray(np.zeros(n_out, dtype=np.float32))
        self.b_grad = self.backend.asarray(np.zeros(n_out, dtype=np.float32))
        self.momentum = np.float32(momentum)

    def update_bias(self, delta: np.ndarray, lr: float, batch: int) -> None:
        self.b_grad *= self.momentum
        self.b_grad += (1 - self.momentum) * delta.sum(axis=0) / np.float32(batch)
        self.b -= np.float32(lr) * self.b_grad

    def state(self) -> dict[str, np.ndarray]:
        host = self.backend.to_host
        return {"b": host(self.b), "b_grad": host(self.b_grad), **self.store.state()}

    def load_state(self, d: dict[str, np.ndarray]) -> None:
        dev = self.backend.asarray
        self.b[...] = dev(d["b"])
        self.b_grad[...] = dev(d["b_grad"])
        self.store.load_state(d)


class _NoHead:
    def state(self) -> dict:
        return {}

    def load_state(self, d: dict) -> None:
        pass


class BPNetwork(LayeredModel):
    """ReLU MLP ``in -> layers... -> classes`` trained by backpropagation (see module docstring)."""

    device_batches = True  # train_step takes device images on the GPU backend

    def __init__(self, cfg: FFConfig, in_features: int, num_classes: int, rng: np.random.Generator):
        self.cfg = cfg
        self.num_classes = num_classes
        sizes = [in_features, *cfg.layers, num_classes]
        profile = cfg.hardware() if cfg.mode != "ideal" else None
        self.layers = []
        for k in range(len(sizes) - 1):
            n_in, n_out = sizes[k], sizes[k + 1]
            W0 = (rng.standard_normal((n_in, n_out)) * math.sqrt(2.0 / n_in)).astype(np.float32)  # He init
            chip = None
            if cfg.mode != "ideal":
                chip = Crossbar(profile, n_in, n_out, fab_seed=(cfg.fab_seed, k),
                                rng=np.random.default_rng([cfg.seed, 1000 + k]),
                                w_max=cfg.w_max_scale / math.sqrt(n_in), pulse_mode=cfg.pulse_mode)
            self.layers.append(_Layer(_Store(cfg.mode, W0, chip, cfg.momentum, cfg.weight_cost), n_out, cfg.momentum))
        self.head = _NoHead()

    def _forward(self, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Inputs of every layer, their pre-activations, and the logits."""
        hs, zs = [], []
        h = self.backend.asarray(x)
        for k, layer in enumerate(self.layers):
            hs.append(h)
            z = layer.store.forward(h) + layer.b
            zs.append(z)
            h = self.xp.maximum(z, 0) if k < len(self.layers) - 1 else z
        return hs, zs, h

    def _loss_and_grads(self, x, labels):
        """As :meth:`loss_and_grads`, the loss a 0-d array of the backend and ``labels`` already on it."""
        xp = self.xp
        hs, zs, logits = self._forward(x)
        probs = softmax(logits, xp)
        B = len(labels)
        rows = xp.arange(B)
        loss = -xp.log(probs[rows, labels] + 1e-30).mean()
        d = probs.astype(np.float32)
        d[rows, labels] -= 1.0  # dL/dlogits per case (the mean over cases enters in the update)
        deltas = [None] * len(self.layers)
        deltas[-1] = d
        for k in range(len(self.layers) - 1, 0, -1):
            back = self.layers[k].store.backward(deltas[k])
            deltas[k - 1] = back * (zs[k - 1] > 0)
        return loss, deltas, hs, probs

    def loss_and_grads(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, list[np.ndarray], list, np.ndarray]:
        """Cross-entropy, dL/dz per layer (from the measured forward pass), the inputs, and the probs."""
        loss, deltas, hs, probs = self._loss_and_grads(x, self.backend.asarray(labels))
        return float(loss), deltas, hs, probs

    def train_step(self, x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, gain: float) -> dict:
        labels = self.backend.asarray(labels)
        loss, deltas, hs, probs = self._loss_and_grads(x, labels)
        B = len(labels)
        lr = self.cfg.lr * gain
        for layer, h, d in zip(self.layers, hs, deltas, strict=True):
            layer.store.update(h, d, lr, B)
            layer.update_bias(d, lr, B)
        loss, errors = self.host_floats([loss, (probs.argmax(axis=1) != labels).sum()])
        return {"loss": loss, "running_errors": int(errors), "n": B}

    def predict_softmax(self, x: np.ndarray) -> np.ndarray:
        return self.backend.to_host(softmax(self._forward(x)[2], self.xp))
