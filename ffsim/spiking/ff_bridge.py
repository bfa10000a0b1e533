"""Spiking evaluation of a trained supervised FF network: agreement between image and label as coincidence.

Two sources converge on the same neurons: the image and the label embedded in it (Hinton 2022, §6.4).
For every test image and every label, the embedded input (:meth:`FFNetwork.embed`) is encoded as spikes
and presented to coincidence-detecting twins of the network's hidden layers
(:class:`~ffsim.spiking.coincidence.CoincidenceLayer`); the spikes of layer ``k`` drive layer ``k + 1``.
A layer's spike goodness is the network's goodness function applied to its neurons' spike counts
(``sumsq``: Σ_j count_j²); a label's score sums it over the layers that the analog evaluation scores
(``min_level`` on: every layer but the first for the default deep network, the only layer of a one-layer
network), and the label with the highest score is the prediction.  The plain total spike count is
reported beside it, and so is the analog goodness of the same network (:meth:`FFNetwork.goodness_scores`).

Mapping (each choice is a setting of :class:`SpikingConfig`):

* weights: ``w = W / threshold_drive`` in units of the firing threshold, ``bias = b / threshold_drive``;
  ``W`` is the float weight matrix of a digital layer, or one ``read_weights()`` of a chip-backed layer (so
  device noise carries over);
* the label: its pixels are encoded at full intensity and their weights multiplied by ``label_strength``,
  which is exactly their analog contribution;
* normalization: the analog network divides each layer's input by its RMS; the spiking layer applies the
  same factor as a per-presentation gain on all synaptic weights.  For the first layer it is computed from
  the input that the spikes deliver (latency code: the embedded input with every spiking pixel at full
  intensity, since a spike carries its whole weight whatever the intensity that timed it; rate code: the
  embedded input, to which the expected counts are proportional), for later layers from the spike counts
  of the layer below (with the "subtract" reset a neuron fires about ``z / threshold_drive`` times, so the
  normalized counts approximate the normalized activities);
* the windows: ``window_s`` is the latency code's encoding window (or the presentation length of the rate
  code), ``tau_s`` the coincidence window of the neurons.

Why the defaults.  A neuron with instantaneous synapses fires as soon as the running sum of its inputs
crosses threshold, so when the spikes of one presentation arrive one after another it responds to the
largest partial sum, not to the total ``z``; FF weights have both signs, and the partial sums of early
excitatory inputs overshoot.  The default latency window (10 µs, less than one 50 µs time step) therefore
sends each presentation as one synchronous volley, in which every neuron sees its whole drive at once; a
synaptic current (``tau_syn_s`` much longer than the spread of the spike times) restores the sum under
timing jitter.  The "subtract" reset makes the count grow with the drive; with the "zero" reset a volley
fires each neuron at most once, and the count of active units need not rank labels as the Σ y² goodness
does (in a trained 784-500 MNIST layer the true label drove fewer units, but harder).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from ffsim.spiking.coincidence import CODEGEN_TARGETS, RESETS, CoincidenceLayer
from ffsim.spiking.encoders import SpikeTrains, latency_encode, rate_encode

__all__ = ["ENCODINGS", "SpikingConfig", "SpikingEvaluation", "evaluate_spiking", "layer_weights", "spiking_layers"]

ENCODINGS = ("latency", "rate")
WEIGHT_SOURCES = ("auto", "float", "chip")


def _is_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


@dataclass(frozen=True)
class SpikingConfig:
    """Settings of a spiking evaluation (JSON-able; recorded in every result)."""

    encoding: str = "latency"
    """``"latency"`` (one spike per input at ``(1 - x) * window_s``) or ``"rate"`` (Poisson)."""
    window_s: float = 1e-5
    """Latency code: encoding window, seconds (the default puts a presentation in one time step).  Rate code:
    presentation length, seconds."""
    max_rate_hz: float = 200.0
    """Rate code: firing rate of an input of intensity 1, hertz."""
    jitter_s: float = 0.0
    """Standard deviation of Gaussian jitter of input spike times, seconds (needs a generator)."""
    threshold_drive: float = 0.5
    """Analog pre-activation equal to the firing threshold (weights become ``W / threshold_drive``)."""
    tau_s: float = 2e-3
    """Membrane time constant = coincidence window, seconds."""
    refractory_s: float = 0.0
    """Absolute refractory period, seconds."""
    tau_syn_s: float = 0.0
    """Synaptic current time constant, seconds (0: each spike jumps the potential)."""
    reset: str = "subtract"
    """``"subtract"`` (spike count grows with the drive) or ``"zero"`` (at most one spike per volley)."""
    dt_s: float = 5e-5
    """Simulation time step, seconds."""
    tail_s: float | None = None
    """Time after the input window in each slot, seconds (default ``2 * tau_s``)."""
    codegen_target: str = "numpy"
    """Brian2 code-generation target, ``"numpy"`` or ``"cython"``."""
    batch_images: int = 500
    """Images per Brian2 run (each gives one presentation per label)."""
    weight_source: str = "auto"
    """``"auto"``: a chip's ``read_weights()`` for chip-backed layers, else the float weights; ``"float"``;
    ``"chip"``."""
    from_layer: int | None = None
    """First layer whose spikes are scored (default: the network's ``min_level``, as its own evaluation)."""

    def __post_init__(self) -> None:
        problems = []

        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                problems.append(f"{name} = {getattr(self, name)!r}: {allowed}")

        def positive(name: str, zero_ok: bool = False) -> None:
            v = getattr(self, name)
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and (
                v >= 0 if zero_ok else v > 0)
            need(ok, name, "must be a finite number " + (">= 0" if zero_ok else "> 0"))

        need(self.encoding in ENCODINGS, "encoding", f"must be one of {ENCODINGS}")
        for name in ("window_s", "threshold_drive", "tau_s", "dt_s"):
            positive(name)
        for name in ("max_rate_hz", "jitter_s", "refractory_s", "tau_syn_s"):
            positive(name, zero_ok=True)
        if self.tail_s is not None:
            positive("tail_s", zero_ok=True)
        need(self.reset in RESETS, "reset", f"must be one of {RESETS}")
        need(self.codegen_target in CODEGEN_TARGETS, "codegen_target", f"must be one of {CODEGEN_TARGETS}")
        need(_is_int(self.batch_images) and self.batch_images >= 1, "batch_images", "must be an int >= 1")
        need(self.weight_source in WEIGHT_SOURCES, "weight_source", f"must be one of {WEIGHT_SOURCES}")
        need(self.from_layer is None or (_is_int(self.from_layer) and self.from_layer >= 0), "from_layer",
             "must be a layer index >= 0 or None")
        if problems:
            raise ValueError("invalid spiking configuration:\n  - " + "\n  - ".join(problems))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class SpikingEvaluation:
    """Spike-count and analog goodness of every (image, label), and the resulting error rates.

    Attributes
    ----------
    spike_scores
        Spike-count goodness summed over the scored layers, (n_images, n_classes): the network's goodness
        function applied to the spike counts of the layer's neurons (Σ counts² for ``sumsq``).
    count_scores
        Total output spikes summed over the scored layers, (n_images, n_classes) int64.
    layer_goodness, layer_spikes
        Spike-count goodness and total spikes of every layer, (n_layers, n_images, n_classes).
    analog_scores
        The network's own goodness evaluation (``goodness_scores``), (n_images, n_classes).
    error_spiking, error_count, error_analog
        Fractions of images misclassified by ``spike_scores``, ``count_scores`` and ``analog_scores`` (None
        without labels); ties go to the lowest label.
    agreement
        Fraction of images where both evaluations predict the same label.
    tie_fraction
        Fraction of images whose highest spike score is shared by several labels.
    dropped_input_spikes
        Input spikes dropped because an input spiked twice in one time step (all layers; a dead time of
        one step).
    brian2_s, wall_s
        Seconds spent in Brian2 (build and run), and in the whole evaluation.
    config
        The :class:`SpikingConfig` as a dict.
    """

    spike_scores: np.ndarray
    count_scores: np.ndarray
    layer_goodness: np.ndarray
    layer_spikes: np.ndarray
    analog_scores: np.ndarray
    error_spiking: float | None
    error_count: float | None
    error_analog: float | None
    agreement: float
    tie_fraction: float
    dropped_input_spikes: int
    brian2_s: float
    wall_s: float
    config: dict


def layer_weights(net, weight_source: str = "auto") -> list[tuple[np.ndarray, np.ndarray]]:
    """``(W, b)`` of every hidden layer of ``net``, as float64: the float weights, or one ``read_weights()``
    of the layer's chip (``weight_source``, see :class:`SpikingConfig`)."""
    if weight_source not in WEIGHT_SOURCES:
        raise ValueError(f"weight_source must be one of {WEIGHT_SOURCES} (got {weight_source!r})")
    out = []
    for k, layer in enumerate(net.layers):
        store = layer.store
        chip = getattr(store, "chip", None)
        if weight_source == "chip" or (weight_source == "auto" and chip is not None):
            if chip is None:
                raise ValueError(f"weight_source 'chip': layer {k} has no chip (mode {store.mode!r})")
            W = chip.read_weights()
        else:
            if getattr(store, "W", None) is None:
                raise ValueError(f"weight_source 'float': layer {k} keeps no float weights (mode {store.mode!r})")
            W = store.W
        out.append((_host(net, W).astype(np.float64), _host(net, layer.b).astype(np.float64)))
    return out


def _host(net, a) -> np.ndarray:
    """``a`` as a numpy array: a network on the GPU backend keeps its weights and embeddings on the device."""
    bk = getattr(net, "backend", None)
    return np.asarray(bk.to_host(a) if bk is not None else a)


def _label_rows(net) -> np.ndarray:
    """Input indices that carry the label in ``net.embed``."""
    C = net.num_classes
    start = net.pixels if net.cfg.label_mode == "concat" else 0
    return np.arange(start, start + C)


def spiking_layers(net, cfg: SpikingConfig | None = None) -> list[CoincidenceLayer]:
    """Coincidence-layer twins of every hidden layer of ``net`` (weights scaled by ``1 / threshold_drive``;
    the first layer's label rows multiplied by ``label_strength``, see the module doc)."""
    cfg = SpikingConfig() if cfg is None else cfg
    layers = []
    for k, (W, b) in enumerate(layer_weights(net, cfg.weight_source)):
        if k == 0:
            W = W.copy()
            W[_label_rows(net)] *= float(net.cfg.label_strength)
        layers.append(CoincidenceLayer.from_analog(
            W, b, threshold_drive=cfg.threshold_drive, tau_s=cfg.tau_s, refractory_s=cfg.refractory_s,
            reset=cfg.reset, tau_syn_s=cfg.tau_syn_s, dt_s=cfg.dt_s, tail_s=cfg.tail_s,
            codegen_target=cfg.codegen_target))
    return layers


def _norm_gain(a: np.ndarray, kind: str) -> np.ndarray:
    """The factor by which :func:`ffsim.ff.goodness.normalize` multiplies each row of ``a``."""
    ss = np.einsum("ij,ij->i", a, a).astype(np.float64)
    d = np.sqrt(ss / a.shape[1]) if kind == "rms" else np.sqrt(ss)
    return 1.0 / (d + 1e-20)


def _encode(net, x: np.ndarray, cfg: SpikingConfig, rng: np.random.Generator | None
            ) -> tuple[SpikeTrains, np.ndarray]:
    """Spikes of every (image, label) presentation (index ``image * C + label``) and the first layer's gain."""
    n, C = len(x), net.num_classes
    labels = np.tile(np.arange(C), n)
    imgs = np.repeat(x, C, axis=0)
    onehot = _host(net, net.onehot(labels))
    embedded = _host(net, net.embed(imgs, onehot))
    intens = embedded.astype(np.float64)
    intens[:, _label_rows(net)] = onehot
    if cfg.encoding == "latency":
        # every input that spikes delivers its full weight whatever its intensity: the layer's input is the
        # embedded input with each spiking pixel at 1 (label pixels as embedded: their weights carry the
        # label strength), and the normalization must be that input's
        delivered = (intens > 0).astype(np.float64)
        delivered[:, _label_rows(net)] = embedded[:, _label_rows(net)]
        gain = _norm_gain(delivered, net.cfg.norm)
        trains = latency_encode(intens, cfg.window_s, jitter_s=cfg.jitter_s, rng=rng)
    else:
        gain = _norm_gain(embedded, net.cfg.norm)
        trains = rate_encode(intens, cfg.window_s, cfg.max_rate_hz, jitter_s=cfg.jitter_s, rng=rng)
    return trains, gain


def evaluate_spiking(net, x: np.ndarray, labels: np.ndarray | None = None, cfg: SpikingConfig | None = None, *,
                     rng: np.random.Generator | None = None) -> SpikingEvaluation:
    """Classify images by spike counts of the spiking twin of ``net``, beside the analog goodness.

    Parameters
    ----------
    net
        A supervised :class:`~ffsim.ff.network.FFNetwork` (label embedded in the input).
    x
        Images as vectors with intensities in [0, 1], shape (n_images, net.pixels).
    labels
        True labels (n_images,), for the error rates; optional.
    cfg
        Spiking settings (default :class:`SpikingConfig`).
    rng
        Generator of the encoding's randomness: required for the rate code and for jitter.

    Returns
    -------
    SpikingEvaluation
    """
    t_start = time.perf_counter()
    cfg = SpikingConfig() if cfg is None else cfg
    if not hasattr(net, "embed") or not hasattr(net, "goodness_scores"):
        raise ValueError(f"net must be a supervised FFNetwork with the label in its input (got {type(net).__name__})")
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != net.pixels:
        raise ValueError(f"x must have shape (n_images, {net.pixels}) (got {x.shape})")
    xf = x.astype(np.float64)
    if x.size and (not np.all(np.isfinite(xf)) or xf.min() < 0 or xf.max() > 1):
        raise ValueError(f"x must hold intensities in [0, 1] (got range [{np.nanmin(xf)}, {np.nanmax(xf)}])")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(x),) or (labels.size and (labels.min() < 0 or labels.max() >= net.num_classes)):
            raise ValueError(f"labels must be {len(x)} class indices in [0, {net.num_classes}) "
                             f"(got shape {labels.shape})")
    if (cfg.encoding == "rate" or cfg.jitter_s > 0) and not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator for encoding {cfg.encoding!r} with "
                         f"jitter_s={cfg.jitter_s} (got {type(rng).__name__})")
    n_layers = len(net.layers)
    first = net.head_from if cfg.from_layer is None else cfg.from_layer
    if not 0 <= first < n_layers:
        raise ValueError(f"from_layer must be in [0, {n_layers - 1}] (got {first})")
    layers = spiking_layers(net, cfg)
    n, C = len(x), net.num_classes
    per_layer = np.zeros((n_layers, n, C), dtype=np.int64)
    per_layer_g = np.zeros((n_layers, n, C))
    dropped, brian2_s = 0, 0.0
    for a in range(0, n, cfg.batch_images):
        xb = x[a:a + cfg.batch_images].astype(np.float32)
        trains, gain = _encode(net, xb, cfg, rng)
        for k, layer in enumerate(layers):
            resp = layer.run(trains, gain=gain, keep_spikes=k < n_layers - 1)
            per_layer[k, a:a + len(xb)] = resp.spike_count.reshape(len(xb), C)
            per_layer_g[k, a:a + len(xb)] = resp.goodness(net.layers[k].kind).reshape(len(xb), C)
            dropped += resp.dropped_input_spikes
            brian2_s += resp.wall_s
            trains = resp.spikes
            gain = _norm_gain(resp.counts.astype(np.float64), net.cfg.norm)
    spike_scores = per_layer_g[first:].sum(axis=0)
    count_scores = per_layer[first:].sum(axis=0)
    analog = np.concatenate([net.goodness_scores(x[a:a + 1000].astype(np.float32))
                             for a in range(0, n, 1000)]) if n else np.zeros((0, C))
    pred_s, pred_a = spike_scores.argmax(axis=1), analog.argmax(axis=1)
    ties = (spike_scores == spike_scores.max(axis=1, keepdims=True)).sum(axis=1) > 1
    m = max(n, 1)

    def error(scores: np.ndarray) -> float | None:
        return None if labels is None else float((scores.argmax(axis=1) != labels).sum() / m)

    return SpikingEvaluation(
        spike_scores=spike_scores, count_scores=count_scores, layer_goodness=per_layer_g, layer_spikes=per_layer,
        analog_scores=analog, error_spiking=error(spike_scores), error_count=error(count_scores),
        error_analog=error(analog),
        agreement=float((pred_s == pred_a).sum() / m), tie_fraction=float(ties.sum() / m),
        dropped_input_spikes=dropped, brian2_s=brian2_s, wall_s=time.perf_counter() - t_start,
        config=cfg.as_dict())
