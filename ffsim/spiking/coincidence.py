"""A coincidence-detecting layer of leaky integrate-and-fire neurons, simulated with Brian2.

Neuron model (all potentials in units of the firing threshold, so the threshold is 1)::

    dv/dt = (bias - v) / tau_s                 between input spikes
    v    += gain * w[i, j]                      when input i spikes (ignored while refractory)
    spike when v > 1;  then v = 0 ("zero" reset) or v -= 1 ("subtract" reset), refractory for refractory_s

``tau_s`` is the coincidence window: a spike's contribution decays by 1/e within it, so a neuron whose
weights are each below threshold fires only if enough input spikes arrive within a few ``tau_s`` of each
other.  ``bias`` is the resting potential (a neuron with ``bias > 1`` fires tonically); ``gain`` is a
per-presentation multiplier of every synaptic weight (the divisive input normalization of an FF network,
see :mod:`ffsim.spiking.ff_bridge`; 1 by default).  Goodness is the spike count of a neuron (or its sum
over the layer) within a presentation.

Weight scaling: :meth:`CoincidenceLayer.from_analog` maps an analog layer ``z = h @ W + b`` with
``w = W / threshold_drive`` and ``bias = b / threshold_drive``, i.e. ``threshold_drive`` is the analog
pre-activation that brings a neuron from rest to threshold when its input spikes all coincide.  With the
"subtract" reset such a volley makes a neuron fire about ``z / threshold_drive`` times; with the "zero"
reset at most once.  :meth:`CoincidenceLayer.from_crossbar` takes ``W`` from a chip's ``read_weights()``,
so the chip's programming errors, drift and read noise carry over.

Many presentations run in one Brian2 simulation: the layer is instantiated ``parallel`` times side by
side (neuron ``c * n_out + j`` is neuron ``j`` of copy ``c``; synapses built by index arithmetic) and the
copies are reused in consecutive time slots of ``slot_s`` seconds.  Presentation ``p`` runs in copy
``p % parallel`` during slot ``p // parallel``.  At the start of every slot each neuron is put back at rest
(``v = bias``, refractoriness cleared, ``gain`` of the new presentation loaded), so every presentation
evolves exactly as in a simulation of its own.  Spikes recorded by one SpikeMonitor are binned by slot
and copy with numpy.  The simulation uses an explicit ``brian2.Network`` and ``brian2.Clock`` (no magic
network, no global default clock) and no Brian2 random functions: for given inputs it is deterministic.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ffsim.ff.goodness import goodness
from ffsim.spiking.encoders import SpikeTrains, _finite_positive

__all__ = ["CACHE_DIR_ENV", "CODEGEN_TARGETS", "RESETS", "CoincidenceLayer", "LayerResponse", "brian2_cache_dir"]

CODEGEN_TARGETS = ("numpy", "cython")
RESETS = ("zero", "subtract")
CACHE_DIR_ENV = "FFSIM_CACHE_DIR"


def brian2_cache_dir() -> Path:
    """Where compiled Brian2 (Cython) code is kept: ``$FFSIM_CACHE_DIR/brian2``, else ``./.ffsim_cache/brian2``."""
    base = os.environ.get(CACHE_DIR_ENV)
    return (Path(base) if base else Path.cwd() / ".ffsim_cache") / "brian2"


@contextmanager
def _brian2_prefs(target: str):
    """Set Brian2's code-generation target (and Cython cache) for one run, then restore the old values."""
    import brian2

    prefs = brian2.prefs
    old = {k: prefs[k] for k in ("codegen.target", "codegen.runtime.cython.cache_dir")}
    try:
        prefs["codegen.target"] = target
        if target == "cython":
            cache = brian2_cache_dir()
            cache.mkdir(parents=True, exist_ok=True)
            prefs["codegen.runtime.cython.cache_dir"] = str(cache)
        yield brian2
    finally:
        for k, v in old.items():
            prefs[k] = v


