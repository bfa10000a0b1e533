"""Supervised Forward-Forward network (Hinton 2022, §3.3; his MATLAB code ``ffnew.m``).

The label is embedded in the input (one-hot in the first pixels, or concatenated).  Each mini-batch:

1. a positive pass (true labels) gives each layer its positive goodness and local gradient, and updates
   the running mean activities of peer normalization;
2. a pass with the neutral label feeds the softmax head (normalized activities of every hidden layer
   from ``min_level`` on); the head learns by its own delta rule and its predictions give the running
   training error;
3. negatives: by default a hard negative label sampled from the head's prediction with the true class
   excluded; optionally a uniform wrong label.  The true label is never a negative;
4. a negative pass gives each layer its negative gradient;
5. every layer is updated (all layers every mini-batch, not greedily), from its own inputs and measured
   outputs only.

Evaluation: (a) for each label, the goodness summed over hidden layers from ``min_level`` on; the highest
wins; (b) one pass with the neutral label and the softmax head.

On the GPU backend a mini-batch stays on the device from the embedding to the updates; the random draws
(negative labels) come from the host generator, as on the CPU, and only those small arrays and the
step's scalar statistics (one transfer) cross.
"""

from __future__ import annotations

import math

import numpy as np

from ffsim.ff.config import FFConfig
from ffsim.ff.goodness import normalize
from ffsim.ff.layer import FFLayer, SoftmaxHead, softmax
from ffsim.ff.model import LayeredModel
from ffsim.ff.weights import make_weights

__all__ = ["FFNetwork", "build_layers", "sample_negative_labels"]


def sample_negative_labels(probs: np.ndarray, labels: np.ndarray, rng: np.random.Generator, xp=np) -> np.ndarray:
    """One wrong label per case, drawn from ``probs`` with the true class removed (renormalized).

    ``probs`` and ``labels`` are arrays of ``xp`` (numpy, or the GPU backend's CuPy); the uniform draws
    come from the host generator ``rng`` and are moved to them."""
    p = probs.astype(np.float64).copy()
    rows = xp.arange(len(labels))
    p[rows, labels] = 0.0
    total = p.sum(axis=1, keepdims=True)
    C = p.shape[1]
    uniform = xp.full((1, C), 1.0 / (C - 1))
    p = xp.where(total > 1e-300, p / xp.maximum(total, 1e-300), uniform)
    p[rows, labels] = 0.0
    cdf = xp.cumsum(p, axis=1)
    u = xp.asarray(rng.random(len(labels)))[:, None] * cdf[:, -1:]
    neg = (u >= cdf).sum(axis=1)
    neg = xp.minimum(neg, C - 1)
    # guard against rounding landing on the true class
    bad = neg == labels
    n_bad = int(bad.sum())
    redraw = rng.integers(0, C - 1, size=n_bad)
    if n_bad:
        neg[bad] = (labels[bad] + 1 + xp.asarray(redraw)) % C
    return neg


def build_layers(cfg: FFConfig, sizes: list[int], rng: np.random.Generator, layer_tag: int = 0) -> list[FFLayer]:
    """Layers ``sizes[k] -> sizes[k+1]`` with weights N(0, 1/fan_in) (drawn from ``rng``) on the configured
    store.  Layer k's chip has fabrication seed ``(fab_seed, layer_tag + k)`` and its own run-time
    generator seeded ``(seed, 1000 + layer_tag + k)``."""
    profile = cfg.hardware() if cfg.mode != "ideal" else None
    layers = []
    for k in range(len(sizes) - 1):
        n_in, n_out = sizes[k], sizes[k + 1]
        W0 = (rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)).astype(np.float32)
        chip_rng = np.random.default_rng([cfg.seed, 1000 + layer_tag + k])  # run-time noise of this layer's chip
        store = make_weights(cfg.mode, W0, profile=profile, fab_seed=(cfg.fab_seed, layer_tag + k), rng=chip_rng,
                             w_max=cfg.w_max_scale / math.sqrt(n_in), momentum=cfg.momentum,
                             weight_cost=cfg.weight_cost, hybrid_threshold=cfg.hybrid_threshold,
                             pulse_mode=cfg.pulse_mode)
        layers.append(FFLayer(store, n_out, kind=cfg.goodness, threshold=cfg.threshold,
                              temperature=cfg.temperature, peer_norm=cfg.peer_norm, peer_decay=cfg.peer_decay,
                              momentum=cfg.momentum))
    return layers


