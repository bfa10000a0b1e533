"""Spike encoding of intensities, and the container that carries spike trains between stages.

A :class:`SpikeTrains` holds the spikes of many presentations (samples) at once, as three flat arrays
(sample index, input index, time in seconds from the start of the presentation), so that a whole test set
can be encoded, simulated and counted without Python loops over samples.  The same container carries the
output spikes of a :class:`~ffsim.spiking.coincidence.CoincidenceLayer` to the next layer.

Two codes:

* :func:`latency_encode` — time-to-first-spike: each input above a threshold emits exactly one spike at
  ``t = (1 - x) * window_s`` (stronger inputs earlier); inputs at or below the threshold stay silent.
  Deterministic unless timing jitter is asked for.
* :func:`rate_encode` — independent Poisson spike trains with rate ``x * max_rate_hz``.

All randomness comes from an explicit :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["JITTER_TAIL", "SpikeTrains", "latency_encode", "rate_encode"]

JITTER_TAIL = 5.0
"""A latency code's presentation lasts ``window_s + JITTER_TAIL * jitter_s``."""


def _finite_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool) \
        and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound} (got {value!r})")
    return float(value)


def _intensities(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"x must be a 2-D array (n_samples, n_inputs) of intensities (got shape {a.shape})")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"x must hold real intensities in [0, 1] (got dtype {a.dtype})")
    a = a.astype(np.float64)
    if a.size and (not np.all(np.isfinite(a)) or a.min() < 0.0 or a.max() > 1.0):
        bad = a[~(np.isfinite(a) & (a >= 0) & (a <= 1))]
        raise ValueError(f"x must hold intensities in [0, 1] (got {bad.size} values outside, e.g. {bad[0]!r})")
    return a