@dataclass(frozen=True, eq=False)
class LayerResponse:
    """What a :class:`CoincidenceLayer` did over a set of presentations.

    Attributes
    ----------
    counts
        Spike count of every (presentation, neuron) within the presentation's slot: int64 (n_samples, n_out).
    spikes
        The output spikes, times relative to the start of each presentation (``duration_s = slot_s``);
        they can drive another layer.
    slot_s
        Length of one presentation's slot, seconds (a whole number of time steps).
    parallel
        Copies of the layer simulated side by side.
    dropped_input_spikes
        Input spikes dropped because the same input already spiked in the same time step of the same
        presentation (a synapse then transmits one event per step).
    wall_s
        Wall-clock time of the Brian2 build and run, seconds.
    """

    counts: np.ndarray
    spikes: SpikeTrains
    slot_s: float
    parallel: int
    dropped_input_spikes: int
    wall_s: float

    @property
    def spike_count(self) -> np.ndarray:
        """Total spikes of the layer in each presentation (int64, n_samples)."""
        return self.counts.sum(axis=1)

    def goodness(self, kind: str = "sumsq") -> np.ndarray:
        """Spike-count goodness of each presentation (n_samples): an FF goodness function
        (:func:`ffsim.ff.goodness.goodness`) of the neurons' spike counts; ``"sumsq"`` is Σ_j counts_j²."""
        return goodness(self.counts.astype(np.float64), kind)


