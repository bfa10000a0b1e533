"""Unsupervised Forward-Forward with hybrid negatives (Hinton 2022, §3.2).

Positive data are real images; negative data are hybrids of two different digits mixed through a mask
with large coherent regions: a random bit image blurred repeatedly with the filter [1/4, 1/2, 1/4]
horizontally and vertically (``hybrid_blurs`` times, default 6) and thresholded at 0.5.  Hybrids keep
short-range correlations and break long-range shape, so the layers must learn shape.  A linear softmax
head, trained by its own delta rule on the normalized activities of the last three hidden layers
(``head_layers``), reads out the class; no label enters the network and no gradient reaches the hidden
layers.
"""

from __future__ import annotations

import numpy as np

from ffsim.ff.config import FFConfig
from ffsim.ff.layer import SoftmaxHead, softmax, update_layers
from ffsim.ff.model import FlagStats, LayeredModel
from ffsim.ff.network import build_layers

__all__ = ["UnsupervisedFF", "hybrid_draws", "hybrid_images", "hybrid_masks", "mix_hybrids"]


def hybrid_masks(n: int, shape: tuple[int, int], rng: np.random.Generator, blurs: int = 6) -> np.ndarray:
    """``n`` binary masks: random bits blurred ``blurs`` times with [1/4, 1/2, 1/4] along both axes
    (edges replicated), thresholded at 0.5."""
    m = rng.integers(0, 2, size=(n, *shape)).astype(np.float32)
    for _ in range(blurs):
        for axis in (1, 2):
            p = np.concatenate([np.take(m, [0], axis=axis), m, np.take(m, [-1], axis=axis)], axis=axis)
            n_ax = m.shape[axis]
            left = np.take(p, np.arange(0, n_ax), axis=axis)
            mid = np.take(p, np.arange(1, n_ax + 1), axis=axis)
            right = np.take(p, np.arange(2, n_ax + 2), axis=axis)
            m = 0.25 * left + 0.5 * mid + 0.25 * right
    return (m > 0.5).astype(np.float32)


def hybrid_draws(labels: np.ndarray, rng: np.random.Generator, shape: tuple[int, int] = (28, 28),
                 blurs: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`hybrid_images` draws for images of classes ``labels``: each image's partner (the index of
    an image of another class) and the masks (n x pixels, float32 0/1)."""
    n = len(labels)
    partner = rng.permutation(n)
    same = labels[partner] == labels
    # re-draw partners of the same class (a few passes suffice; keep any leftovers, rare)
    for _ in range(10):
        if not same.any():
            break
        partner[same] = rng.integers(0, n, size=same.sum())
        same = labels[partner] == labels
    return partner, hybrid_masks(n, shape, rng, blurs).reshape(n, -1)


def mix_hybrids(x, masks, partner):
    """Images ``x`` (numpy or device arrays, float32) mixed with their partners through the masks."""
    return masks * x + (1 - masks) * x[partner]


def hybrid_images(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, shape: tuple[int, int] = (28, 28),
                  blurs: int = 6) -> np.ndarray:
    """Each image mixed with another image of a different class through a hybrid mask."""
    partner, m = hybrid_draws(labels, rng, shape, blurs)
    return mix_hybrids(np.asarray(x), m, partner).astype(np.float32)


class UnsupervisedFF(LayeredModel):
    """FF layers trained on real vs. hybrid images, with a linear softmax read-out."""

    device_batches = True  # train_step takes device images on the GPU backend (the hybrids are mixed there)

    def __init__(self, cfg: FFConfig, in_features: int, num_classes: int, rng: np.random.Generator):
        self.cfg = cfg
        self.num_classes = num_classes
        side = int(round(np.sqrt(in_features)))
        if side * side != in_features:
            raise ValueError(f"hybrid negatives need square images (got {in_features} pixels)")
        self.shape = (side, side)
        self.blurs = int(cfg.extra.get("hybrid_blurs", 6))
        self.layers = build_layers(cfg, [in_features, *cfg.layers], rng)
        k = cfg.head_layers or min(3, len(cfg.layers))
        self.head_from = len(cfg.layers) - k
        self.head = SoftmaxHead(list(cfg.layers[self.head_from:]), num_classes, lr=cfg.lr_head,
                                weight_cost=cfg.weight_cost_head, momentum=cfg.momentum, backend=self.backend)

    def train_step(self, x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, gain: float) -> dict:
        """One mini-batch: real images positive, their hybrids negative; returns loss, running errors, cases."""
        return self.submit_step(x, labels, rng, gain).stats()

    def submit_step(self, x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, gain: float) -> FlagStats:
        """:meth:`train_step` whose statistics are read when asked for (as
        :meth:`ffsim.ff.network.FFNetwork.submit_step`; with ``FFSIM_GPU_GRAPH=1`` replayed from a CUDA
        graph).  The hybrids' partners and masks are drawn on the host and uploaded with the labels (one
        transfer); the images stay where they are (on a GPU, a device batch is not read back) and are mixed on
        the backend."""
        bk = self.backend
        labels = np.asarray(bk.to_host(labels))
        B = len(labels)
        partner, masks = hybrid_draws(labels, rng, self.shape, self.blurs)
        up_h = np.concatenate([labels.astype(np.float64), partner.astype(np.float64),
                               masks.reshape(-1).astype(np.float64)])
        return FlagStats(self.queue_device_step(bk.asarray(x, dtype=np.float32), up_h, gain), B)

    def _device_step(self, x, up, gain: float):
        """The mini-batch's work on the backend from the images ``x`` and the uploaded values ``up`` (labels, the
        hybrids' partners, their masks); returns the statistics array (:meth:`step_statistics`), left there,
        with no transfer and no host decision on device values (what a CUDA graph captures)."""
        cfg = self.cfg
        xp = self.xp
        B = x.shape[0]
        labels = up[:B].astype(np.int64)
        neg = mix_hybrids(x, up[2 * B:].reshape(B, -1).astype(np.float32), up[B:2 * B].astype(np.int64))
        hs, acts = self.bottom_up(xp.concatenate([x, neg]))
        losses = []
        sss, outs = self.last_sumsq, self.last_normalized
        deltas = []
        for k, (layer, a) in enumerate(zip(self.layers, acts, strict=True)):
            D = xp.empty_like(a)  # positive then negative cases
            lp = layer.local(a[:B], True, sss[k][:B], delta=D[:B])[2]
            ln = layer.local(a[B:], False, sss[k][B:], delta=D[B:])[2]
            losses.append(lp.mean() + ln.mean())
            deltas.append(D)
        flag = xp.zeros(1)  # the chips' updates flag a non-finite input here (read with the statistics)
        update_layers(self.layers, hs, deltas, cfg.lr * gain, B, nonfinite=flag)
        head_in = [h[:B] for h in outs[self.head_from:]]
        probs = softmax(self.head.logits(head_in), xp)
        onehot = xp.eye(self.num_classes, dtype=np.float32)[labels]
        self.head.update(head_in, probs, onehot, gain)
        return self.step_statistics(flag[0], (probs.argmax(axis=1) != labels).sum(), losses, xp)

    def predict_softmax(self, x: np.ndarray) -> np.ndarray:
        self.bottom_up(x)
        return self.backend.to_host(softmax(self.head.logits(self.last_normalized[self.head_from:]), self.xp))

