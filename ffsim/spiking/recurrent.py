"""Spiking evaluation of the recurrent FF network: bottom-up and top-down volleys coinciding on the same neurons.

Two sources converge on every hidden layer of the recurrent FF network (Hinton 2022, §3.4;
:class:`~ffsim.ff.recurrent.RecurrentFF`): the layer below (the image, for the first layer) and the layer
above (the clamped one-hot label, for the top layer).  Here every hidden layer is a coincidence-detecting twin
(:class:`~ffsim.spiking.coincidence.CoincidenceLayer`) whose inputs are exactly the rows of the analog layer's
weight matrix, the layer below's rows followed by the layer above's.  At every synchronous iteration each layer
receives, in one presentation slot, the bottom-up volley and the top-down volley built from the previous
iteration; when the two sources agree their spikes land on the same neurons in the same time step and push them
over threshold, when they disagree fewer neurons fire.  Every (image, label) pair is one presentation
(index ``image * C + label``); all presentations of one layer and one iteration run in one Brian2 simulation.

Iterations, as in the analog network:

* iteration 0, the bottom-up pass: layer ``k`` receives the volley of the layer below of the same pass (the
  image for layer 0) and nothing from above.  It does not depend on the label, so it runs once per image;
* iterations ``t = 1 .. max(recurrent_eval_iters)``: every layer receives the volleys of its two neighbours
  built from their states after iteration ``t - 1`` (synchronous update) and emits spike counts ``c_t``.

Damping is a digital state between iterations.  The analog network keeps ``a_t = 0.3 a_(t-1) + 0.7 relu(z_t)``
(``recurrent_damping`` = 0.3); the twin keeps ``d_t = 0.3 d_(t-1) + 0.7 c_t`` with the spike counts ``c_t`` of
the iteration (``d_0 = c_0``), i.e. the counts of the neurons are read out by a counter and mixed with the
previous state before they are sent on.  A physical alternative (membrane potential carried over between
slots, or stochastic thinning of old and new spikes) would change what is damped (potential, not activity) or
add noise; the digital state keeps the twin's dynamics those of the analog network, up to quantization.

The relay.  Because ``d_t`` is not an integer, each layer's state is sent to its neighbours as a new volley:
the relay normalizes the state as the analog network normalizes activities (``ffsim.ff.goodness.normalize``,
separately for every source: each source of an analog layer is normalized on its own) and sends
``k = round(q · n / G)`` spikes for a normalized activity ``n`` (``q``: ``spikes_per_unit``, ``G``: the
receiving layer's gain, below).  The ``k`` spikes of unit ``u`` go out at the start of the slot on ``k``
distinct fibres of a population of ``K`` (``K`` = the largest count of the batch), each fibre synapsing with
weight ``W[u] / (q · threshold_drive)``: a synchronous population (unary) code, so that a neuron sees the
whole drive ``≈ n · W / threshold_drive`` of both sources in one time step (spikes of one fibre in successive
steps would be summed with the leak and partial-sum effects described in :mod:`ffsim.spiking.ff_bridge`).  The
clamped label is relayed in the same way (its normalized one-hot is ``sqrt(C)`` on the label unit for the
``rms`` norm, 1 for ``l2``).

Normalization and gain.  A :class:`CoincidenceLayer` has one gain per presentation, which multiplies all its
synapses, so it can carry one source's normalization, not two.  The image is the only source that is not
relayed: it is latency-coded as in :func:`~ffsim.spiking.ff_bridge.evaluate_spiking` (one spike per
nonzero pixel, all in the first time step with the default window), and its normalization, that of the input
its spikes deliver (every spiking pixel at full intensity), is layer 0's gain ``G``; the relayed top-down
volley into layer 0 is divided by that gain (``k = round(q · n / G)``) so that the product is again
``n · W``.  The other layers have gain 1 and all their normalization is done in the relay.

Goodness: the spike goodness of an iteration is the network's goodness function of the spike counts
(``sumsq``: Σ_j c_j²), summed over the hidden layers (from ``SpikingConfig.from_layer``, default 0: the
analog network sums all); a label's score averages it over ``recurrent_eval_iters`` and the label with the
highest score wins, as in :meth:`RecurrentFF.goodness_scores`, which is reported beside it.  The goodness of
the damped state ``d_t`` (the exact counterpart of what the analog network scores) and the plain spike count
are reported too, and so are the mean scores with the true and with the wrong labels (the "agreement gives
more spikes" measure).

Restrictions: the image must be latency-coded (the relay volleys are synchronous; a Poisson rate code spreads
the image over a window that the relay does not share).  ``jitter_s`` jitters every input spike, relayed
ones included (with its generator; times are clipped to the slot, so about half of a volley stays at t = 0,
as in :func:`~ffsim.spiking.encoders.latency_encode`); the image's latency window should stay well below
``tau_s`` so that both sources arrive together.

Measured (``experiments/spiking_recurrent.py``, a 784-40-40 network trained for 5 epochs on 5000 MNIST
images, 100 test images): with the defaults the spiking predictions agree with the analog goodness on 86 %
of the images (error 21 % vs 23 %) and with the analog goodness of the binarized images on 94 %; with fine
counts and no leak within a volley (threshold_drive 0.05, 16 spikes per unit, tau 200 ms) on 99 % of the
latter: what remains is the latency code's binarization of the image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ffsim.ff.goodness import goodness
from ffsim.ff.recurrent import RecurrentFF
from ffsim.spiking.coincidence import CoincidenceLayer
from ffsim.spiking.encoders import SpikeTrains, _jitter, latency_encode
from ffsim.spiking.ff_bridge import SpikingConfig, _norm_gain, layer_weights

__all__ = ["RecurrentSpikingEvaluation", "evaluate_spiking_recurrent", "relay_counts"]


@dataclass(frozen=True, eq=False)
class RecurrentSpikingEvaluation:
    """Spike and analog goodness of every (image, label) in the recurrent network, and the error rates.

    Attributes
    ----------
    spike_scores
        Spike goodness (goodness function of the spike counts, Σ counts² for ``sumsq``) summed over the scored
        layers and averaged over ``recurrent_eval_iters``, (n_images, n_classes).
    state_scores
        The same for the damped digital state ``d_t`` (what the analog network scores), (n_images, n_classes).
    count_scores
        Total output spikes summed over the scored layers, averaged over ``recurrent_eval_iters``,
        (n_images, n_classes).
    step_goodness
        Spike goodness of every iteration (0: the bottom-up pass) and layer,
        (max(recurrent_eval_iters) + 1, n_layers, n_images, n_classes).
    step_spikes
        Total output spikes of every iteration and layer, same shape, int64.
    analog_scores
        The network's own goodness evaluation (:meth:`RecurrentFF.goodness_scores`), (n_images, n_classes).
    error_spiking, error_state, error_count, error_analog
        Fractions of images misclassified by ``spike_scores``, ``state_scores``, ``count_scores`` and
        ``analog_scores`` (None without labels); ties go to the lowest label.
    agreement
        Fraction of images where the spike scores and the analog scores predict the same label.
    tie_fraction
        Fraction of images whose highest spike score is shared by several labels.
    goodness_true, goodness_wrong
        Mean spike score with the true label clamped, and with a wrong one (mean over images and the
        ``C - 1`` wrong labels); None without labels.
    spikes_true, spikes_wrong
        The same for ``count_scores`` (spikes per presentation, summed over the scored layers).
    dropped_input_spikes
        Input spikes dropped because an input spiked twice in one time step (all layers and iterations).
    brian2_s, wall_s
        Seconds spent in Brian2 (build and run), and in the whole evaluation.
    config
        The :class:`~ffsim.spiking.ff_bridge.SpikingConfig` as a dict, with ``spikes_per_unit``,
        ``recurrent_eval_iters`` and ``recurrent_damping`` added.
    """

    spike_scores: np.ndarray
    state_scores: np.ndarray
    count_scores: np.ndarray
    step_goodness: np.ndarray
    step_spikes: np.ndarray
    analog_scores: np.ndarray
    error_spiking: float | None
    error_state: float | None
    error_count: float | None
    error_analog: float | None
    agreement: float
    tie_fraction: float
    goodness_true: float | None
    goodness_wrong: float | None
    spikes_true: float | None
    spikes_wrong: float | None
    dropped_input_spikes: int
    brian2_s: float
    wall_s: float
    config: dict


def relay_counts(state: np.ndarray, norm: str, spikes_per_unit: float, gain: np.ndarray | None = None) -> np.ndarray:
    """Spikes that the relay sends for each unit of a state: ``round(q · n / G)``, ``n`` the state normalized.

    Parameters
    ----------
    state
        Non-negative activities (spike counts or damped counts), (n_presentations, n_units).
    norm
        The network's normalization, ``"rms"`` or ``"l2"``.
    spikes_per_unit
        ``q``: spikes per unit of normalized activity.
    gain
        Gain ``G`` of the receiving layer for each presentation (n_presentations,); default 1.

    Returns
    -------
    numpy.ndarray
        int64 spike counts, same shape as ``state``.
    """
    s = np.asarray(state, dtype=np.float64)
    if s.ndim != 2 or not np.all(np.isfinite(s)) or (s.size and s.min() < 0):
        raise ValueError(f"state must be a finite, non-negative 2-D array (got shape {s.shape})")
    if norm not in ("rms", "l2"):
        raise ValueError(f"norm must be 'rms' or 'l2' (got {norm!r})")
    if not (isinstance(spikes_per_unit, int | float) and np.isfinite(spikes_per_unit) and spikes_per_unit > 0):
        raise ValueError(f"spikes_per_unit must be a finite number > 0 (got {spikes_per_unit!r})")
    n = s * _norm_gain(s, norm)[:, None]
    if gain is not None:
        g = np.asarray(gain, dtype=np.float64)
        if g.shape != (len(s),) or not np.all(np.isfinite(g)) or (g.size and g.min() <= 0):
            raise ValueError(f"gain must be finite, > 0, with shape ({len(s)},) (got shape {g.shape})")
        n = n / g[:, None]
    return np.maximum(np.rint(spikes_per_unit * n), 0).astype(np.int64)


def _population_volley(k: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(sample, input) of a synchronous population volley: unit ``u`` of presentation ``p`` fires ``k[p, u]``
    distinct fibres ``offset + u * K + m`` (``m < k[p, u]``) of its population of ``K = max(k)``; returns ``K``."""
    P, N = k.shape
    K = max(int(k.max()) if k.size else 0, 1)
    flat = k.ravel()
    owner = np.repeat(np.arange(P * N, dtype=np.int64), flat)
    m = np.arange(owner.size, dtype=np.int64) - np.repeat(np.cumsum(flat) - flat, flat)
    p, u = np.divmod(owner, N)
    return p, offset + u * K + m, K


