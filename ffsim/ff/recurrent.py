"""The recurrent top-down FF network (Hinton 2022, §3.4).

The input is treated as a video of a static image.  Hidden layer l receives the normalized activities of
the layer below and of the layer above *at the previous time step*; the image is the bottom layer and
the label (one-hot, or neutral) is the top layer, both clamped.  After one bottom-up pass (no top-down
input), the net runs ``recurrent_iters`` (8) synchronous iterations with damping: new activity =
``recurrent_damping`` (0.3) × old + 0.7 × ReLU(input).  On a chip each hidden layer is one crossbar
whose rows take the layer below and the layer above.

Learning: at every iteration each layer's FF gradient (its goodness on positive vs negative data) is
computed from its own inputs and outputs of that step and accumulated; the weights are updated once per
mini-batch.  Negatives: hard labels sampled from the prediction of one bottom-up pass with the neutral
label (a softmax head on the normalized hidden activities, trained by its own delta rule).
Classification: for each label, run the net with that label clamped and average the goodness summed
over hidden layers across iterations 3–5 (``recurrent_eval_iters``); the highest wins.
"""

from __future__ import annotations

import numpy as np

from ffsim.ff.config import FFConfig
from ffsim.ff.goodness import normalize
from ffsim.ff.layer import SoftmaxHead, softmax, update_layers
from ffsim.ff.model import FlagStats, LayeredModel
from ffsim.ff.network import build_layers, negative_uploads

__all__ = ["RecurrentFF"]


