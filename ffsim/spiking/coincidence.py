"""A coincidence-detecting layer of leaky integrate-and-fire neurons, simulated with Brian2.

Neuron model (potentials in units of the firing threshold, so the threshold is 1)::

    dv/dt = (bias - v) / tau_s                  between input spikes
    v    += gain * w[i, j]                       when input i spikes
    spike when v > 1;  then v = 0 ("zero" reset) or v -= 1 ("subtract" reset)

``tau_s`` is the coincidence window: a spike's contribution decays by 1/e within it, so a neuron whose
weights are each below threshold fires only if enough input spikes arrive within about ``tau_s`` of each
other.  ``bias`` is the resting potential (a neuron with ``bias > 1`` fires tonically); ``gain`` is a
per-presentation multiplier of every synaptic weight (the divisive input normalization of an FF network,
see :mod:`ffsim.spiking.ff_bridge`; 1 by default).  With ``refractory_s > 0`` a neuron that spikes holds
``v`` at its reset value and ignores input spikes (including those of the step it spiked in) for
``refractory_s``.  Optionally (``tau_syn_s > 0``) a spike injects the charge ``gain * w`` through an
exponentially decaying synaptic current ``I`` (``dv/dt = (bias - v) / tau_s + I / tau_syn_s``,
``dI/dt = -I / tau_syn_s``, ``I += gain * w``): the potential then rises smoothly, so input spikes that
arrive within much less than ``tau_syn_s`` of each other sum before the neuron can fire, whatever their
order; the peak rise of one spike is ``w * r ** (r / (1 - r))`` with ``r = tau_syn_s / tau_s``.

Goodness: the spike count of each neuron within a presentation, and per layer the total count or an FF
goodness function of the counts (``sumsq``: Σ_j count_j²; see :meth:`LayerResponse.goodness`).

Weight scaling: :meth:`CoincidenceLayer.from_analog` maps an analog layer ``z = h @ W + b`` with
``w = W / threshold_drive`` and ``bias = b / threshold_drive``, i.e. ``threshold_drive`` is the analog
pre-activation that brings a neuron from rest to threshold when its input spikes all coincide.  With the
"subtract" reset such a volley makes a neuron fire about ``z / threshold_drive`` times (at most once per
time step); with the "zero" reset once.  :meth:`CoincidenceLayer.from_crossbar` takes ``W`` from a chip's
``read_weights()``, so the chip's programming errors, drift and read noise carry over.

Many presentations run in one Brian2 simulation: the layer is instantiated ``parallel`` times side by
side (neuron ``c * n_out + j`` is neuron ``j`` of copy ``c``; synapses built by index arithmetic) and the
copies are reused in consecutive time slots of ``slot_s`` seconds.  Presentation ``p`` runs in copy
``p % parallel`` during slot ``p // parallel``.  At the start of every slot a monitor records each
neuron's spike count of the slot that ended, and each neuron is put back at rest (``v = bias``, ``I = 0``,
refractoriness cleared, count zeroed, ``gain`` of the new presentation loaded), so every presentation
evolves exactly as in a simulation of its own.  Output spikes, when kept, are recorded by a SpikeMonitor
and mapped back to (presentation, neuron, time) with numpy.  The simulation uses an explicit
``brian2.Network`` and ``brian2.Clock`` objects (no magic network, no global default clock) and no Brian2
random functions: for given inputs it is deterministic.
"""

from __future__ import annotations

import math
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ffsim.ff.goodness import goodness
from ffsim.spiking.encoders import SpikeTrains, _finite_positive, _sorted_trains

__all__ = ["CACHE_DIR_ENV", "CODEGEN_TARGETS", "RESETS", "CoincidenceLayer", "LayerResponse", "brian2_cache_dir"]

CODEGEN_TARGETS = ("numpy", "cython")
RESETS = ("zero", "subtract")
CACHE_DIR_ENV = "FFSIM_CACHE_DIR"


def brian2_cache_dir() -> Path:
    """Where compiled Brian2 (Cython) code is kept: ``$FFSIM_CACHE_DIR/brian2``, else ``./.ffsim_cache/brian2``."""
    base = os.environ.get(CACHE_DIR_ENV)
    return (Path(base) if base else Path.cwd() / ".ffsim_cache") / "brian2"


# Brian2's preferences are global: ffsim's runs hold this lock while they have them set, so runs in other
# threads (another layer's evaluation, another target) wait instead of running with the wrong target.
_BRIAN2_LOCK = threading.RLock()