class _Twin:
    """The spiking twin of one hidden layer: builds its coincidence layer for the sources of one run."""

    def __init__(self, W: np.ndarray, b: np.ndarray, n_below: int, cfg: SpikingConfig, q: float):
        self.W_below, self.W_above, self.b = W[:n_below], W[n_below:], b
        self.cfg, self.q = cfg, q

    def run(self, sources: list[tuple[str, object]], gain: np.ndarray, n: int, duration_s: float,
            rng: np.random.Generator | None) -> tuple[np.ndarray, int, float]:
        """Counts (n, n_out) of the layer driven by ``sources``: ``("image", trains)`` on the bottom rows or
        ``("relay", counts)`` on the bottom (first source) or top (second source) rows."""
        cfg, rows, samples, inputs, times, offset = self.cfg, [], [], [], [], 0
        for part, (kind, src) in zip((self.W_below, self.W_above), sources, strict=False):
            if kind == "image":
                rows.append(part)
                samples.append(src.sample)
                inputs.append(src.input + offset)
                times.append(src.time_s)
                offset += part.shape[0]
            elif kind == "relay":
                s, i, K = _population_volley(src, offset)
                rows.append(np.repeat(part / self.q, K, axis=0))
                samples.append(s)
                inputs.append(i)
                times.append(_jitter(np.zeros(s.size), cfg.jitter_s, rng, duration_s))
                offset += part.shape[0] * K
        layer = CoincidenceLayer.from_analog(
            np.concatenate(rows), self.b, threshold_drive=cfg.threshold_drive, tau_s=cfg.tau_s,
            refractory_s=cfg.refractory_s, reset=cfg.reset, tau_syn_s=cfg.tau_syn_s, dt_s=cfg.dt_s,
            tail_s=cfg.tail_s, codegen_target=cfg.codegen_target)
        trains = SpikeTrains(np.concatenate(samples), np.concatenate(inputs), np.concatenate(times), n, offset,
                             duration_s)
        resp = layer.run(trains, gain=gain, keep_spikes=False)
        return resp.counts, resp.dropped_input_spikes, resp.wall_s


