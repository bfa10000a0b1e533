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
from ffsim.ff.goodness import default_threshold, goodness, goodness_grad, log_sigmoid_loss, sigmoid

__all__ = ["FFLayer", "SoftmaxHead", "softmax"]


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

    # local learning rule -----------------------------------------------------------------------
    def probs(self, a: np.ndarray, ss: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Goodness and p(positive) of each case (``ss``: Σa² per case, if already computed)."""
        G = goodness(a, self.kind, ss, self.xp)
        return G, sigmoid((G - self.theta) / self.temperature, self.xp)

    def loss(self, G: np.ndarray, positive: bool) -> np.ndarray:
        return log_sigmoid_loss(G, self.theta, self.temperature, positive, self.xp)

    def delta_positive(self, a: np.ndarray, p: np.ndarray) -> np.ndarray:
        """dC/dz on positive cases, with peer normalization (not gated by the ReLU, as in Hinton's code)."""
        d = goodness_grad(a, p, True, self.kind)
        if self.peer_norm > 0:
            self.mean_act *= self.peer_decay
            self.mean_act += (1 - self.peer_decay) * a.mean(axis=0, dtype=np.float64).astype(np.float32)
            d += self.peer_norm * (self.mean_act.mean() - self.mean_act)
        return d

    def delta_negative(self, a: np.ndarray, p: np.ndarray) -> np.ndarray:
        return goodness_grad(a, p, False, self.kind)

    def update(self, h: np.ndarray, delta: np.ndarray, lr: float, batch: int) -> None:
        """Ascend C with the cases' inputs ``h`` and dC/dz ``delta``; ``batch`` normalizes the sum."""
        self.store.update(h, delta, lr, batch)
        self.b_grad *= self.momentum
        self.b_grad += (1 - self.momentum) * delta.sum(axis=0) / np.float32(batch)
        self.b += np.float32(lr) * self.b_grad

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
        err = (onehot - probs).astype(np.float32) / np.float32(len(onehot))
        for h, W, G in zip(hs, self.W, self.grad, strict=True):
            G *= self.momentum
            G += (1 - self.momentum) * (h.T @ err)
            W += np.float32(gain) * self.lr * (G - self.weight_cost * W)

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

