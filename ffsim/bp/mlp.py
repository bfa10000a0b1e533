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
"""

from __future__ import annotations

import math

import numpy as np

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
        self.W = W0.astype(np.float32) if mode != "insitu" else None  # float weights, or the model's nominal ones
        self.opt = _Smoothed(W0.shape, momentum, weight_cost) if mode == "ideal" else None
        self.ops = chip.ops if chip is not None else OpCounter()
        if chip is not None:
            self._host = chip.backend.to_host  # the engine is numpy on the host (a no-op on the CPU)
            chip.program(W0)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.chip is not None:
            return self._host(self.chip.forward(x))
        self.ops.macs += x.shape[0] * self.W.size
        return x @ self.W

    def backward(self, d: np.ndarray) -> np.ndarray:
        """``d @ Wᵀ``: through the chip's transposed read (insitu) or the digital model / float weights."""
        if self.mode == "insitu":
            return self._host(self.chip.transposed(d))
        self.ops.macs += d.shape[0] * self.W.size
        return d @ self.W.T

    def update(self, x: np.ndarray, delta: np.ndarray, lr: float, batch: int) -> None:
        """Descend: ΔW = −lr xᵀ δ / batch (δ = dL/dz per case)."""
        if self.mode == "ideal":
            self.ops.macs += x.shape[0] * self.W.size
            self.opt.step(self.W, x.T @ delta, lr, -1.0 / batch)
            return
        self.chip.pulse_update(x, -delta, lr / batch)
        if self.mode == "model":  # the software model assumes the intended change happened
            self.W -= np.float32(lr / batch) * (x.T @ delta)

    def state(self) -> dict[str, np.ndarray]:
        out = {}
        if self.W is not None:
            out["W"] = self.W
        if self.opt is not None:
            out["grad"] = self.opt.grad
        if self.chip is None:
            out["ops_values"] = np.array(list(self.ops.as_dict().values()), dtype=np.float64)
        return out

    def load_state(self, d: dict[str, np.ndarray]) -> None:
        if self.W is not None:
            self.W[...] = d["W"]
        if self.opt is not None:
            self.opt.grad[...] = d["grad"]
        if self.chip is None:
            for name, v in zip(self.ops.as_dict(), d["ops_values"], strict=True):
                setattr(self.ops, name, type(getattr(self.ops, name))(v))


class _Layer:
    def __init__(self, store: _Store, n_out: int, momentum: float):
        self.store = store
        self.b = np.zeros(n_out, dtype=np.float32)
        self.b_grad = np.zeros(n_out, dtype=np.float32)
        self.momentum = np.float32(momentum)

    def update_bias(self, delta: np.ndarray, lr: float, batch: int) -> None:
        self.b_grad *= self.momentum
        self.b_grad += (1 - self.momentum) * delta.sum(axis=0) / np.float32(batch)
        self.b -= np.float32(lr) * self.b_grad

    def state(self) -> dict[str, np.ndarray]:
        return {"b": self.b, "b_grad": self.b_grad, **self.store.state()}

    def load_state(self, d: dict[str, np.ndarray]) -> None:
        self.b[...] = d["b"]
        self.b_grad[...] = d["b_grad"]
        self.store.load_state(d)


class _NoHead:
    def state(self) -> dict:
        return {}

    def load_state(self, d: dict) -> None:
        pass


class BPNetwork(LayeredModel):
    """ReLU MLP ``in -> layers... -> classes`` trained by backpropagation (see module docstring)."""

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
        h = x
        for k, layer in enumerate(self.layers):
            hs.append(h)
            z = layer.store.forward(h) + layer.b
            zs.append(z)
            h = np.maximum(z, 0) if k < len(self.layers) - 1 else z
        return hs, zs, h

    def loss_and_grads(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, list[np.ndarray], list, np.ndarray]:
        """Cross-entropy, dL/dz per layer (from the measured forward pass), the inputs, and the probs."""
        hs, zs, logits = self._forward(x)
        probs = softmax(logits)
        B = len(labels)
        loss = float(-np.log(probs[np.arange(B), labels] + 1e-30).mean())
        d = probs.astype(np.float32)
        d[np.arange(B), labels] -= 1.0  # dL/dlogits per case (the mean over cases enters in the update)
        deltas = [None] * len(self.layers)
        deltas[-1] = d
        for k in range(len(self.layers) - 1, 0, -1):
            back = self.layers[k].store.backward(deltas[k])
            deltas[k - 1] = back * (zs[k - 1] > 0)
        return loss, deltas, hs, probs

    def train_step(self, x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, gain: float) -> dict:
        loss, deltas, hs, probs = self.loss_and_grads(x, labels)
        B = len(labels)
        lr = self.cfg.lr * gain
        for layer, h, d in zip(self.layers, hs, deltas, strict=True):
            layer.store.update(h, d, lr, B)
            layer.update_bias(d, lr, B)
        return {"loss": loss, "running_errors": int((probs.argmax(axis=1) != labels).sum()), "n": B}

    def predict_softmax(self, x: np.ndarray) -> np.ndarray:
        return softmax(self._forward(x)[2])