def _check_inputs(net, x, labels, cfg, rng, spikes_per_unit) -> tuple[np.ndarray, np.ndarray | None]:
    if not isinstance(net, RecurrentFF):
        raise ValueError(f"net must be a RecurrentFF (got {type(net).__name__})")
    if cfg.encoding != "latency":
        raise ValueError(f"cfg.encoding must be 'latency' for the recurrent network (the relayed volleys are "
                         f"synchronous; got {cfg.encoding!r})")
    if cfg.jitter_s > 0 and not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator with jitter_s={cfg.jitter_s} "
                         f"(got {type(rng).__name__})")
    ok = isinstance(spikes_per_unit, int | float | np.integer | np.floating) and not isinstance(spikes_per_unit, bool)
    if not (ok and np.isfinite(spikes_per_unit) and spikes_per_unit > 0):
        raise ValueError(f"spikes_per_unit must be a finite number > 0 (got {spikes_per_unit!r})")
    n_in = net.below[0]
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != n_in or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"x must have shape (n_images, {n_in}) (got {x.shape})")
    xf = x.astype(np.float64)
    if x.size and (not np.all(np.isfinite(xf)) or xf.min() < 0 or xf.max() > 1):
        raise ValueError(f"x must hold intensities in [0, 1] (got range [{np.nanmin(xf)}, {np.nanmax(xf)}])")
    C = net.num_classes
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(x),) or not np.issubdtype(labels.dtype, np.integer) or (
                labels.size and (labels.min() < 0 or labels.max() >= C)):
            raise ValueError(f"labels must be {len(x)} integer class indices in [0, {C}) (got shape {labels.shape}, "
                             f"dtype {labels.dtype})")
    first = 0 if cfg.from_layer is None else cfg.from_layer
    if first >= len(net.layers):
        raise ValueError(f"cfg.from_layer must be in [0, {len(net.layers) - 1}] (got {first})")
    return xf, labels