class CoincidenceLayer:
    """LIF coincidence detectors with weights in units of the firing threshold.

    Parameters
    ----------
    weights
        Synaptic weights ``w`` (n_in, n_out), in units of the threshold: a spike of input ``i`` raises the
        potential of neuron ``j`` by ``w[i, j]`` (times the presentation's gain).
    bias
        Resting potential of each neuron in units of the threshold (n_out,), default 0.
    tau_s
        Membrane time constant = coincidence window, seconds.
    refractory_s
        Absolute refractory period after a spike, seconds (input spikes are ignored and ``v`` is held at its
        reset value meanwhile); 0 allows a spike in every time step.
    reset
        ``"zero"`` (``v = 0`` after a spike) or ``"subtract"`` (``v -= 1``: the excess drive is kept).
    dt_s
        Simulation time step, seconds (spike times are rounded to it).
    tail_s
        Time added after the input's ``duration_s`` in every slot so that late inputs can still make the
        neurons fire, seconds; default ``2 * tau_s``.
    codegen_target
        Brian2 code-generation target: ``"numpy"`` or ``"cython"`` (compiled once, cached in
        :func:`brian2_cache_dir`).
    max_synapses
        Bound on the synapses of one simulation; the number of parallel copies is the largest that keeps
        ``parallel * nonzero weights`` within it.
    """

    def __init__(self, weights: np.ndarray, bias: np.ndarray | None = None, *, tau_s: float = 2e-3,
                 refractory_s: float = 0.0, reset: str = "zero", tau_syn_s: float = 0.0, dt_s: float = 5e-5, tail_s: float | None = None,
                 codegen_target: str = "numpy", max_synapses: int = 4_000_000):
        W = np.asarray(weights)
        if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1 or not np.issubdtype(W.dtype, np.number):
            raise ValueError(f"weights must be a non-empty 2-D numeric array (n_in, n_out) (got shape {W.shape})")
        W = W.astype(np.float64)
        if not np.all(np.isfinite(W)):
            raise ValueError(f"weights must be finite (got {int((~np.isfinite(W)).sum())} non-finite values)")
        b = np.zeros(W.shape[1]) if bias is None else np.asarray(bias, dtype=np.float64)
        if b.shape != (W.shape[1],) or not np.all(np.isfinite(b)):
            raise ValueError(f"bias must be finite with shape ({W.shape[1]},) (got shape {b.shape})")
        self.tau_s = _finite_positive("tau_s", tau_s)
        self.refractory_s = _finite_positive("refractory_s", refractory_s, allow_zero=True)
        self.dt_s = _finite_positive("dt_s", dt_s)
        self.tau_syn_s = _finite_positive("tau_syn_s", tau_syn_s, allow_zero=True)
        self.tail_s = 2.0 * self.tau_s if tail_s is None else _finite_positive("tail_s", tail_s, allow_zero=True)
        if self.dt_s > self.tau_s:
            raise ValueError(f"dt_s must not exceed tau_s={self.tau_s} (got {dt_s!r})")
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS} (got {reset!r})")
        if codegen_target not in CODEGEN_TARGETS:
            raise ValueError(f"codegen_target must be one of {CODEGEN_TARGETS} (got {codegen_target!r})")
        if not isinstance(max_synapses, int | np.integer) or max_synapses < 1:
            raise ValueError(f"max_synapses must be a positive integer (got {max_synapses!r})")
        self.weights = W
        self.bias = b
        self.reset = reset
        self.codegen_target = codegen_target
        self.max_synapses = int(max_synapses)

    @property
    def n_in(self) -> int:
        return self.weights.shape[0]

    @property
    def n_out(self) -> int:
        return self.weights.shape[1]

    @classmethod
    def from_analog(cls, W: np.ndarray, b: np.ndarray | None = None, *, threshold_drive: float,
                    **kwargs) -> CoincidenceLayer:
        """The spiking twin of an analog layer ``z = h @ W + b``: ``w = W / threshold_drive``,
        ``bias = b / threshold_drive`` (``threshold_drive``: analog drive equal to the firing threshold)."""
        d = _finite_positive("threshold_drive", threshold_drive)
        W = np.asarray(W, dtype=np.float64)
        return cls(W / d, None if b is None else np.asarray(b, dtype=np.float64) / d, **kwargs)

    @classmethod
    def from_crossbar(cls, crossbar, b: np.ndarray | None = None, *, threshold_drive: float,
                      **kwargs) -> CoincidenceLayer:
        """As :meth:`from_analog`, with ``W`` measured from a chip by ``crossbar.read_weights()`` (one noisy
        read of what is stored: the chip's non-idealities carry over; the read uses the chip's run-time
        generator)."""
        return cls.from_analog(crossbar.read_weights(), b, threshold_drive=threshold_drive, **kwargs)

    # ------------------------------------------------------------------------------------------
    def slot_steps(self, duration_s: float) -> int:
        """Time steps of one presentation slot for inputs lasting ``duration_s`` seconds."""
        return int(math.ceil((duration_s + self.tail_s) / self.dt_s - 1e-9)) + 1

    def parallel_copies(self, n_samples: int) -> int:
        """Copies of the layer simulated side by side for ``n_samples`` presentations."""
        nnz = max(int(np.count_nonzero(self.weights)), 1)
        return max(1, min(n_samples, self.max_synapses // nnz))

    def run(self, trains: SpikeTrains, *, gain: np.ndarray | None = None, parallel: int | None = None
            ) -> LayerResponse:
        """Simulate every presentation of ``trains`` in one Brian2 run.

        Parameters
        ----------
        trains
            Input spikes, ``n_inputs`` equal to the layer's ``n_in``.
        gain
            Multiplier of all synaptic weights for each presentation (n_samples,), finite and >= 0;
            default 1.
        parallel
            Copies of the layer side by side (default :meth:`parallel_copies`); results do not depend on it.

        Returns
        -------
        LayerResponse
        """
        if not isinstance(trains, SpikeTrains):
            raise ValueError(f"trains must be a SpikeTrains (got {type(trains).__name__})")
        if trains.n_inputs != self.n_in:
            raise ValueError(f"trains.n_inputs must equal the layer's n_in={self.n_in} (got {trains.n_inputs})")
        n = trains.n_samples
        g = np.ones(n) if gain is None else np.asarray(gain, dtype=np.float64)
        if g.shape != (n,) or not np.all(np.isfinite(g)) or (g.size and g.min() < 0):
            raise ValueError(f"gain must be finite, >= 0, with shape ({n},) (got shape {g.shape})")
        P = self.parallel_copies(n) if parallel is None else parallel
        if not isinstance(P, int | np.integer) or P < 1:
            raise ValueError(f"parallel must be a positive integer (got {parallel!r})")
        P = int(P)
        slot_steps = self.slot_steps(trains.duration_s)
        slot_s = slot_steps * self.dt_s
        if n == 0:
            empty = SpikeTrains(np.zeros(0), np.zeros(0), np.zeros(0), 0, self.n_out, slot_s)
            return LayerResponse(np.zeros((0, self.n_out), np.int64), empty, slot_s, P, 0, 0.0)
        n_slots = -(-n // P)
        # input spikes -> (input neuron of the copy, global time step)
        copy, slot = trains.sample % P, trains.sample // P
        src = copy * self.n_in + trains.input
        step = slot * slot_steps + np.rint(trains.time_s / self.dt_s).astype(np.int64)
        key = np.unique(step * (P * self.n_in) + src)
        dropped = len(trains) - key.size
        step, src = np.divmod(key, P * self.n_in)
        # rows padded to a power of two: compiled code depends on the table's shape, so few shapes, few compiles
        rows = 1 << max(n_slots - 1, 0).bit_length()
        gains = np.zeros(rows * P)
        gains[:n] = g
        t0 = time.perf_counter()
        i_out, step_out = self._simulate(src, step, P, n_slots, slot_steps, gains.reshape(rows, P))
        wall = time.perf_counter() - t0
        slot_out, local = np.divmod(step_out, slot_steps)
        sample_out = slot_out * P + i_out // self.n_out
        keep = sample_out < n
        spikes = SpikeTrains(sample_out[keep], (i_out % self.n_out)[keep], local[keep] * self.dt_s, n,
                             self.n_out, slot_s)
        return LayerResponse(spikes.counts(), spikes, slot_s, P, int(dropped), wall)

    def _simulate(self, src: np.ndarray, step: np.ndarray, P: int, n_slots: int, slot_steps: int,
                  gains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One Brian2 run; returns (neuron index, time step) of every output spike."""
        with _brian2_prefs(self.codegen_target) as b2:
            second = b2.second
            dt = self.dt_s * second
            slot = slot_steps * self.dt_s * second
            clock = b2.Clock(dt=dt, name="ffsim_clock")
            gain_ta = b2.TimedArray(gains, dt=slot, name="ffsim_gain")
            common = "bias : 1 (constant)\ngain : 1\ncopy : integer (constant)"
            if self.tau_syn_s > 0:
                eqs = ("dv/dt = (bias - v) / tau + I / tau_syn : 1 (unless refractory)\n"
                       "dI/dt = -I / tau_syn : 1\n" + common)
                target = "I_post"
            else:
                eqs = "dv/dt = (bias - v) / tau : 1 (unless refractory)\n" + common
                target = "v_post"
            neurons = b2.NeuronGroup(P * self.n_out, eqs, threshold="v > 1",
                                     reset="v = 0" if self.reset == "zero" else "v -= 1",
                                     refractory=self.refractory_s * second, method="exact", clock=clock,
                                     namespace={"tau": self.tau_s * second, "tau_syn": max(self.tau_syn_s, self.dt_s) * second,
                                                "gain_ta": gain_ta},
                                     name="ffsim_coincidence")
            neurons.bias = np.tile(self.bias, P)
            neurons.copy = np.repeat(np.arange(P), self.n_out)
            neurons.run_regularly("v = bias\n" + ("I = 0\n" if self.tau_syn_s > 0 else "") + "lastspike = -1e4*second\nnot_refractory = True\n"
                                  "gain = gain_ta(t, copy)", dt=slot, when="start", name="ffsim_slot_start")
            inputs = b2.SpikeGeneratorGroup(P * self.n_in, src, step * dt, clock=clock, name="ffsim_inputs")
            ii, jj = np.nonzero(self.weights)
            w = self.weights[ii, jj]
            offs = np.arange(P)[:, None]
            synapses = b2.Synapses(inputs, neurons, "w : 1 (constant)",
                                   on_pre=f"{target} += gain_post * w * int(not_refractory_post)", clock=clock,
                                   name="ffsim_synapses")
            synapses.connect(i=(offs * self.n_in + ii).ravel(), j=(offs * self.n_out + jj).ravel())
            synapses.w = np.tile(w, P)
            monitor = b2.SpikeMonitor(neurons, name="ffsim_spikes")
            net = b2.Network(neurons, inputs, synapses, monitor, name="ffsim_network")
            net.run(n_slots * slot, namespace={})
            i_out = np.asarray(monitor.i[:], dtype=np.int64)
            step_out = np.rint(np.asarray(monitor.t_[:]) / self.dt_s).astype(np.int64)
        return i_out, step_out