class FFNetwork(LayeredModel):
    """A stack of FF layers with the label in the input and a softmax head."""

    device_batches = True  # train_step takes device images on the GPU backend

    def __init__(self, cfg: FFConfig, in_features: int, num_classes: int, rng: np.random.Generator):
        self.cfg = cfg
        self.num_classes = num_classes
        self.pixels = in_features
        n_in = in_features + (num_classes if cfg.label_mode == "concat" else 0)
        if cfg.label_mode == "overwrite" and in_features < num_classes:
            raise ValueError(f"label_mode 'overwrite' needs at least {num_classes} input pixels (got {in_features})")
        self.in_features = n_in
        self.layers = build_layers(cfg, [n_in, *cfg.layers], rng)
        self.head_from = cfg.min_level
        self.head = SoftmaxHead(list(cfg.layers[self.head_from:]), num_classes, lr=cfg.lr_head,
                                weight_cost=cfg.weight_cost_head, momentum=cfg.momentum, backend=self.backend)

    # inputs ------------------------------------------------------------------------------------
    def embed(self, x: np.ndarray, label_rows: np.ndarray) -> np.ndarray:
        """Images (batch × pixels) with label vectors (batch × classes) embedded, before normalization."""
        dev = self.backend.asarray
        x, label_rows = dev(x), dev(label_rows)
        s = np.float32(self.cfg.label_strength)
        if self.cfg.label_mode == "concat":
            return self.xp.concatenate([x, s * label_rows], axis=1).astype(np.float32)
        out = x.astype(np.float32, copy=True)
        out[:, : self.num_classes] = s * label_rows
        return out

    def onehot(self, labels: np.ndarray) -> np.ndarray:
        return self.xp.eye(self.num_classes, dtype=np.float32)[self.backend.asarray(labels)]

    def neutral(self, n: int) -> np.ndarray:
        return self.xp.full((n, self.num_classes), 1.0 / self.num_classes, dtype=np.float32)

    # passes ------------------------------------------------------------------------------------
    def head_inputs(self, acts: list[np.ndarray]) -> list[np.ndarray]:
        return [normalize(a, self.cfg.norm, xp=self.xp) for a in acts[self.head_from:]]

    # training ----------------------------------------------------------------------------------
    def train_step(self, x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, gain: float, *,
                   head_targets: np.ndarray | None = None, negative_probs: np.ndarray | None = None,
                   head_temperature: float = 1.0) -> dict:
        """One mini-batch of supervised FF; returns statistics (loss, errors, goodness).

        ``labels`` are the positive labels.  For distillation, ``head_targets`` (soft targets, rows summing
        to 1) replace the one-hot targets of the softmax head, and ``negative_probs`` (an oracle's class
        probabilities) replace the network's own prediction when hard negatives are drawn.  With
        ``head_temperature`` T > 1 the head learns the soft targets at temperature T (Hinton, Vinyals & Dean
        2015): its training softmax is softmax(logits / T) and the step is scaled by T (the T² rule of the
        gradient with respect to logits / T); ``head_targets`` must then already be the softened targets.
        """
        cfg = self.cfg
        bk, xp = self.backend, self.xp
        labels_h = bk.to_host(labels)  # the host generator's draws use them
        labels = bk.asarray(labels_h)
        x = bk.asarray(x)
        B = len(labels_h)
        onehot = self.onehot(labels)
        targets = onehot if head_targets is None else bk.asarray(head_targets).astype(np.float32)
        # positive and neutral passes together (independent of each other)
        both = xp.concatenate([self.embed(x, onehot), self.embed(x, self.neutral(B))])
        hs, acts = self.bottom_up(both)
        sss = self.last_sumsq
        pos_h = [h[:B] for h in hs]
        deltas_pos, loss_pos, good_pos, G_pos = [], [], [], []
        for layer, a, ss in zip(self.layers, acts, sss, strict=True):
            ap = a[:B]
            G, p = layer.probs(ap, ss[:B])
            G_pos.append(G)
            deltas_pos.append(layer.delta_positive(ap, p))
            loss_pos.append(layer.loss(G, True).mean())
            good_pos.append(G.mean())
        # softmax head on the neutral pass
        head_in = [normalize(a[B:], cfg.norm, ss[B:], xp) for a, ss in zip(acts[self.head_from:],
                                                                           sss[self.head_from:], strict=True)]
        logits = self.head.logits(head_in)
        probs = softmax(logits, xp)
        running_errors = (probs.argmax(axis=1) != labels).sum()
        head_loss = -xp.log(probs[xp.arange(B), labels] + 1e-30).mean()
        if head_temperature == 1.0:
            self.head.update(head_in, probs, targets, gain)
        else:
            self.head.update(head_in, softmax(logits / np.float32(head_temperature), xp), targets,
                             gain * head_temperature)
        # negatives
        if cfg.negatives == "hard":
            neg_labels = sample_negative_labels(probs if negative_probs is None else bk.asarray(negative_probs),
                                                labels, rng, xp)
        else:
            neg_labels = bk.asarray((labels_h + 1 + rng.integers(0, self.num_classes - 1, size=B)) % self.num_classes)
        hs_n, acts_n = self.bottom_up(self.embed(x, self.onehot(neg_labels)))
        sss_n = self.last_sumsq
        loss_neg, good_neg, pair_err = [], [], []
        for k, (layer, a) in enumerate(zip(self.layers, acts_n, strict=True)):
            G, p = layer.probs(a, sss_n[k])
            d_neg = layer.delta_negative(a, p)
            loss_neg.append(layer.loss(G, False).mean())
            good_neg.append(G.mean())
            pair_err.append((G >= G_pos[k]).mean())
            layer.update(xp.concatenate([pos_h[k], hs_n[k]]), xp.concatenate([deltas_pos[k], d_neg]),
                         cfg.lr * gain, B)
        # every statistic of the step in one transfer
        L = len(self.layers)
        f = self.host_floats([running_errors, head_loss, *loss_pos, *loss_neg, *good_pos, *good_neg, *pair_err])
        running_errors, head_loss = int(f[0]), f[1]
        loss_pos, loss_neg, good_pos, good_neg, pair_err = (f[2 + i * L:2 + (i + 1) * L] for i in range(5))
        loss = float(np.sum(loss_pos) + np.sum(loss_neg))
        return {"loss": loss, "head_loss": head_loss, "running_errors": running_errors, "n": B,
                "loss_pos": loss_pos, "loss_neg": loss_neg, "goodness_pos": good_pos, "goodness_neg": good_neg,
                "pair_errors": pair_err, "negative_labels": bk.to_host(neg_labels)}

    # evaluation --------------------------------------------------------------------------------
    def predict_softmax(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (numpy) from one neutral-label pass and the softmax head."""
        _, acts = self.bottom_up(self.embed(x, self.neutral(len(x))))
        return self.backend.to_host(softmax(self.head.logits(self.head_inputs(acts)), self.xp))

    def goodness_scores(self, x: np.ndarray) -> np.ndarray:
        """Goodness summed over layers ``min_level``.. for every label (batch × classes, numpy)."""
        xp = self.xp
        x = self.backend.asarray(x)
        B, C = len(x), self.num_classes
        scores = xp.zeros((B, C))
        for c in range(C):
            _, acts = self.bottom_up(self.embed(x, self.onehot(xp.full(B, c))))
            for k in range(self.head_from, len(self.layers)):
                scores[:, c] += self.layers[k].probs(acts[k], self.last_sumsq[k])[0]
        return self.backend.to_host(scores)

    # bookkeeping -------------------------------------------------------------------------------