def evaluate_spiking_recurrent(net: RecurrentFF, x: np.ndarray, labels: np.ndarray | None = None,
                               cfg: SpikingConfig | None = None, *, rng: np.random.Generator | None = None,
                               spikes_per_unit: float = 4.0) -> RecurrentSpikingEvaluation:
    """Classify images by the spike goodness of the spiking twin of a recurrent FF network.

    Parameters
    ----------
    net
        A :class:`~ffsim.ff.recurrent.RecurrentFF`.
    x
        Images as vectors with intensities in [0, 1], shape (n_images, n_inputs).
    labels
        True labels (n_images,), for the error rates and the true/wrong-label means; optional.
    cfg
        Spiking settings (default :class:`~ffsim.spiking.ff_bridge.SpikingConfig`); the encoding must be
        ``"latency"``; ``from_layer`` (default 0) is the first layer scored.
    rng
        Generator of the timing jitter; required when ``cfg.jitter_s > 0``.
    spikes_per_unit
        ``q``: spikes a relay sends per unit of normalized activity (see the module doc); larger values
        quantize the relayed activities more finely and cost more synapses.

    Returns
    -------
    RecurrentSpikingEvaluation
    """
    t_start = time.perf_counter()
    cfg = SpikingConfig() if cfg is None else cfg
    xf, labels = _check_inputs(net, x, labels, cfg, rng, spikes_per_unit)
    q = float(spikes_per_unit)
    ncfg = net.cfg
    L, C, n = len(net.layers), net.num_classes, len(xf)
    T = max(ncfg.recurrent_eval_iters)
    keep = float(ncfg.recurrent_damping)
    first = 0 if cfg.from_layer is None else cfg.from_layer
    twins = [_Twin(W, b, net.below[k], cfg, q) for k, (W, b) in enumerate(layer_weights(net, cfg.weight_source))]
    kinds = [layer.kind for layer in net.layers]
    step_g = np.zeros((T + 1, L, n, C))
    step_c = np.zeros((T + 1, L, n, C), dtype=np.int64)
    state_g = np.zeros((T + 1, L, n, C))
    dropped, brian2_s = 0, 0.0

    def image(xb: np.ndarray) -> tuple[SpikeTrains, np.ndarray]:
        trains = latency_encode(xb, cfg.window_s, jitter_s=cfg.jitter_s, rng=rng)
        return trains, _norm_gain((xb > 0).astype(np.float64), ncfg.norm)

    def run(k: int, sources: list, gain: np.ndarray, m: int, duration_s: float) -> np.ndarray:
        nonlocal dropped, brian2_s
        counts, drop, wall = twins[k].run(sources, gain, m, duration_s, rng)
        dropped += drop
        brian2_s += wall
        return counts.astype(np.float64)

    for a in range(0, n, cfg.batch_images):
        xb = xf[a:a + cfg.batch_images]
        nb = len(xb)
        P = nb * C
        sl = slice(a, a + nb)

        # iteration 0: bottom-up pass, once per image (no top-down input, so no label)
        img, g_img = image(xb)
        dur = img.duration_s
        ones_n, ones_p = np.ones(nb), np.ones(P)
        c0 = []
        for k in range(L):
            src = ("image", img) if k == 0 else ("relay", relay_counts(c0[-1], ncfg.norm, q))
            c0.append(run(k, [src], g_img if k == 0 else ones_n, nb, dur))
        counts = [np.repeat(c, C, axis=0) for c in c0]
        state = [c.copy() for c in counts]
        label_state = np.tile(np.eye(C), (nb, 1))
        for t in range(T + 1):
            if t > 0:
                img, g_img = image(np.repeat(xb, C, axis=0))
                counts = []
                for k in range(L):
                    gain = g_img if k == 0 else ones_p
                    below = ("image", img) if k == 0 else ("relay", relay_counts(state[k - 1], ncfg.norm, q))
                    above_state = label_state if k == L - 1 else state[k + 1]
                    above = ("relay", relay_counts(above_state, ncfg.norm, q, gain))
                    counts.append(run(k, [below, above], gain, P, img.duration_s))
                state = [keep * d + (1 - keep) * c for d, c in zip(state, counts, strict=True)]
            for k in range(L):
                step_g[t, k, sl] = goodness(counts[k], kinds[k]).reshape(nb, C)
                step_c[t, k, sl] = counts[k].sum(axis=1).reshape(nb, C).astype(np.int64)
                state_g[t, k, sl] = goodness(state[k], kinds[k]).reshape(nb, C)

    ev = list(ncfg.recurrent_eval_iters)
    spike_scores = step_g[ev, first:].sum(axis=1).mean(axis=0)
    state_scores = state_g[ev, first:].sum(axis=1).mean(axis=0)
    count_scores = step_c[ev, first:].sum(axis=1).mean(axis=0)
    analog = np.concatenate([net.goodness_scores(xf[i:i + 500].astype(np.float32))
                             for i in range(0, n, 500)]) if n else np.zeros((0, C))
    m = max(n, 1)
    ties = (spike_scores == spike_scores.max(axis=1, keepdims=True)).sum(axis=1) > 1 if n else np.zeros(0, bool)

    def error(scores: np.ndarray) -> float | None:
        return None if labels is None else float((scores.argmax(axis=1) != labels).sum() / m)

    def true_wrong(scores: np.ndarray) -> tuple[float | None, float | None]:
        if labels is None or n == 0:
            return None, None
        is_true = np.eye(C, dtype=bool)[labels]
        return float(scores[is_true].mean()), float(scores[~is_true].mean()) if C > 1 else None

    g_true, g_wrong = true_wrong(spike_scores)
    s_true, s_wrong = true_wrong(count_scores)
    agree = float((spike_scores.argmax(axis=1) == analog.argmax(axis=1)).sum() / m) if n else 1.0
    config = {**cfg.as_dict(), "spikes_per_unit": q, "recurrent_eval_iters": ev, "recurrent_damping": keep}
    return RecurrentSpikingEvaluation(
        spike_scores=spike_scores, state_scores=state_scores, count_scores=count_scores, step_goodness=step_g,
        step_spikes=step_c, analog_scores=analog, error_spiking=error(spike_scores), error_state=error(state_scores),
        error_count=error(count_scores), error_analog=error(analog), agreement=agree,
        tie_fraction=float(ties.sum() / m), goodness_true=g_true, goodness_wrong=g_wrong, spikes_true=s_true,
        spikes_wrong=s_wrong, dropped_input_spikes=dropped, brian2_s=brian2_s, wall_s=time.perf_counter() - t_start,
        config=config)
