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

The per-row arithmetic (embedding and normalization, bias and ReLU, goodness, loss, local gradients,
peer normalization, the head's softmax and error, negative sampling) runs in the fused kernels of
:mod:`ffsim.ff.kernels` (Numba on the CPU, their numba-cuda twins on the GPU backend): a mini-batch stays
on the device from the embedding to the updates.  The random draws of hard negatives (one uniform and one
integer per case, :func:`negative_draws`) come from the host generator, as on the CPU; they go up with the
label codes in one transfer, and every per-case statistic comes back in one.
"""

from __future__ import annotations

import math

import numpy as np

from ffsim.backend import Backend, select_backend
from ffsim.ff.config import FFConfig
from ffsim.ff.kernels import NORM_CODES
from ffsim.ff.layer import FFLayer, SoftmaxHead, check_nonfinite, softmax, update_layers
from ffsim.ff.model import LayeredModel
from ffsim.ff.weights import make_weights

__all__ = ["FFNetwork", "StepStats", "build_layers", "negative_draws", "negative_uploads", "sample_negative_labels"]


def sample_negative_labels(probs: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                           backend: Backend | None = None) -> np.ndarray:
    """One wrong label per case, drawn from ``probs`` with the true class removed (renormalized).

    ``probs`` and ``labels`` are arrays of ``backend`` (numpy on the CPU, the default); the draws (one
    uniform and one integer per case, :func:`negative_draws`) come from the host generator ``rng`` and are
    moved there.  Returns int64 labels of ``backend`` (``ffsim.ff.kernels.negative_rows``)."""
    bk = backend or select_backend("cpu")
    u, redraw = negative_draws(rng, len(labels), probs.shape[1])
    dev = bk.asarray(np.stack([u, redraw]))
    neg = bk.xp.empty(len(labels), dtype=np.float64)
    bk.kernels.negative_rows(probs, bk.asarray(labels, dtype=np.float64), dev[0], dev[1], neg)
    return neg.astype(np.int64)


def negative_draws(rng: np.random.Generator, n: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """What hard negatives take from the host generator: ``n`` uniforms in [0, 1), then ``n`` integers in
    [0, C − 1) (used only where rounding lands on the true class), as float64."""
    u = rng.random(n)
    return u, rng.integers(0, num_classes - 1, size=n).astype(np.float64)


def negative_uploads(rng: np.random.Generator, labels: np.ndarray, num_classes: int,
                     hard: bool) -> tuple[list[np.ndarray], np.ndarray | None]:
    """What a step's negatives take from the host generator, as float64 arrays for its upload: the draws of
    hard negatives (:func:`negative_draws`; their labels are picked on the backend), or uniform negatives'
    labels (a wrong label per case, uniform over the others; also returned as int64, else None)."""
    if hard:
        return list(negative_draws(rng, len(labels), num_classes)), None
    neg = (labels + 1 + rng.integers(0, num_classes - 1, size=len(labels))) % num_classes
    return [neg.astype(np.float64)], neg


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


class StepStats:
    """The statistics of a submitted FF step (:meth:`FFNetwork.submit_step`), downloaded on first use."""

    __slots__ = ("_B", "_L", "_fetch", "_neg", "_stats")

    def __init__(self, fetch, n_layers: int, batch: int, negatives: np.ndarray | None):
        self._fetch, self._L, self._B, self._neg, self._stats = fetch, n_layers, batch, negatives, None

    def stats(self) -> dict:
        """Loss, running errors, goodness and the negative labels of the step (waits for the device);
        raises :class:`ffsim.crossbar.NonFiniteInput` where a chip was given NaN or inf in this step."""
        if self._stats is None:
            s, L = self._fetch(), self._L
            check_nonfinite(s[4 * L + 3, 0])
            loss_pos = [float(v) for v in s[2 * L:3 * L].mean(axis=1)]
            loss_neg = [float(v) for v in s[3 * L:4 * L].mean(axis=1)]
            self._stats = {
                "loss": float(np.sum(loss_pos) + np.sum(loss_neg)), "head_loss": float(s[4 * L + 1].mean()),
                "running_errors": int(s[4 * L].sum()), "n": self._B, "loss_pos": loss_pos, "loss_neg": loss_neg,
                "goodness_pos": [float(v) for v in s[:L].mean(axis=1)],
                "goodness_neg": [float(v) for v in s[L:2 * L].mean(axis=1)],
                "pair_errors": [float(v) for v in (s[L:2 * L] >= s[:L]).mean(axis=1)],
                "negative_labels": s[4 * L + 2].astype(np.int64) if self._neg is None else self._neg}
            self._fetch = None
        return self._stats


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
    def embed_normalized(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """The normalized input rows for images ``x`` (row r uses image ``r % len(x)``) with label codes
        ``codes`` (float64 of the backend: class c ≥ 0, −1 the neutral label); one fused pass."""
        cfg = self.cfg
        h = self.xp.empty((len(codes), self.in_features), dtype=np.float32)
        self.kernels.embed_rows(x, codes, np.float32(cfg.label_strength), self.num_classes,
                                cfg.label_mode == "concat", NORM_CODES[cfg.norm], h)
        return h

    def head_inputs(self) -> list[np.ndarray]:
        """The head's inputs after a :meth:`climb`: the normalized activities from ``min_level`` on."""
        return self.last_normalized[self.head_from:]

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

        On the GPU backend the step crosses between host and device twice: one upload (the label codes
        and the host generator's draws) and one download (every per-case statistic).  With
        ``FFSIM_GPU_GRAPH=1`` the device part of the step is captured in a CUDA graph and replayed
        (:mod:`ffsim.gpu.graph`; the same results).  :meth:`submit_step` is this step with its statistics
        read later."""
        return self.submit_step(x, labels, rng, gain, head_targets=head_targets, negative_probs=negative_probs,
                                head_temperature=head_temperature).stats()

    def submit_step(self, x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, gain: float, *,
                    head_targets: np.ndarray | None = None, negative_probs: np.ndarray | None = None,
                    head_temperature: float = 1.0) -> StepStats:
        """:meth:`train_step` whose statistics are read when asked for (:meth:`StepStats.stats`).

        The step is applied to the model (on the GPU backend: its work is queued on the device) before this
        returns; only the download of its statistics waits.  So a loop that submits mini-batch k + 1 before
        it reads k's statistics keeps the GPU busy while the host prepares the next step (``ffsim train``
        does); the results are those of :meth:`train_step`, step for step.  A non-finite input to a chip
        (:class:`ffsim.crossbar.NonFiniteInput`) is raised by ``stats()``, after any step submitted since."""
        cfg = self.cfg
        bk = self.backend
        labels_h = np.asarray(bk.to_host(labels)).astype(np.int64)
        B, C = len(labels_h), self.num_classes
        extra, neg_h = negative_uploads(rng, labels_h, C, cfg.negatives == "hard")
        # label codes (positive, neutral) and the draws: one upload
        up_h = np.concatenate([labels_h.astype(np.float64), np.full(B, -1.0), *extra])
        plain = head_targets is None and negative_probs is None and head_temperature == 1.0
        fetch = self.queue_device_step(x, up_h, gain, graph=plain, head_targets=head_targets,
                                       negative_probs=negative_probs, head_temperature=head_temperature)
        return StepStats(fetch, len(self.layers), B, neg_h)

    def _device_step(self, x, up, gain: float, *, head_targets=None, negative_probs=None,
                     head_temperature: float = 1.0):
        """The mini-batch's work on the backend: images ``x`` and the uploaded float64 values ``up`` (positive
        label codes, neutral codes, then the hard-negative draws or the uniform negatives), both arrays of the
        backend; returns the statistics array (left there).  With the default keywords it makes no transfer and
        no host decision on device values: what a CUDA graph captures (:mod:`ffsim.gpu.graph`); distillation's
        ``head_targets`` and ``negative_probs`` go up here (such steps run without a graph)."""
        cfg = self.cfg
        bk, xp, k = self.backend, self.xp, self.kernels
        B, C, L = x.shape[0], self.num_classes, len(self.layers)
        hard = cfg.negatives == "hard"
        codes, lab = up[:2 * B], up[:B]
        # per-case statistics, downloaded once: goodness (pos, neg), loss (pos, neg), head wrong/nll, negatives;
        # and the flag of the chips' updates that an input was not finite (Crossbar.pulse_updates, nonfinite)
        S = xp.zeros((4 * L + 4, B), dtype=np.float64)
        # positive and neutral passes together (independent of each other)
        hs, acts = self.climb(self.embed_normalized(x, codes))
        sss, outs = self.last_sumsq, self.last_normalized
        deltas = []
        for i, (layer, a, ss) in enumerate(zip(self.layers, acts, sss, strict=True)):
            D = xp.empty((2 * B, layer.n_out), dtype=np.float32)  # positive then negative cases
            layer.local(a[:B], True, ss[:B], delta=D[:B], G=S[i], loss=S[2 * L + i])
            deltas.append(D)
        # softmax head on the neutral pass
        head_in = [h[B:] for h in outs[self.head_from:]]
        logits = self.head.logits(head_in)
        probs = xp.empty((B, C), dtype=np.float32)
        err = xp.empty((B, C), dtype=np.float32)
        has_t = head_targets is not None
        targets = bk.asarray(head_targets, dtype=np.float32) if has_t else probs
        k.head_rows(logits, lab, targets, has_t, 1.0 / float(head_temperature), B, probs, err, S[4 * L],
                    S[4 * L + 1])
        self.head.step(head_in, err, gain * head_temperature)
        # negatives
        if hard:
            oracle = probs if negative_probs is None else bk.asarray(negative_probs)
            k.negative_rows(oracle, lab, up[2 * B:3 * B], up[3 * B:4 * B], S[4 * L + 2])
            neg_codes = S[4 * L + 2]
        else:
            neg_codes = up[2 * B:3 * B]
        hs_n, acts_n = self.climb(self.embed_normalized(x, neg_codes))
        for i, (layer, a) in enumerate(zip(self.layers, acts_n, strict=True)):
            layer.local(a, False, self.last_sumsq[i], delta=deltas[i][B:], G=S[L + i], loss=S[3 * L + i])
        update_layers(self.layers, [xp.concatenate([hs[i][:B], hs_n[i]]) for i in range(L)], deltas,
                      cfg.lr * gain, B, nonfinite=S[4 * L + 3, :1])
        return S

    # evaluation --------------------------------------------------------------------------------
    def predict_softmax(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (numpy) from one neutral-label pass and the softmax head."""
        x = self.backend.asarray(x)
        self.climb(self.embed_normalized(x, self.backend.asarray(np.full(len(x), -1.0))))
        return self.backend.to_host(softmax(self.head.logits(self.head_inputs()), self.xp))

    def goodness_scores(self, x: np.ndarray) -> np.ndarray:
        """Goodness summed over layers ``min_level``.. for every label (batch × classes, numpy)."""
        xp = self.xp
        x = self.backend.asarray(x)
        B, C = len(x), self.num_classes
        scores = xp.zeros((B, C))
        for c in range(C):
            _, acts = self.climb(self.embed_normalized(x, self.backend.asarray(np.full(B, float(c)))))
            for k in range(self.head_from, len(self.layers)):
                scores[:, c] += self.layers[k].probs(acts[k], self.last_sumsq[k])[0]
        return self.backend.to_host(scores)

    # bookkeeping -------------------------------------------------------------------------------


