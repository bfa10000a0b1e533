"""One FF layer and the softmax head: forward maths and local learning rule side by side.

A layer sees only its own input (the normalized activities of the layer below) and its own measured
output (its chip's ``forward``); its update is computed from those and nothing else.

Both live where their weight store's backend keeps its arrays (``store.backend``: numpy on the CPU, the
device on the GPU backend): biases, smoothed gradients and running mean activities are arrays of that
backend, the maths uses its ``xp``, and ``state()`` / ``load_state()`` speak numpy.
"""

from __future__ import annotations

import numpy as np

from ffsim.backend import Backend, select_backend
from ffsim.ff.goodness import default_threshold, goodness, log_sigmoid_loss, sigmoid
from ffsim.ff.kernels import KIND_CODES, NORM_CODES

__all__ = ["FFLayer", "SoftmaxHead", "check_nonfinite", "softmax", "update_layers"]


def softmax(logits: np.ndarray, xp=np) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = xp.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class FFLayer:
    """ReLU units whose weights live in a weight store (float, in-situ chip or hybrid)."""

    def __init__(self, store, n_out: int, *, kind: str, threshold: float | None, temperature: float,
                 peer_norm: float, peer_decay: float, momentum: float):
        self.store = store
        self.backend = getattr(store, "backend", None) or select_backend("cpu")
        self.xp = self.backend.xp
        self.kernels = self.backend.kernels
        dev = self.backend.asarray
        self.n_out = n_out
        self.kind = kind
        self.theta = default_threshold(kind, n_out) if threshold is None else float(threshold)
        self.temperature = float(temperature)
        self.peer_norm = np.float32(peer_norm)
        self.peer_decay = np.float32(peer_decay)
        self.momentum = np.float32(momentum)
        self.b = dev(np.zeros(n_out, dtype=np.float32))
        self.b_grad = dev(np.zeros(n_out, dtype=np.float32))
        self.mean_act = dev(np.full(n_out, 0.5, dtype=np.float32))  # running mean activity (peer normalization)

    # forward -----------------------------------------------------------------------------------
    def forward(self, h: np.ndarray) -> np.ndarray:
        """ReLU activities for normalized inputs ``h`` (batch × n_in): measured, then biased digitally."""
        z = self.store.forward(h)
        z += self.b
        self.xp.maximum(z, 0, out=z)
        return z

    def activate(self, z: np.ndarray, norm: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ReLU activities, their Σa² per case, the activities normalized for the next layer) for measured
        outputs ``z`` (biased digitally; ``z`` is overwritten with the activities): one fused pass."""
        xp = self.xp
        ss = xp.empty(len(z), dtype=np.float64)
        h = xp.empty_like(z)
        self.kernels.act_rows(z, self.b, True, True, NORM_CODES[norm], z, ss, h)
        return z, ss, h

    # local learning rule -----------------------------------------------------------------------
    def probs(self, a: np.ndarray, ss: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Goodness and p(positive) of each case (``ss``: Σa² per case, if already computed)."""
        G = goodness(a, self.kind, ss, self.xp)
        return G, sigmoid((G - self.theta) / self.temperature, self.xp)

    def loss(self, G: np.ndarray, positive: bool) -> np.ndarray:
        """−log p (positive) or −log(1 − p) (negative) per case, for goodness ``G`` (reporting only)."""
        return log_sigmoid_loss(G, self.theta, self.temperature, positive, self.xp)

    def local(self, a: np.ndarray, positive: bool, ss: np.ndarray | None = None, *, delta: np.ndarray | None = None,
              G: np.ndarray | None = None, loss: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """dC/dz, goodness and loss of each case (``ffsim.ff.kernels.layer_rows``: Hinton's scaling).

        On positive cases peer normalization first updates the running mean activities and adds its push
        (not gated by the ReLU, as in Hinton's code).  ``ss``: Σa² per case (computed if not given);
        ``delta``, ``G``, ``loss``: arrays to write into (allocated if not given)."""
        xp, k = self.xp, self.kernels
        if ss is None:  # Σa² in the kernels' order: act_rows without bias or ReLU leaves the rows as they are
            ss = xp.empty(len(a), dtype=np.float64)
            k.act_rows(a, self.b, False, False, True, a, ss, xp.empty_like(a))
        delta = xp.empty_like(a) if delta is None else delta
        G = xp.empty(len(a), dtype=np.float64) if G is None else G
        loss = xp.empty(len(a), dtype=np.float64) if loss is None else loss
        peer = bool(positive and self.peer_norm > 0)
        if peer:
            k.peer_update(a, self.mean_act, self.peer_decay)
        k.layer_rows(a, ss, KIND_CODES[self.kind], self.theta, self.temperature, positive, peer, self.peer_norm,
                     self.mean_act, delta, G, loss)
        return delta, G, loss

    def update(self, h: np.ndarray, delta: np.ndarray, lr: float, batch: int) -> None:
        """Ascend C with the cases' inputs ``h`` and dC/dz ``delta``; ``batch`` normalizes the sum."""
        self.store.update(h, delta, lr, batch)
        self.bias_step(delta, lr, batch)

    def bias_step(self, delta: np.ndarray, lr: float, batch: int) -> None:
        """The bias's part of :meth:`update` (digital, momentum-smoothed)."""
        self.kernels.bias_step(delta, self.b, self.b_grad, self.momentum, int(batch), np.float32(lr))

    def state(self) -> dict[str, np.ndarray]:
        host = self.backend.to_host
        return {"b": host(self.b), "b_grad": host(self.b_grad), "mean_act": host(self.mean_act),
                **self.store.weights_for_checkpoint()}

    def load_state(self, d: dict[str, np.ndarray]) -> None:
        dev = self.backend.asarray
        self.b[...] = dev(d["b"])
        self.b_grad[...] = dev(d["b_grad"])
        self.mean_act[...] = dev(d["mean_act"])
        self.store.load_checkpoint(d)


class SoftmaxHead:
    """Linear softmax on normalized hidden activities, learned by its own delta rule (digital).

    No gradient reaches the hidden layers.  As in Hinton's code: zero initial weights, gradient
    smoothing, weight cost, no bias.
    """

    def __init__(self, widths: list[int], num_classes: int, *, lr: float, weight_cost: float, momentum: float,
                 backend: Backend | None = None):
        self.backend = backend or select_backend("cpu")
        self.kernels = self.backend.kernels
        self.W = [self.backend.asarray(np.zeros((w, num_classes), dtype=np.float32)) for w in widths]
        self.grad = [self.backend.xp.zeros_like(w) for w in self.W]
        self.lr = np.float32(lr)
        self.weight_cost = np.float32(weight_cost)
        self.momentum = np.float32(momentum)

    def logits(self, hs: list[np.ndarray]) -> np.ndarray:
        out = hs[0] @ self.W[0]
        for h, W in zip(hs[1:], self.W[1:], strict=True):
            out += h @ W
        return out

    def update(self, hs: list[np.ndarray], probs: np.ndarray, onehot: np.ndarray, gain: float) -> None:
        """Learn from predictions ``probs`` and targets ``onehot`` (the delta rule; see :meth:`step`)."""
        self.step(hs, (onehot - probs).astype(np.float32) / np.float32(len(onehot)), gain)

    def step(self, hs: list[np.ndarray], err: np.ndarray, gain: float) -> None:
        """One smoothed step for the error signal ``err`` = (targets − probs) / batch (batch × classes):
        grad ← m grad + (1 − m) hᵀ err;  W ← W + gain lr (grad − wc W) (the fused ``smoothed_step``)."""
        lr = np.float32(np.float32(gain) * self.lr)
        for h, W, G in zip(hs, self.W, self.grad, strict=True):
            self.kernels.smoothed_step(W, G, h.T @ err, self.momentum, np.float32(1.0), lr, self.weight_cost)

    def state(self) -> dict[str, np.ndarray]:
        out = {}
        host = self.backend.to_host
        for k, (W, G) in enumerate(zip(self.W, self.grad, strict=True)):
            out[f"W{k}"] = host(W)
            out[f"grad{k}"] = host(G)
        return out

    def load_state(self, d: dict[str, np.ndarray]) -> None:
        dev = self.backend.asarray
        for k in range(len(self.W)):
            self.W[k][...] = dev(d[f"W{k}"])
            self.grad[k][...] = dev(d[f"grad{k}"])


def check_nonfinite(flag: float) -> None:
    """Raise :class:`ffsim.crossbar.NonFiniteInput` where the flag that :func:`update_layers` was given
    (``nonfinite``, read back with a step's statistics) is set."""
    if flag:
        from ffsim.crossbar import NonFiniteInput

        raise NonFiniteInput("pulse_update: x or d contains NaN or inf (found on the device after the step's "
                             "updates, which left those cases out)")


def update_layers(layers: list[FFLayer], hs: list, deltas: list, lr: float, batch: int, nonfinite=None) -> None:
    """:meth:`FFLayer.update` of each layer, in order.  Where every layer's weights are on a chip
    (``insitu``), the chips' pulse updates go through :meth:`Crossbar.pulse_updates` together: on the GPU
    their trains are planned on the device, with at most one transfer back for all layers (none with
    ``nonfinite``, see there), and an error (non-finite input) leaves every layer as it was.  The results
    are those of layer-by-layer updates (each chip draws from its own generator; the biases do not depend
    on the chips)."""
    from ffsim.crossbar import Crossbar
    from ffsim.ff.weights import InSituWeights

    if len(layers) > 1 and all(isinstance(layer.store, InSituWeights) for layer in layers):
        Crossbar.pulse_updates([(layer.store.chip, h, d, lr / batch)
                                for layer, h, d in zip(layers, hs, deltas, strict=True)], nonfinite=nonfinite)
        for layer, d in zip(layers, deltas, strict=True):
            layer.bias_step(d, lr, batch)
        return
    for layer, h, d in zip(layers, hs, deltas, strict=True):
        layer.update(h, d, lr, batch)