class RecurrentFF(LayeredModel):
    """Hidden layers fed bottom-up and top-down, label clamped on top."""

    device_batches = True  # train_step takes device images on the GPU backend

    eval_batch = 500

    def __init__(self, cfg: FFConfig, in_features: int, num_classes: int, rng: np.random.Generator):
        self.cfg = cfg
        self.num_classes = num_classes
        widths = list(cfg.layers)
        below = [in_features, *widths[:-1]]
        above = [*widths[1:], num_classes]
        # layer l's crossbar has rows for the layer below followed by rows for the layer above
        self.layers = []
        for k in range(len(widths)):
            (layer,) = build_layers(cfg, [below[k] + above[k], widths[k]], rng, layer_tag=k)
            self.layers.append(layer)
        self.below = below
        self.head = SoftmaxHead(widths, num_classes, lr=cfg.lr_head, weight_cost=cfg.weight_cost_head,
                                momentum=cfg.momentum, backend=self.backend)

    def _iterate(self, x_n: np.ndarray, top_n: np.ndarray, steps: int, learn: list | None = None,
                 positive: bool = True) -> list[list[np.ndarray]]:
        """Bottom-up pass, then ``steps`` damped synchronous iterations; returns activities per step.

        With ``learn`` (a list of per-layer [sum of inputs·δ, sum of δ, count]), each step's local FF
        gradient is accumulated.
        """
        cfg = self.cfg
        xp = self.xp
        L = len(self.layers)
        zeros_above = [xp.zeros((len(x_n), a), np.float32) for a in [*cfg.layers[1:], self.num_classes]]
        acts = []
        h_prev = x_n
        for k, layer in enumerate(self.layers):  # bottom-up pass, no top-down input yet
            a = layer.forward(xp.concatenate([h_prev, zeros_above[k]], axis=1))
            acts.append(a)
            h_prev = normalize(a, cfg.norm, xp=xp)
        history = [acts]
        keep = np.float32(cfg.recurrent_damping)
        for _ in range(steps):
            norm = [normalize(a, cfg.norm, xp=xp) for a in acts]
            new = []
            for k, layer in enumerate(self.layers):
                below = x_n if k == 0 else norm[k - 1]
                above = top_n if k == L - 1 else norm[k + 1]
                inp = xp.concatenate([below, above], axis=1)
                a = layer.forward(inp)
                if learn is not None:
                    learn[k].append((inp, layer.local(a, positive)[0]))
                new.append(keep * acts[k] + (1 - keep) * a)
            acts = new
            history.append(acts)
        return history

    def _inputs(self, x: np.ndarray, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xp = self.xp
        return normalize(self.backend.asarray(x), self.cfg.norm, xp=xp), normalize(top, self.cfg.norm, xp=xp)

    def train_step(self, x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, gain: float) -> dict:
        """One mini-batch (see the module's text); returns the loss, running errors and cases."""
        return self.submit_step(x, labels, rng, gain).stats()

    def submit_step(self, x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, gain: float) -> FlagStats:
        """:meth:`train_step` whose statistics are read when asked for (as
        :meth:`ffsim.ff.network.FFNetwork.submit_step`: the step is applied, on the GPU queued, before this
        returns; with ``FFSIM_GPU_GRAPH=1`` replayed from a CUDA graph).  The host draws the negatives' random
        numbers (hard: a uniform and an integer per case; uniform: the labels) and uploads them with the labels."""
        labels_h = np.asarray(self.backend.to_host(labels)).astype(np.int64)
        extra, _ = negative_uploads(rng, labels_h, self.num_classes, self.cfg.negatives == "hard")
        up_h = np.concatenate([labels_h.astype(np.float64), *extra])
        return FlagStats(self.queue_device_step(x, up_h, gain), len(labels_h))

    def _device_step(self, x, up, gain: float):
        """The mini-batch's work on the backend from the images ``x`` and the uploaded values ``up`` (labels,
        then the negatives' draws); returns the statistics array (:meth:`step_statistics`), left there.  It makes
        no transfer and decides nothing on the host from device values: what a CUDA graph captures."""
        cfg = self.cfg
        xp = self.xp
        B, C = x.shape[0], self.num_classes
        lab = up[:B]
        labels = lab.astype(np.int64)
        eye = xp.eye(C, dtype=np.float32)
        onehot = eye[labels]
        x_n, neutral_n = self._inputs(x, xp.full((B, C), 1.0 / C, np.float32))
        # one bottom-up pass with the neutral label: the head's prediction picks hard negatives
        (acts0,) = self._iterate(x_n, neutral_n, 0)
        head_in = [normalize(a, cfg.norm, xp=xp) for a in acts0]
        probs = softmax(self.head.logits(head_in), xp)
        self.head.update(head_in, probs, onehot, gain)
        if cfg.negatives == "hard":
            neg = xp.empty(B, dtype=np.float64)
            self.kernels.negative_rows(probs, lab, up[B:2 * B], up[2 * B:3 * B], neg)
            neg = neg.astype(np.int64)
        else:
            neg = up[B:2 * B].astype(np.int64)
        learn_pos = [[] for _ in self.layers]
        learn_neg = [[] for _ in self.layers]
        hist_p = self._iterate(x_n, normalize(onehot, cfg.norm, xp=xp), cfg.recurrent_iters, learn_pos, True)
        hist_n = self._iterate(x_n, normalize(eye[neg], cfg.norm, xp=xp), cfg.recurrent_iters,
                               learn_neg, False)
        losses, inps, ds = [], [], []
        for k, layer in enumerate(self.layers):
            Gp = layer.probs(hist_p[-1][k])[0]
            Gn = layer.probs(hist_n[-1][k])[0]
            losses.append(layer.loss(Gp, True).mean() + layer.loss(Gn, False).mean())
            inps.append(xp.concatenate([i for i, _ in learn_pos[k]] + [i for i, _ in learn_neg[k]]))
            ds.append(xp.concatenate([dd for _, dd in learn_pos[k]] + [dd for _, dd in learn_neg[k]]))
        # gradients averaged over the iterations: normalize by cases x iterations
        flag = xp.zeros(1)  # the chips' updates flag a non-finite input here (read with the statistics)
        update_layers(self.layers, inps, ds, cfg.lr * gain, B * cfg.recurrent_iters, nonfinite=flag)
        return self.step_statistics(flag[0], (probs.argmax(axis=1) != labels).sum(), losses, xp)

    def goodness_scores(self, x: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        xp = self.xp
        B, C = len(x), self.num_classes
        steps = max(cfg.recurrent_eval_iters)
        scores = xp.zeros((B, C))
        x_n = normalize(self.backend.asarray(x), cfg.norm, xp=xp)
        for c in range(C):
            top = normalize(xp.eye(C, dtype=np.float32)[xp.full(B, c)], cfg.norm, xp=xp)
            hist = self._iterate(x_n, top, steps)
            for t in cfg.recurrent_eval_iters:
                for layer, a in zip(self.layers, hist[t], strict=True):
                    scores[:, c] += layer.probs(a)[0]
        return self.backend.to_host(scores / len(cfg.recurrent_eval_iters))

    def predict_softmax(self, x: np.ndarray) -> np.ndarray:
        B, C = len(x), self.num_classes
        x_n, neutral_n = self._inputs(x, self.xp.full((B, C), 1.0 / C, np.float32))
        (acts0,) = self._iterate(x_n, neutral_n, 0)
        return self.backend.to_host(softmax(self.head.logits([normalize(a, self.cfg.norm, xp=self.xp)
                                                              for a in acts0]), self.xp))