def _check_rng(rng: object, needed_for: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator {needed_for} (got {type(rng).__name__})")
    return rng


@dataclass(frozen=True, eq=False)
class SpikeTrains:
    """Spikes of ``n_samples`` presentations over ``n_inputs`` channels, as flat arrays.

    Spike ``k`` is emitted by input ``input[k]`` of presentation ``sample[k]`` at ``time_s[k]`` seconds
    after the start of that presentation.  Spikes are sorted by sample, then time, then input.

    Attributes
    ----------
    sample
        Presentation index of each spike (int64, in ``[0, n_samples)``).
    input
        Input (channel) index of each spike (int64, in ``[0, n_inputs)``).  For the output of a layer
        these are the layer's neuron indices, i.e. the inputs of the next layer.
    time_s
        Spike time within its presentation, seconds (float64, in ``[0, duration_s]``).
    n_samples
        Number of presentations (some may have no spikes).
    n_inputs
        Number of input channels.
    duration_s
        Length of one presentation, seconds: every spike time lies in ``[0, duration_s]``.
    """

    sample: np.ndarray
    input: np.ndarray
    time_s: np.ndarray
    n_samples: int
    n_inputs: int
    duration_s: float

    def __post_init__(self) -> None:
        for name in ("n_samples", "n_inputs"):
            v = getattr(self, name)
            if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 0:
                raise ValueError(f"SpikeTrains.{name} must be an integer >= 0 (got {v!r})")
        _finite_positive("SpikeTrains.duration_s", self.duration_s)
        s = np.asarray(self.sample, dtype=np.int64).ravel()
        i = np.asarray(self.input, dtype=np.int64).ravel()
        t = np.asarray(self.time_s, dtype=np.float64).ravel()
        if not (s.size == i.size == t.size):
            raise ValueError(f"SpikeTrains: sample, input and time_s must have equal lengths "
                             f"(got {s.size}, {i.size}, {t.size})")
        if s.size:
            if s.min() < 0 or s.max() >= self.n_samples:
                raise ValueError(f"SpikeTrains.sample must lie in [0, {self.n_samples}) "
                                 f"(got range [{s.min()}, {s.max()}])")
            if i.min() < 0 or i.max() >= self.n_inputs:
                raise ValueError(f"SpikeTrains.input must lie in [0, {self.n_inputs}) "
                                 f"(got range [{i.min()}, {i.max()}])")
            if not np.all(np.isfinite(t)) or t.min() < 0 or t.max() > self.duration_s:
                raise ValueError(f"SpikeTrains.time_s must lie in [0, duration_s={self.duration_s}] seconds "
                                 f"(got range [{t.min()}, {t.max()}])")
            order = np.lexsort((i, t, s))
            s, i, t = s[order], i[order], t[order]
        object.__setattr__(self, "sample", s)
        object.__setattr__(self, "input", i)
        object.__setattr__(self, "time_s", t)
        object.__setattr__(self, "n_samples", int(self.n_samples))
        object.__setattr__(self, "n_inputs", int(self.n_inputs))
        object.__setattr__(self, "duration_s", float(self.duration_s))

    def __len__(self) -> int:
        """Total number of spikes."""
        return int(self.sample.size)

    def counts(self) -> np.ndarray:
        """Spike count of every (sample, input): int64 array (n_samples, n_inputs)."""
        flat = np.bincount(self.sample * self.n_inputs + self.input, minlength=self.n_samples * self.n_inputs)
        return flat.reshape(self.n_samples, self.n_inputs)

    def select(self, samples: np.ndarray | list[int]) -> SpikeTrains:
        """The presentations ``samples`` (indices, in the given order) as a new set numbered 0, 1, ..."""
        idx = np.asarray(samples, dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_samples):
            raise ValueError(f"samples must be indices in [0, {self.n_samples}) (got range "
                             f"[{idx.min()}, {idx.max()}])")
        new_of_old = np.full(self.n_samples, -1, dtype=np.int64)
        new_of_old[idx] = np.arange(idx.size)
        if np.unique(idx).size != idx.size:
            raise ValueError("samples must not repeat an index")
        keep = new_of_old[self.sample] >= 0
        return SpikeTrains(new_of_old[self.sample[keep]], self.input[keep], self.time_s[keep], int(idx.size),
                           self.n_inputs, self.duration_s)


def _sorted_trains(sample: np.ndarray, inp: np.ndarray, time_s: np.ndarray, n_samples: int, n_inputs: int,
                   duration_s: float) -> SpikeTrains:
    """A :class:`SpikeTrains` from arrays that the caller guarantees valid and sorted (no checks, no sort)."""
    out = object.__new__(SpikeTrains)
    for name, v in (("sample", sample), ("input", inp), ("time_s", time_s), ("n_samples", int(n_samples)),
                    ("n_inputs", int(n_inputs)), ("duration_s", float(duration_s))):
        object.__setattr__(out, name, v)
    return out


def _jitter(t: np.ndarray, jitter_s: float, rng: np.random.Generator | None, hi_s: float) -> np.ndarray:
    if jitter_s == 0.0:
        return t
    rng = _check_rng(rng, "when jitter_s > 0")
    return np.clip(t + rng.normal(0.0, jitter_s, size=t.shape), 0.0, hi_s)


def latency_encode(x: np.ndarray, window_s: float, *, jitter_s: float = 0.0, threshold: float = 0.0,
                   rng: np.random.Generator | None = None) -> SpikeTrains:
    """Time-to-first-spike code: one spike per input above ``threshold``, at ``(1 - x) * window_s``.

    Parameters
    ----------
    x
        Intensities in [0, 1], shape (n_samples, n_inputs).
    window_s
        Encoding window, seconds: an input of intensity 1 spikes at 0, one of intensity ``x`` at
        ``(1 - x) * window_s``.  It is also the presentation's ``duration_s``.
    jitter_s
        Standard deviation of Gaussian timing jitter, seconds (0: exact times).  Jittered times are
        clipped to ``[0, duration_s]``.
    threshold
        Inputs with ``x <= threshold`` emit no spike (in [0, 1)).
    rng
        Generator of the jitter; required when ``jitter_s > 0``.

    Returns
    -------
    SpikeTrains
        At most one spike per (sample, input); ``duration_s = window_s + JITTER_TAIL * jitter_s``
        (``JITTER_TAIL = 5``: clipping at the upper end has probability below 3e-7 per spike).
    """
    window_s = _finite_positive("window_s", window_s)
    jitter_s = _finite_positive("jitter_s", jitter_s, allow_zero=True)
    if not (isinstance(threshold, int | float | np.integer | np.floating) and 0.0 <= threshold < 1.0):
        raise ValueError(f"threshold must be a number in [0, 1) (got {threshold!r})")
    if jitter_s > 0:
        _check_rng(rng, "when jitter_s > 0")
    a = _intensities(x)
    s, i = np.nonzero(a > threshold)
    t = (1.0 - a[s, i]) * window_s
    duration_s = window_s + JITTER_TAIL * jitter_s
    t = _jitter(t, jitter_s, rng, duration_s)
    return SpikeTrains(s, i, t, a.shape[0], a.shape[1], duration_s)


def rate_encode(x: np.ndarray, duration_s: float, max_rate_hz: float, *, jitter_s: float = 0.0,
                rng: np.random.Generator) -> SpikeTrains:
    """Poisson code: input ``i`` of sample ``n`` fires as a Poisson process of rate ``x[n, i] * max_rate_hz``.

    The count of each train is Poisson with mean ``x * max_rate_hz * duration_s`` and, given the count,
    the times are independent and uniform in ``[0, duration_s)``: the same law as a homogeneous Poisson
    process on that interval.

    Parameters
    ----------
    x
        Intensities in [0, 1], shape (n_samples, n_inputs).
    duration_s
        Length of each presentation, seconds.
    max_rate_hz
        Firing rate of an input of intensity 1, hertz (>= 0).
    jitter_s
        Standard deviation of Gaussian timing jitter added to every spike, seconds; jittered times are
        clipped to ``[0, duration_s]``.
    rng
        Generator of the spike counts, times and jitter (required).

    Returns
    -------
    SpikeTrains
        ``duration_s`` as given.
    """
    duration_s = _finite_positive("duration_s", duration_s)
    max_rate_hz = _finite_positive("max_rate_hz", max_rate_hz, allow_zero=True)
    jitter_s = _finite_positive("jitter_s", jitter_s, allow_zero=True)
    rng = _check_rng(rng, "for rate_encode")
    a = _intensities(x)
    n = rng.poisson(a * (max_rate_hz * duration_s))
    flat = np.repeat(np.arange(a.size, dtype=np.int64), n.ravel())
    s, i = np.divmod(flat, a.shape[1]) if a.shape[1] else (flat, flat)
    t = rng.uniform(0.0, duration_s, size=flat.size)
    t = _jitter(t, jitter_s, rng, duration_s)
    return SpikeTrains(s, i, t, a.shape[0], a.shape[1], duration_s)