@contextmanager
def _brian2_prefs(target: str):
    """Set Brian2's code-generation target (and Cython cache) for one run, then restore the old values.

    Runs of ffsim in several threads take turns (one lock); Brian2 code outside ffsim that changes these
    preferences in another thread at the same time is not guarded."""
    import brian2

    prefs = brian2.prefs
    with _BRIAN2_LOCK:
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
        they can drive another layer.  None if the run was asked not to keep them.
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
    spikes: SpikeTrains | None
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
        reset value meanwhile); 0: none, a neuron may spike in every time step.
    reset
        ``"zero"`` (``v = 0`` after a spike) or ``"subtract"`` (``v -= 1``: the excess drive is kept).
    tau_syn_s
        Time constant of the synaptic current, seconds; 0 (default): each spike jumps the potential.  Must
        differ from ``tau_s``.
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
                 refractory_s: float = 0.0, reset: str = "zero", tau_syn_s: float = 0.0, dt_s: float = 5e-5,
                 tail_s: float | None = None, codegen_target: str = "numpy", max_synapses: int = 4_000_000):
        name = "CoincidenceLayer"
        W = np.asarray(weights)
        if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1 or not np.issubdtype(W.dtype, np.number):
            raise ValueError(f"{name}.weights must be a non-empty 2-D numeric array (n_in, n_out) "
                             f"(got shape {W.shape})")
        W = W.astype(np.float64)
        if not np.all(np.isfinite(W)):
            raise ValueError(f"{name}.weights must be finite (got {int((~np.isfinite(W)).sum())} non-finite values)")
        b = np.zeros(W.shape[1]) if bias is None else np.asarray(bias, dtype=np.float64)
        if b.shape != (W.shape[1],) or not np.all(np.isfinite(b)):
            raise ValueError(f"{name}.bias must be finite with shape ({W.shape[1]},) (got shape {b.shape})")
        self.tau_s = _finite_positive(f"{name}.tau_s", tau_s)
        self.refractory_s = _finite_positive(f"{name}.refractory_s", refractory_s, allow_zero=True)
        self.dt_s = _finite_positive(f"{name}.dt_s", dt_s)
        self.tau_syn_s = _finite_positive(f"{name}.tau_syn_s", tau_syn_s, allow_zero=True)
        tail = 2.0 * self.tau_s if tail_s is None else tail_s
        self.tail_s = _finite_positive(f"{name}.tail_s", tail, allow_zero=True)
        if abs(self.tau_syn_s - self.tau_s) <= 1e-6 * self.tau_s:
            raise ValueError(f"{name}.tau_syn_s must differ from tau_s={self.tau_s} by more than 1e-6 of it (the "
                             f"exact integration of the double-exponential response is singular; got {tau_syn_s!r})")
        if self.dt_s > self.tau_s or (self.tau_syn_s > 0 and self.dt_s > self.tau_syn_s):
            raise ValueError(f"{name}.dt_s must not exceed tau_s={self.tau_s} nor a nonzero "
                             f"tau_syn_s={self.tau_syn_s} (got {dt_s!r})")
        if reset not in RESETS:
            raise ValueError(f"{name}.reset must be one of {RESETS} (got {reset!r})")
        if codegen_target not in CODEGEN_TARGETS:
            raise ValueError(f"{name}.codegen_target must be one of {CODEGEN_TARGETS} (got {codegen_target!r})")
        if not isinstance(max_synapses, int | np.integer) or isinstance(max_synapses, bool) or max_synapses < 1:
            raise ValueError(f"{name}.max_synapses must be a positive integer (got {max_synapses!r})")
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

    def run(self, trains: SpikeTrains, *, gain: np.ndarray | None = None, parallel: int | None = None,
            keep_spikes: bool = True) -> LayerResponse:
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
        keep_spikes
            Record every output spike (needed to drive another layer); with False only the counts are
            recorded, once per slot, which saves time and memory when the layer fires a lot.

        Returns
        -------
        LayerResponse
            ``spikes`` is None when ``keep_spikes`` is False.
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
        if not isinstance(P, int | np.integer) or isinstance(P, bool) or P < 1:
            raise ValueError(f"parallel must be a positive integer (got {parallel!r})")
        P = int(P)
        S = self.slot_steps(trains.duration_s)
        slot_s = S * self.dt_s
        if n == 0:
            empty = _sorted_trains(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), 0, self.n_out, slot_s)
            return LayerResponse(np.zeros((0, self.n_out), np.int64), empty if keep_spikes else None, slot_s, P, 0,
                                 0.0)
        n_slots = -(-n // P)
        # input spikes -> (input neuron of the copy, global time step); repeats within one step dropped
        copy, slot = np.divmod(trains.sample, P)[::-1]
        key = np.unique((slot * S + np.rint(trains.time_s / self.dt_s).astype(np.int64)) * (P * self.n_in)
                        + copy * self.n_in + trains.input)
        dropped = len(trains) - key.size
        step, src = np.divmod(key, P * self.n_in)
        # rows padded to a power of two: compiled code depends on the table's shape, so few shapes, few compiles
        rows = 1 << max(n_slots - 1, 0).bit_length()
        gains = np.zeros(rows * P)
        gains[:n] = g
        t0 = time.perf_counter()
        counts, i_out, step_out = self._simulate(src, step, P, n_slots, S, gains.reshape(rows, P), keep_spikes)
        wall = time.perf_counter() - t0
        counts = counts.reshape(n_slots * P, self.n_out)[:n].astype(np.int64)
        spikes = None
        if keep_spikes:
            slot_out, local = np.divmod(step_out, S)
            sample_out = slot_out * P + i_out // self.n_out
            keep = sample_out < n
            sample_out, local, j = sample_out[keep], local[keep], (i_out % self.n_out)[keep]
            # the monitor lists spikes by time step, then neuron: a stable sort by (sample, step) completes the order
            order = np.argsort(sample_out * S + local, kind="stable")
            spikes = _sorted_trains(sample_out[order], j[order], local[order] * self.dt_s, n, self.n_out, slot_s)
        return LayerResponse(counts, spikes, slot_s, P, int(dropped), wall)

    def _simulate(self, src: np.ndarray, step: np.ndarray, P: int, n_slots: int, S: int, gains: np.ndarray,
                  keep_spikes: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """One Brian2 run of ``n_slots`` slots of ``S`` steps with ``P`` copies side by side.

        Returns the spike counts (n_slots, P * n_out) and, if ``keep_spikes``, the (neuron, time step) of every
        output spike.  Everything runs on one clock: at the end of the last step of every slot (after the
        spike resets) a monitor records the counts and the neurons are put back at rest, so that the next step
        starts a new presentation exactly like the first step of a fresh run."""
        with _brian2_prefs(self.codegen_target) as b2:
            second = b2.second
            dt = self.dt_s * second
            clock = b2.Clock(dt=dt, name="ffsim_clock")
            # the gain table is indexed by slot number (as a time in whole seconds: exact in any float rounding)
            namespace = {"tau": self.tau_s * second, "S": S,
                         "gain_ta": b2.TimedArray(gains, dt=1 * second, name="ffsim_gain")}
            common = "bias : 1 (constant)\ngain : 1\nn_spikes : integer\ncopy : integer (constant)"
            refractory = self.refractory_s > 0
            flag = " (unless refractory)" if refractory else ""
            if self.tau_syn_s > 0:
                eqs = f"dv/dt = (bias - v) / tau + I / tau_syn : 1{flag}\ndI/dt = -I / tau_syn : 1\n"
                namespace["tau_syn"] = self.tau_syn_s * second
                target, at_rest = "I_post", "v = bias\nI = 0\n"
            else:
                eqs = f"dv/dt = (bias - v) / tau : 1{flag}\n"
                target, at_rest = "v_post", "v = bias\n"
            if refractory:
                at_rest += "lastspike = -1e4*second\nnot_refractory = True\n"
            neurons = b2.NeuronGroup(P * self.n_out, eqs + common, threshold="v > 1",
                                     reset=("v = 0" if self.reset == "zero" else "v -= 1") + "\nn_spikes += 1",
                                     refractory=self.refractory_s * second if refractory else False,
                                     events={"slot_end": "timestep(t, dt) % S == S - 1"},
                                     method="exact", clock=clock, namespace=namespace, name="ffsim_coincidence")
            neurons.bias = np.tile(self.bias, P)
            neurons.copy = np.repeat(np.arange(P), self.n_out)
            neurons.v = neurons.bias[:]
            neurons.gain = np.asarray(gains[0])[neurons.copy[:]]
            counter = b2.EventMonitor(neurons, "slot_end", variables=["n_spikes"], record=True, when="end", order=0,
                                      name="ffsim_counts")
            neurons.run_on_event("slot_end", at_rest + "n_spikes = 0\ngain = gain_ta(((timestep(t, dt) + 1) // S) * "
                                 "second, copy)", when="end", order=1)
            inputs = b2.SpikeGeneratorGroup(P * self.n_in, src, step * dt, clock=clock, name="ffsim_inputs")
            ii, jj = np.nonzero(self.weights)
            offs = np.arange(P)[:, None]
            synapses = b2.Synapses(inputs, neurons, "w : 1 (constant)",
                                   on_pre=f"{target} += gain_post * w"
                                          + (" * int(not_refractory_post)" if refractory else ""), clock=clock,
                                   name="ffsim_synapses")
            synapses.connect(i=(offs * self.n_in + ii).ravel(), j=(offs * self.n_out + jj).ravel())
            synapses.w = np.tile(self.weights[ii, jj], P)
            objects = [neurons, inputs, synapses, counter]
            if keep_spikes:
                monitor = b2.SpikeMonitor(neurons, record=True, name="ffsim_spikes")
                objects.append(monitor)
            net = b2.Network(*objects, name="ffsim_network")
            net.run(n_slots * S * dt, namespace={})
            counts = np.zeros((n_slots, P * self.n_out), dtype=np.int64)
            ends = np.rint(np.asarray(counter.t_[:]) / self.dt_s).astype(np.int64) // S
            counts[ends, np.asarray(counter.i[:])] = np.asarray(counter.n_spikes[:])
            if not (counter.num_events == n_slots * P * self.n_out and ends.max() == n_slots - 1):
                raise RuntimeError(f"Brian2 recorded {counter.num_events} slot ends for {n_slots} slots")
            i_out = step_out = None
            if keep_spikes:
                i_out = np.asarray(monitor.i[:], dtype=np.int64)
                step_out = np.rint(np.asarray(monitor.t_[:]) / self.dt_s).astype(np.int64)
        return counts, i_out, step_out
