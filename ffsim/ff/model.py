"""What every FF model shares: its layers and head, their op counters and their checkpoint state.

The engine runs where the layers' weight stores keep their arrays (``model.backend``): on the GPU backend
the activities, goodness and updates of a mini-batch stay on the device; inputs may be host or device
arrays, and what the public methods return (statistics, probabilities, scores) is numpy / Python floats.
"""

from __future__ import annotations

import numpy as np

from ffsim.crossbar import OpCounter
from ffsim.ff.kernels import NORM_CODES
from ffsim.ff.layer import check_nonfinite

__all__ = ["FlagStats", "LayeredModel"]


class FlagStats:
    """The statistics of a submitted step (:meth:`LayeredModel.queue_device_step`) whose device array holds
    the non-finite flag, the running errors and the losses (:meth:`LayeredModel.step_statistics`); downloaded
    on first use."""

    __slots__ = ("_fetch", "_n", "_stats")

    def __init__(self, fetch, n: int):
        self._fetch, self._n, self._stats = fetch, n, None

    def stats(self) -> dict:
        """Loss, running errors, cases (waits for the device); raises :class:`ffsim.crossbar.NonFiniteInput`
        where a chip was given NaN or inf in this step."""
        if self._stats is None:
            f = [float(v) for v in self._fetch()]
            check_nonfinite(f[0])
            loss = 0.0
            for v in f[2:]:  # the layers' losses, added in order
                loss += v
            self._stats = {"loss": loss, "running_errors": int(f[1]), "n": self._n}
            self._fetch = None
        return self._stats


class LayeredModel:
    """Base of the FF models: ``self.layers`` (FFLayer), ``self.head`` (SoftmaxHead), ``self.cfg``."""

    layers: list
    head: object
    device_batches = False  # whether train_step takes device images (the trainer moves the data once)

    @property
    def backend(self):
        """Where the engine runs: the backend of the layers' weight stores."""
        return self.layers[0].backend

    @property
    def xp(self):
        return self.layers[0].xp

    def host_floats(self, values: list) -> list[float]:
        """Scalars (0-d arrays of the backend) as Python floats, in one transfer from the device."""
        if self.xp is np or not values:
            return [float(v) for v in values]
        return [float(v) for v in self.backend.to_host(self.xp.stack([self.xp.asarray(v) for v in values]))]

    @staticmethod
    def step_statistics(flag, errors, losses: list, xp):
        """The device array that :class:`FlagStats` reads: ``flag``, ``errors``, then the ``losses`` (float64)."""
        return xp.concatenate([xp.asarray(flag, dtype=np.float64).reshape(1),
                               xp.asarray(errors, dtype=np.float64).reshape(1),
                               xp.stack([xp.asarray(v) for v in losses]).astype(np.float64)])

    def queue_device_step(self, x, up_h: np.ndarray, gain: float, *, graph: bool = True, **kw):
        """Run ``self._device_step(x, up, gain, **kw)`` -- the mini-batch's work on the backend, from its images
        ``x`` and the float64 values ``up_h`` that the host drew (one upload) -- or, with the GPU backend and
        ``FFSIM_GPU_GRAPH=1``, replay it from a CUDA graph (:mod:`ffsim.gpu.graph`; ``graph=False`` for steps
        that cannot be captured).  Returns a function that downloads the statistics array the step leaves on
        the device (one transfer, when called)."""
        bk = self.backend
        if bk.is_gpu and graph:
            from ffsim.gpu import graph as graphs

            runner = graphs.runner_for(self, self._device_step)
            if runner is not None:
                fetch = runner.step(bk.asarray(x), up_h, float(gain))
                if fetch is not None:
                    return fetch
        S = self._device_step(bk.asarray(x), bk.asarray(up_h), gain, **kw)

        def fetch(S=S):
            return bk.to_host(S)
        return fetch

    @property
    def kernels(self):
        """The backend's kernels (the engine's fused per-row kernels among them, :mod:`ffsim.ff.kernels`)."""
        return self.backend.kernels

    def normalize_rows(self, x: np.ndarray) -> np.ndarray:
        """Each row of ``x`` divided by its RMS (or L2 length, ``cfg.norm``), on the backend (float32)."""
        xp = self.xp
        x = self.backend.asarray(x, dtype=np.float32)
        h = xp.empty_like(x)
        self.kernels.act_rows(x, xp.empty(1, dtype=np.float32), False, False, NORM_CODES[self.cfg.norm],
                              xp.empty_like(x), xp.empty(len(x), dtype=np.float64), h)
        return h

    def bottom_up(self, inputs: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """One bottom-up pass from raw ``inputs`` (normalized first); see :meth:`climb`."""
        return self.climb(self.normalize_rows(inputs))

    def climb(self, h: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """One bottom-up pass from normalized inputs ``h``: (normalized input to each layer, ReLU activities
        of each layer).

        Σa² of each layer's activities is kept in ``self.last_sumsq`` (reused for goodness) and each layer's
        normalized activities (the next layer's input; the head's input) in ``self.last_normalized``."""
        hs, acts, sss, outs = [], [], [], []
        for layer in self.layers:
            hs.append(h)
            a, ss, h = layer.activate(layer.store.forward(h), self.cfg.norm)
            acts.append(a)
            sss.append(ss)
            outs.append(h)
        self.last_sumsq = sss
        self.last_normalized = outs
        return hs, acts

    eval_batch = 1000

    def evaluate(self, x: np.ndarray, labels: np.ndarray, which: tuple[str, ...] = ("goodness", "softmax"),
                 batch: int | None = None) -> dict[str, float | None]:
        """Error rates (fractions) of the goodness evaluation (highest summed goodness over labels; None for
        models without one) and of the softmax head with the neutral label."""
        batch = batch or self.eval_batch
        has_goodness = hasattr(self, "goodness_scores")
        out: dict[str, float | None] = {}
        n = max(len(labels), 1)
        if "goodness" in which:
            if has_goodness:
                err = sum(int((self.goodness_scores(x[a:a + batch]).argmax(axis=1) != labels[a:a + batch]).sum())
                          for a in range(0, len(labels), batch))
                out["error_goodness"] = err / n
            else:
                out["error_goodness"] = None
        if "softmax" in which:
            err = sum(int((self.predict_softmax(x[a:a + batch]).argmax(axis=1) != labels[a:a + batch]).sum())
                      for a in range(0, len(labels), batch))
            out["error_softmax"] = err / n
        return out

    @property
    def stores(self) -> list:
        return [layer.store for layer in self.layers]

    def ops(self) -> OpCounter:
        total = OpCounter()
        for s in self.stores:
            total = total + s.ops
        return total

    def state(self) -> dict[str, np.ndarray]:
        out = {}
        for k, layer in enumerate(self.layers):
            out.update({f"layer{k}.{n}": v for n, v in layer.state().items()})
        out.update({f"head.{n}": v for n, v in self.head.state().items()})
        return out

    def load_state(self, d: dict[str, np.ndarray]) -> None:
        for k, layer in enumerate(self.layers):
            prefix = f"layer{k}."
            layer.load_state({n[len(prefix):]: v for n, v in d.items() if n.startswith(prefix)})
        self.head.load_state({n[5:]: v for n, v in d.items() if n.startswith("head.")})
