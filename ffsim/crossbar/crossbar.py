"""The Crossbar: a weight matrix stored on one fabricated chip.

Its public methods are what the hardware can do, and only that: ``program``, ``forward``,
``transposed``, ``pulse_update``, ``read_weights``, ``advance``, plus the public op counter ``ops``.
Everything else (device conductances, fabrication variations, stuck devices, ADC mismatch, drift
exponents) is private and must not be read by trainers; ``tests/test_boundary.py`` guards this.

Two sources of randomness: ``fab_seed`` fixes the chip's fabrication variations for its lifetime (two
chips from one profile with different seeds are different chips); ``rng`` (a ``numpy.random.Generator``)
drives run-time noise (programming, reads, pulses, drift exponents, ADC noise).

``backend`` (:func:`ffsim.backend.select_backend`: ``'cpu'``, ``'gpu'``, or from ``$FFSIM_BACKEND``) says
where the chip's state lives.  On ``'gpu'`` the state arrays are device arrays (CuPy; numpy under the CUDA
simulator), the GEMMs go through ``xp.matmul`` (cuBLAS) and the physics kernels are the numba-cuda twins
of :mod:`ffsim.gpu.kernels`; fabrication, full-array programming, drift and verify reads run on the host
(they are rare) and move the result to the device.  The public methods accept numpy or device arrays and
return arrays of the backend (numpy on the CPU).  The CPU path is the numpy/Numba code unchanged.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import numpy as np

from ffsim.backend import Backend, select_backend
from ffsim.crossbar.ops import OpCounter
from ffsim.crossbar.periphery import zeros_like_view
from ffsim.devices.physics import (
    drift_nu_params,
    programming_sigma_uS,
    read_noise_lut,
    read_noise_time_factor,
    update_params,
)
from ffsim.devices.rng import draw_key
from ffsim.profiles import HardwareProfile, load_profile

__all__ = ["Crossbar", "NonFiniteInput", "tile_bounds"]


class NonFiniteInput(ValueError):
    """NaN or inf reached a chip operation (weights to program, or update vectors)."""

PULSE_MODES = ("aggregate", "exact")


def tile_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """Split ``n`` rows (or columns) into consecutive tiles of at most ``size``."""
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _update_counts(n: int, slots: int) -> dict[str, int]:
    """What an in-situ update of ``n`` device pulses in trains of ``slots`` slots in all adds to the chip's
    counts."""
    return {"device_pulses": n, "update_slots": slots}


def _refresh_counts(write_verify_pulses: float, n: int) -> dict[str, int]:
    """What a refresh of ``n`` pairs adds to the chip's counts (RESET both, write-verify one, read both)."""
    if n == 0:
        return {}
    return {"device_pulses": int(round(n * (2 + write_verify_pulses))), "cell_reads": 2 * n,
            "adc_conversions": 2 * n}


@dataclass(eq=False)
class _PulsePlan:
    """One in-situ update on its way through :meth:`Crossbar.pulse_updates`."""

    chip: Crossbar
    kind: str
    xb: object
    db: object
    lr: float
    m: object = None
    BL: np.ndarray | None = None
    coef: object = None
    counts: object = None  # planned on the device: its pulses and the trains' slots, counted there (2 elements)


def _on_lanes(pulsed: list[_PulsePlan]) -> bool:
    """Whether the pulsed updates go on streams of their own (:mod:`ffsim.gpu.streams`): two or more, distinct
    chips, all on one GPU backend."""
    if len(pulsed) < 2 or pulsed[0].chip._cpu:
        return False
    bk = pulsed[0].chip._bk
    if any(p.chip._bk is not bk for p in pulsed) or len({id(p.chip) for p in pulsed}) < len(pulsed):
        return False
    from ffsim.gpu import streams

    return streams.wanted(bk, len(pulsed))


def _move_together(plans: list[_PulsePlan], name: str, to_host: bool) -> None:
    """Replace each plan's array ``name`` by its copy on the host (``to_host``) or on the device: one
    transfer per GPU backend for all the plans."""
    for group in _by_backend(plans):
        chip = group[0].chip
        move = chip._host if to_host else chip._dev
        if chip._cpu or len(group) == 1:
            for p in group:
                setattr(p, name, move(getattr(p, name)))
            continue
        parts = [getattr(p, name) for p in group]
        flat = move((chip._xp if to_host else np).concatenate([a.ravel() for a in parts]))
        off = 0
        for p, a in zip(group, parts, strict=True):
            setattr(p, name, flat[off:off + a.size].reshape(a.shape))
            off += a.size


def _by_backend(plans: list[_PulsePlan]) -> list[list[_PulsePlan]]:
    groups: dict[int, list[_PulsePlan]] = {}
    for p in plans:
        groups.setdefault(id(p.chip._bk), []).append(p)
    return list(groups.values())


def _as_rng(rng: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")


def _const(value: float, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """A zero-stride array holding one value (writeable flag kept so kernels compile one variant;
    kernels never write to it)."""
    base = np.full(1, value, dtype=dtype)
    return np.lib.stride_tricks.as_strided(base, shape=shape, strides=(0,) * len(shape), writeable=True)


def _fab_rng(fab_seed: tuple[int, ...], tag: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([*fab_seed, tag]))


@dataclass
class _ADC:
    """Per-column ADC transfer of one read direction: arrays (input tiles × outputs)."""

    gain: np.ndarray
    off: np.ndarray
    kappa: np.ndarray
    tanh_kappa: np.ndarray
    nonlinear: bool = False  # any kappa > 0 (fixed at fabrication; kept on the host)


class Crossbar:
    """A weight matrix on one fabricated chip, tiled, with DAC/ADC periphery.

    Parameters
    ----------
    profile
        A :class:`~ffsim.profiles.HardwareProfile`, a shipped profile name, or a path to a TOML file.
    in_features, out_features
        Shape of the weight matrix ``W`` (``forward(x) ≈ x @ W``).
    fab_seed
        Fabrication seed (an int or a tuple of ints, e.g. ``(chip, layer)``): fixes device-to-device
        variation, stuck devices and ADC mismatch.
    rng
        Run-time random generator (or an int seed for one).
    w_max
        Weight represented by a device pair at full conductance contrast (differential mapping) or by a
        device at the end of its range (reference mapping); weights beyond it saturate.
    pulse_mode
        ``"aggregate"`` (default; per-cell pulse counts of the whole mini-batch) or ``"exact"`` (every
        pulse slot of every sample simulated); see :mod:`ffsim.devices.pulse`.
    backend
        ``"cpu"``, ``"gpu"``, a :class:`~ffsim.backend.Backend`, or None for ``$FFSIM_BACKEND`` (else the
        CPU); ``"gpu"`` without a GPU falls back to the CPU with a one-line notice.
    """

    def __init__(
        self,
        profile: HardwareProfile | str | os.PathLike,
        in_features: int,
        out_features: int,
        *,
        fab_seed: int | tuple[int, ...],
        rng: np.random.Generator | int,
        w_max: float = 1.0,
        pulse_mode: str = "aggregate",
        backend: str | Backend | None = None,
    ):
        self.profile = load_profile(profile)
        self._bk = select_backend(backend)
        self._xp = self._bk.xp
        self._cpu = not self._bk.is_gpu
        self._k = self._bk.kernels
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
                raise ValueError(f"Crossbar.{name} must be a positive integer (got {v!r})")
        if not (isinstance(w_max, int | float) and math.isfinite(w_max) and w_max > 0):
            raise ValueError(f"Crossbar.w_max must be a finite number > 0 (got {w_max!r})")
        if pulse_mode not in PULSE_MODES:
            raise ValueError(f"Crossbar.pulse_mode must be one of {PULSE_MODES} (got {pulse_mode!r})")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.w_max = float(w_max)
        self.pulse_mode = pulse_mode
        seed = (fab_seed,) if isinstance(fab_seed, int | np.integer) else tuple(fab_seed)
        if not seed or not all(isinstance(s, int | np.integer) and s >= 0 for s in seed):
            raise ValueError(f"Crossbar.fab_seed must be a non-negative int or tuple of them (got {fab_seed!r})")
        self.fab_seed = tuple(int(s) for s in seed)
        self._rng = _as_rng(rng)
        self.ops = OpCounter()

        p = self.profile
        self._row_tile = p.tile.rows
        self._col_tile = p.tile.cols
        self._row_tiles = tile_bounds(self.in_features, self._row_tile)
        self._col_tiles = tile_bounds(self.out_features, self._col_tile)
        self._ideal = p.device.mapping == "ideal"
        self._t = 0.0
        self._gdc_gain = 1.0
        self._gdc_ref: float | None = None
        self._updates_since_refresh = 0
        self._fabricate()
        if not self._cpu:
            self._move_state_to_device()
        self._dirty = True
        self._colsum_dirty = True

    # ------------------------------------------------------------------------------------------
    # fabrication

    def _fabricate(self) -> None:
        p = self.profile
        n_in, n_out = self.in_features, self.out_features
        T, C = len(self._row_tiles), len(self._col_tiles)
        shape2 = (n_in, n_out)
        self._W = np.zeros(shape2, dtype=np.float32)
        self._adc_fwd = self._fab_adc(T, n_out, tag=1)
        self._adc_bwd = self._fab_adc(C, n_in, tag=2)
        if self._ideal:
            self._S2 = None
            self._S2ref = None
            return
        d, u = p.device, p.update
        self._P = 2 if d.mapping == "differential" else 1
        P = self._P
        self._dg = d.g_max_uS - d.g_min_uS
        self._gmin_n = d.g_min_uS / self._dg
        self._xscale = self._dg / d.g_max_uS
        self._R = u.state_max - u.state_min
        if d.mapping == "reference":
            self._gref0 = (u.reference_state - u.state_min) / self._R
            self._span = max(1.0 - self._gref0, self._gref0)
            self._mode = 0
        else:
            self._gref0 = 0.0
            self._span = 1.0
            self._mode = 2 if u.polarity == "set_only" else 1
        shape3 = (P, n_in, n_out)
        var = d.variation

        def spread(tag: int, mean: float, std: float, lo: float, hi: float = np.inf) -> np.ndarray:
            if std == 0:
                return _const(np.clip(mean, lo, hi), shape3)
            r = _fab_rng(self.fab_seed, tag).standard_normal(shape3, dtype=np.float32)
            return np.clip(mean + std * r, lo, hi).astype(np.float32)

        # device's own maximum normalized conductance (g_max spread)
        self._gmax = spread(10, 1.0, var.g_max_rel_std, 0.05)
        dw = spread(11, u.dw_min, u.dw_min * var.dw_min_rel_std, 0.0)
        beta = spread(12, u.up_down, var.up_down_std, -0.99, 0.99)
        if var.dw_min_rel_std or var.up_down_std:
            self._dwu = (dw * (1 + beta)).astype(np.float32)
            self._dwd = (dw * (1 - beta)).astype(np.float32)
        else:
            self._dwu = _const(u.dw_min * (1 + u.up_down), shape3)
            self._dwd = _const(u.dw_min * (1 - u.up_down), shape3)
        self._gu = np.abs(spread(13, u.gamma_up, var.gamma_std, -np.inf)) if var.gamma_std else \
            _const(u.gamma_up, shape3)
        self._gd = np.abs(spread(14, u.gamma_down, var.gamma_std, -np.inf)) if var.gamma_std else \
            _const(u.gamma_down, shape3)
        f = d.faults
        if f.stuck_at_gmin_fraction or f.stuck_at_gmax_fraction:
            r = _fab_rng(self.fab_seed, 15).random(shape3, dtype=np.float32)
            stuck = np.zeros(shape3, dtype=np.int8)
            stuck[r < f.stuck_at_gmin_fraction] = 1
            stuck[(r >= f.stuck_at_gmin_fraction) & (r < f.stuck_at_gmin_fraction + f.stuck_at_gmax_fraction)] = 2
            self._stuck = stuck
        else:
            self._stuck = _const(0, shape3, np.int8)
        # initial state: zero weights, exactly
        g = np.zeros(shape3, dtype=np.float32)
        if d.mapping == "reference":
            g[:] = np.minimum(self._gref0, self._gmax)
        self._g = g
        self._apply_stuck()
        self._ref = np.full((n_in, C), self._gref0, dtype=np.float32)
        self._wn = np.zeros(shape3, dtype=np.float32) if u.write_noise > 0 else _const(0.0, shape3)
        self._nu = None
        self._nu_ref = None
        self._prm = update_params(p)
        # read-noise table over the reachable range of G/g_max
        self._noise_on = d.read_noise.model != "none"
        x_cap = (d.g_min_uS + float(np.max(self._gmax)) * self._dg) / d.g_max_uS * 1.25 + 1e-6
        self._lut, self._lut_inv = read_noise_lut(p, x_cap)
        self._S2 = np.zeros((n_in, n_out), dtype=np.float32) if self._noise_on else None
        self._S2ref = np.zeros((n_in, C), dtype=np.float32) if (self._noise_on and P == 1) else None
        self._rowsum = np.zeros(n_in, dtype=np.float64)
        self._colsum = np.zeros(n_out, dtype=np.float64)
        kir = p.tile.ir_drop
        self._Lrow = np.zeros((P, n_in, C) if kir else (0, 0, 0))
        self._Lcol = np.zeros((P, n_out, T) if kir else (0, 0, 0))
        self._Lref = np.zeros((T, C) if (kir and P == 1) else (0, 0))

    _DEVICE_STATE = ("_W", "_gmax", "_dwu", "_dwd", "_gu", "_gd", "_stuck", "_g", "_ref", "_wn", "_prm", "_lut", "_S2",
                     "_S2ref", "_rowsum", "_colsum", "_Lrow", "_Lcol", "_Lref", "_nu", "_nu_ref")

    def _move_state_to_device(self) -> None:
        """GPU backend: the fabricated state (built on the host with numpy) moves to the device once."""
        for name in self._DEVICE_STATE:
            v = getattr(self, name, None)
            if v is not None:
                setattr(self, name, self._bk.to_device(v))
        for adc in (self._adc_fwd, self._adc_bwd):
            for f in ("gain", "off", "kappa", "tanh_kappa"):
                setattr(adc, f, self._bk.to_device(getattr(adc, f)))

    def _dev(self, a):
        """A host array as an array of the chip's backend (the array itself on the CPU)."""
        return a if self._cpu else self._bk.to_device(a)

    def _host(self, a):
        """An array of the chip's backend as a numpy array (the array itself on the CPU)."""
        return a if self._cpu else self._bk.to_host(a)

    def _fab_adc(self, n_tiles: int, n_out: int, tag: int) -> _ADC:
        a = self.profile.adc
        shape = (n_tiles, n_out)
        rng = _fab_rng(self.fab_seed, 100 + tag)
        gain = 1.0 + a.gain_rel_std * rng.standard_normal(shape) if a.gain_rel_std else np.ones(shape)
        off = a.offset_std * rng.standard_normal(shape) if a.offset_std else np.zeros(shape)
        if a.nonlinearity or a.nonlinearity_std:
            kappa = np.maximum(a.nonlinearity + a.nonlinearity_std * rng.standard_normal(shape), 0.0)
        else:
            kappa = np.zeros(shape)
        tk = np.where(kappa > 0, np.tanh(np.maximum(kappa, 1e-12)), 1.0)
        f32 = np.float32
        kappa = kappa.astype(f32)
        return _ADC(gain.astype(f32), off.astype(f32), kappa, tk.astype(f32), bool(np.any(kappa > 0)))

    def _apply_stuck(self) -> None:
        if self._stuck.strides == (0, 0, 0):
            return
        xp = self._xp
        self._g[self._stuck == 1] = 0.0
        on = self._stuck == 2
        self._g[on] = xp.broadcast_to(self._gmax, self._g.shape)[on]

    # ------------------------------------------------------------------------------------------
    # derived state

    def _t2(self) -> float:
        return read_noise_time_factor(self.profile, self._t) ** 2

    def _rebuild(self) -> None:
        if self._ideal:
            self._dirty = False
            return
        kir = self.profile.tile.ir_drop
        if kir > 0:
            self._k.ir_loads(self._g, self._ref, self._row_tile, self._col_tile, self._gmin_n, self._xscale,
                     self._Lrow, self._Lcol, self._Lref)
        xp = self._xp
        S2 = self._S2 if self._S2 is not None else xp.zeros((1, 1), np.float32)
        S2ref = self._S2ref if self._S2ref is not None else xp.zeros((1, 1), np.float32)
        self._k.rebuild_caches(self._g, self._wn, self._ref, self._row_tile, self._col_tile, self._span, self._gmin_n,
                       self._xscale, self._lut, self._lut_inv, self._t2(), kir, self._noise_on,
                       self._Lrow, self._Lcol, self._Lref, self._W, S2, S2ref, self._rowsum)
        self._dirty = False
        self._colsum_dirty = True

    def _count_charge(self, charge) -> None:
        """Add a pass's Σ x²·G (a 0-d array of the backend) times t_int to the read charge: on the GPU
        later, in one transfer with the others (``OpCounter.defer``), not one synchronization per pass."""
        t_ns = self.profile.cost.integration_time_ns
        if self._xp is np:
            self.ops.read_charge_S_s += float(charge) * t_ns * 1e-9
        else:
            self.ops.defer(self._xp, charge, t_ns, 1e-9)

    def _count_pass_charge(self, xq2, forward: bool) -> None:
        """The read charge of a pass: Σ_b Σ_i x_q²[b, i] · G_i · t_int, G_i the conductance on input wire i (rows
        forward, columns through the transposed array).  On the GPU one kernel computes it into a device
        slot (instead of a reduction, three element-wise operations and a product), left there until the
        counter is read."""
        if self._cpu:
            G = self._row_conductance_S() if forward else self._col_conductance_S()
            self._count_charge(xq2.sum(axis=0, dtype=np.float64) @ G)
            return
        d = self.profile.device
        if forward:
            sums, n_other = self._rowsum, self.out_features
            ref = self._ref if self._P == 1 else self._no_ref
        else:
            sums, n_other, ref = self._fresh_colsum(), self.in_features, self._no_ref
        slot = self._slot(np.float64)
        self._k.read_charge(xq2, sums, ref, self._dg, d.g_min_uS * self._P * n_other, d.g_min_uS, slot)
        self._count_charge(slot.reshape(()))

    def _zeros(self, shape: tuple[int, ...]):
        """A float32 array of zeros of the backend, kept per shape (callers only read it)."""
        cache = self.__dict__.setdefault("_zeros_cache", {})
        a = cache.get(shape)
        if a is None:
            if len(cache) > 16:
                cache.clear()
            a = cache[shape] = self._xp.zeros(shape, np.float32)
        return a

    @property
    def _no_ref(self):
        """An empty (0 × 0) float32 array of the backend (no reference columns)."""
        a = self.__dict__.get("_no_ref_array")
        if a is None:
            a = self._no_ref_array = self._xp.zeros((0, 0), np.float32)
        return a

    def _row_conductance_S(self) -> np.ndarray:
        """Σ of conductance (siemens) on each row wire, all devices of the row (for read energy)."""
        P, n_out = self._P, self.out_features
        g = self._dg * self._rowsum + self.profile.device.g_min_uS * P * n_out
        if P == 1:
            g = g + (self._dg * self._ref + self.profile.device.g_min_uS).sum(axis=1)
        return g * 1e-6

    def _fresh_colsum(self):
        if self._colsum_dirty:
            self._k.column_sums(self._g, self._colsum)
            self._colsum_dirty = False
        return self._colsum

    def _col_conductance_S(self) -> np.ndarray:
        self._fresh_colsum()
        return (self._dg * self._colsum + self.profile.device.g_min_uS * self._P * self.in_features) * 1e-6

    # ------------------------------------------------------------------------------------------
    # input validation

    def _batch(self, x: np.ndarray, n: int, name: str) -> tuple[np.ndarray, bool]:
        if not self._cpu:
            return self._batch_device(x, n, name)
        a = np.asarray(x)
        if a.ndim not in (1, 2) or a.shape[-1] != n:
            raise ValueError(f"{name} must have shape (batch, {n}) or ({n},), got {a.shape}")
        if not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
        single = a.ndim == 1
        a = np.ascontiguousarray(a.reshape(1, n) if single else a, dtype=np.float32)
        return a, single

    def _host_array(self, a) -> np.ndarray:
        """``a`` as a numpy array (``np.asarray`` on the CPU, a copy from the device on the GPU backend)."""
        return np.asarray(a) if self._cpu else self._bk.to_host(a)

    def _batch_device(self, x, n: int, name: str):
        a = x if isinstance(x, self._xp.ndarray) else np.asarray(x)
        if a.ndim not in (1, 2) or a.shape[-1] != n:
            raise ValueError(f"{name} must have shape (batch, {n}) or ({n},), got {a.shape}")
        if not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
        single = a.ndim == 1
        return self._bk.to_device(a.reshape(1, n) if single else a, dtype=np.float32), single

    # ------------------------------------------------------------------------------------------
    # the chip's operations

    @property
    def backend(self) -> Backend:
        """Where the chip's state lives and its kernels run (not hidden state: the simulator's, not the chip's)."""
        return self._bk

    @property
    def shape(self) -> tuple[int, int]:
        return (self.in_features, self.out_features)

    @property
    def time_s(self) -> float:
        """Seconds since the chip was last programmed (advanced by :meth:`advance`)."""
        return self._t

    def program(self, W: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Write target weights by write-verify.

        Targets are clipped to the representable range (±``w_max``, and each device's own maximum
        conductance), rounded to the device's levels, then written with the profile's state-dependent
        programming error.  Stuck devices keep their value.  Drift exponents are drawn for the new
        states.

        Without ``mask`` the whole array (and its reference column) is written and the chip's clock
        restarts at 0.  With a boolean ``mask`` (in_features × out_features) only those cells are
        rewritten (selective write-verify, as in mixed-precision training); the others, the reference
        column and the clock are left as they are, and only the rewritten cells are counted.
        """
        # selective writes (hybrid training's frequent case) keep targets and mask where the state lives
        move = self._bk.to_device if (mask is not None and not self._cpu) else self._host_array
        xp = self._xp if mask is not None else np
        W = move(W)
        if W.shape != self.shape:
            raise ValueError(f"program: W must have shape {self.shape}, got {W.shape}")
        if mask is not None:
            mask = move(mask)
            if mask.shape != self.shape or mask.dtype != np.bool_:
                raise ValueError(f"program: mask must be a boolean array of shape {self.shape}")
            if not bool(xp.all(xp.isfinite(W[mask]))):
                raise NonFiniteInput("program: W contains NaN or inf")
        elif not np.all(np.isfinite(W)):
            raise NonFiniteInput("program: W contains NaN or inf")
        if mask is None:
            self._t = 0.0
            self._gdc_gain = 1.0
            self._updates_since_refresh = 0
        if self._ideal:
            if mask is None:
                self._W[...] = self._dev(W / self.w_max)
            else:
                self._W[self._dev(mask)] = self._dev(W[mask] / self.w_max)
            return
        d = self.profile.device
        if mask is not None:
            self._program_cells(W, mask)
            return
        wn = W.astype(np.float64) / self.w_max
        if self._P == 2:
            targets = np.stack([np.maximum(wn, 0.0), np.maximum(-wn, 0.0)])
        else:
            targets = (self._gref0 + wn * self._span)[None]
        self._g[...] = self._dev(self._write(targets, self._host(self._gmax)))
        if self._wn.strides != (0, 0, 0):
            self._wn[...] = 0.0
        self._apply_stuck()
        # reference column: one device per row of each tile, at the reference state
        if self._P == 1:
            self._ref[...] = self._dev(self._write(np.full(self._ref.shape, self._gref0), 1.0))
        self._draw_drift_exponents(targets)
        n_dev = self._P * self.in_features * self.out_features + (self._ref.size if self._P == 1 else 0)
        self._count_programming(n_dev, min(self._row_tile, self.in_features))
        self._dirty = True
        if d.drift.model != "none":
            self._gdc_ref = self._gdc_measure()

    def _count_programming(self, n_dev: int, rows: int) -> None:
        wv = self.profile.cost.write_verify_pulses
        self.ops.device_pulses += int(round(n_dev * wv))
        self.ops.cell_reads += int(round(n_dev * wv))
        self.ops.program_steps += int(math.ceil(rows * self._P * wv))

    def _write_constants(self):
        """(drift-exponent parameters, programming-noise polynomial in units of the conductance range) of the
        selective writes, as backend arrays: fixed by the profile, moved to the device once."""
        c = getattr(self, "_write_consts", None)
        if c is None:
            d = self.profile.device
            dr = d.drift
            nu_prm = np.array([dr.nu_mean_ln_coeff, dr.nu_mean_offset, dr.nu_mean_min, dr.nu_mean_max,
                               dr.nu_std_ln_coeff, dr.nu_std_offset, dr.nu_std_min, dr.nu_std_max])
            prog = np.asarray(d.programming.noise_poly_uS, dtype=np.float64) / self._dg
            c = self._write_consts = (self._dev(nu_prm), self._dev(prog))
        return c

    def _program_cells(self, W: np.ndarray, mask: np.ndarray) -> None:
        """Selective write-verify of the masked cells (see :mod:`ffsim.devices.program`)."""
        p, d = self.profile, self.profile.device
        drift_on = self._nu is not None
        xp = self._xp
        nu = self._nu if drift_on else xp.zeros((self._P, 1, 1), np.float32)
        cache_on = p.tile.ir_drop == 0 and not self._dirty
        S2 = self._S2 if self._S2 is not None else xp.zeros((0, 0), np.float32)
        rows = xp.zeros(self.in_features, dtype=np.bool_)
        Wn = self._dev(self._xp.ascontiguousarray(W, dtype=np.float64) / self.w_max)
        nu_prm, prog = self._write_constants()
        n = self._k.program_masked(Wn, self._dev(self._xp.ascontiguousarray(mask)), self._g, self._gmax, self._stuck,
                                   self._wn, nu, drift_on, nu_prm, prog, d.levels, self._gref0, self._span,
                                   self._gmin_n, self._xscale, draw_key(self._rng), cache_on, self._W, S2, self._ref,
                                   self._col_tile, self._lut, self._lut_inv, self._t2(), self._rowsum, rows)
        if n == 0:
            return
        # rows are written one after another, tiles in parallel
        per_tile = np.bincount(np.nonzero(self._host(rows))[0] // self._row_tile, minlength=len(self._row_tiles))
        self._count_programming(self._P * int(n), int(per_tile.max()))
        if not cache_on:
            self._dirty = True
        self._colsum_dirty = True

    def _write(self, targets: np.ndarray, gmax: np.ndarray | float) -> np.ndarray:
        """Write-verify to normalized targets: levels, each device's maximum ``gmax``, programming error."""
        d = self.profile.device
        t = np.clip(targets, 0.0, 1.0)
        if d.levels:
            t = np.rint(t * (d.levels - 1)) / (d.levels - 1)
        t = np.minimum(t, gmax)
        sig = programming_sigma_uS(self.profile, d.g_min_uS + t * self._dg) / self._dg
        if np.any(sig > 0):
            t = t + sig * self._rng.standard_normal(t.shape)
        return np.clip(t, 0.0, gmax).astype(np.float32)

    def _draw_drift_exponents(self, targets: np.ndarray) -> None:
        d = self.profile.device
        if d.drift.model == "none":
            return
        g_uS = d.g_min_uS + np.clip(targets, 0, None) * self._dg
        mean, std = drift_nu_params(self.profile, g_uS)
        self._nu = self._dev(np.maximum(mean + std * self._rng.standard_normal(mean.shape), 0.0).astype(np.float32))
        if self._P == 1:
            ref = self._host(self._ref)
            mean_r, std_r = drift_nu_params(self.profile, d.g_min_uS + ref.astype(np.float64) * self._dg)
            self._nu_ref = self._dev(np.maximum(mean_r + std_r * self._rng.standard_normal(mean_r.shape), 0.0))

    def forward(self, x: np.ndarray) -> np.ndarray:
        """What the chip measures for inputs ``x`` (batch × in_features): ≈ ``x @ W``.

        DAC (noise management, clipping, quantization) → analog MVM per tile with fresh read noise,
        IR drop and the drift of the current time → each tile's ADC (gain/offset mismatch, transfer
        nonlinearity, noise, clipping, quantization) → digital accumulation and rescaling.
        """
        xb, single = self._batch(x, self.in_features, "forward: x")
        if self._dirty:
            self._rebuild()
        ref_s2 = self._S2ref
        y, x2 = self._mvm(xb, self._W, self._S2, ref_s2, self._row_tiles, self._adc_fwd, self._col_tile)
        n_vec = xb.shape[0]
        self.ops.add(dac_conversions=n_vec * self.in_features * len(self._col_tiles),
                     adc_conversions=n_vec * self.out_features * len(self._row_tiles),
                     macs=n_vec * self.in_features * self.out_features, mvm_cycles=n_vec)
        if not self._ideal:
            self.ops.add(cell_reads=n_vec * self.in_features * (self._P * self.out_features
                                                                + (len(self._col_tiles) if self._P == 1 else 0)))
            self._count_pass_charge(x2, forward=True)
        return y[0] if single else y

    def transposed(self, d: np.ndarray) -> np.ndarray:
        """The same measurement through the transposed array: ≈ ``d @ W.T`` (batch × out_features in).

        Uses the chip's bidirectional periphery: its own DACs on the columns and ADCs on the rows (with
        their own fabrication mismatch).  The reference column's read noise is not modeled in this
        direction and IR drop is taken as in the forward direction (first-order).
        """
        db, single = self._batch(d, self.out_features, "transposed: d")
        if self._dirty:
            self._rebuild()
        S2t = self._S2.T if self._S2 is not None else None
        y, x2 = self._mvm(db, self._W.T, S2t, None, self._col_tiles, self._adc_bwd, self._row_tile)
        n_vec = db.shape[0]
        self.ops.add(dac_conversions=n_vec * self.out_features * len(self._row_tiles),
                     adc_conversions=n_vec * self.in_features * len(self._col_tiles),
                     macs=n_vec * self.in_features * self.out_features, mvm_cycles=n_vec)
        if not self._ideal:
            self.ops.add(cell_reads=n_vec * self.out_features * self.in_features * self._P)
            self._count_pass_charge(x2, forward=False)
        return y[0] if single else y

    def _mvm(self, x, W, S2, S2ref, in_tiles, adc: _ADC, out_tile: int) -> tuple[np.ndarray, np.ndarray]:
        """DAC → per-tile GEMMs (signal, read variance) → ADC; returns (outputs, the DAC's x_q²)."""
        p = self.profile
        xp = self._xp
        B, n_out = x.shape[0], W.shape[1]
        if B == 0:
            return xp.zeros((0, n_out), dtype=np.float32), xp.zeros((0, x.shape[1]), dtype=np.float32)
        xq = xp.empty_like(x)
        xq2 = xp.empty_like(x)
        scale = xp.empty(B, dtype=np.float32)
        self._k.dac_convert(x, p.dac.noise_management == "abs_max", p.dac.bits, np.float32(p.dac.input_bound), True,
                    xq, xq2, scale)
        T = len(in_tiles)
        read_noise = S2 is not None
        Z = xp.empty((T, B, n_out), dtype=np.float32)
        V = xp.empty((T, B, n_out), dtype=np.float32) if read_noise else zeros_like_view((T, B, n_out))
        n_ct = -(-n_out // out_tile)
        # the reference columns' currents (zeros without their read noise: a kept read-only array then)
        ZR = xp.zeros((T, B, n_ct), dtype=np.float32) if S2ref is not None else self._zeros((T, B, n_ct))
        self._tile_gemms(xq, W, Z, in_tiles)
        if read_noise:
            self._tile_gemms(xq2, S2, V, in_tiles, noise=True)
        for t, (a, b) in enumerate(in_tiles):
            if S2ref is not None:
                vr = xq2[:, a:b] @ S2ref[a:b]
                ZR[t] = xp.sqrt(xp.maximum(vr, 0.0)) * self._dev(self._rng.standard_normal(vr.shape, dtype=np.float32))
        a = p.adc
        noise_on = read_noise or a.noise_std > 0
        bits_on = a.bits > 0
        lsb = 2.0 * a.out_bound / (2.0**a.bits - 2.0) if a.bits > 1 else 2.0 * a.out_bound
        key = draw_key(self._rng) if noise_on else np.uint64(0)
        scale *= np.float32(self.w_max * self._gdc_gain)
        out = xp.empty((B, n_out), dtype=np.float32)
        self._k.adc_accumulate(Z, V, ZR, adc.gain, adc.off, adc.kappa, adc.tanh_kappa, out_tile, noise_on,
                               np.float32(a.noise_std**2), bits_on, np.float32(a.out_bound), np.float32(1.0 / lsb),
                               np.float32(lsb), adc.nonlinear, scale, key, out)
        return out, xq2

    def _tile_gemms(self, x, M, out, in_tiles, noise: bool = False) -> None:
        """``out[t] = x[:, a:b] @ M[a:b]`` for each input tile ``(a, b)``.  On a GPU the full tiles (all but
        perhaps the last) go into one strided-batched cuBLAS call that reads the tiles in place
        (:mod:`ffsim.gpu.blas`; the host's cost of a call, not the arithmetic, is what a tile's GEMM costs
        there, BENCHMARKS.md).  The CUDA simulator batches the full tiles through a copy; the CPU computes
        tile by tile.  ``noise``: the read-noise variance (on TF32 tensor cores where ``FFSIM_GPU_TF32=1``)."""
        xp = self._xp
        if self._direct_blas:
            from ffsim.gpu import blas

            blas.tile_gemms(x, M, out, in_tiles, tf32=noise and blas.TF32)
            return
        t0 = 0
        R = in_tiles[0][1] - in_tiles[0][0] if in_tiles else 0
        n_full = sum(1 for a, b in in_tiles if b - a == R)  # the full tiles come first
        if not self._cpu and n_full > 1 and M.flags.c_contiguous:
            B, n_out = x.shape[0], M.shape[1]
            xs = xp.ascontiguousarray(x[:, : n_full * R].reshape(B, n_full, R).transpose(1, 0, 2))
            xp.matmul(xs, M[: n_full * R].reshape(n_full, R, n_out), out=out[:n_full])
            t0 = n_full
        for t in range(t0, len(in_tiles)):
            a, b = in_tiles[t]
            xp.matmul(x[:, a:b], M[a:b], out=out[t])

    @property
    def _direct_blas(self) -> bool:
        """float32 GEMMs straight through cuBLAS (a real GPU; :mod:`ffsim.gpu.blas`)."""
        return not self._cpu and not self._bk.simulated

    def pulse_update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        """In-situ update ΔW ≈ lr · xᵀ d by stochastic pulse trains (Gokmen & Vlasov 2016).

        ``x`` (batch × in) drives the rows and ``d`` (batch × out) the columns; each sample is one set of
        trains.  With ``update.update_management`` the row and column probabilities are balanced and
        the train length adapted per sample (up to ``update.max_pulses``), as in aihwkit.  The expected
        number of coincidences at cell (i, j) is ``lr |x_i d_j| / δw``, δw the nominal weight change of
        one pulse; the realised change follows the device's response.
        """
        Crossbar.pulse_updates([(self, x, d, lr)])

    @staticmethod
    def pulse_updates(updates, nonfinite=None) -> None:
        """Several in-situ updates ``(chip, x, d, lr)``, each as :meth:`pulse_update` does it, in order.

        Everything is checked before any chip changes (the arguments, a profile without in-situ update,
        non-finite inputs, exact trains longer than 64 slots): an error leaves every chip as it was.  On
        the GPU backend the trains of the 'aggregate' updates are planned on the device (their lengths from
        the per-case maxima, :func:`ffsim.gpu.kernels.plan_trains`, equal to the host's plan), and one
        transfer back (a flag) tells whether an input was not finite; 'exact' updates plan on the host (the
        maxima come back in one transfer, the coefficients go up in one).  The layers of an FF step update
        together this way (``ffsim.ff.layer.update_layers``).

        ``nonfinite``, a 1-element float64 array of the GPU backend (zero), turns that transfer off for the
        device-planned updates: the flag is set there (1.0) and the caller reads it later and raises
        :class:`NonFiniteInput` (the FF step reads it with its statistics: no synchronization in the middle
        of a step).  The updates then run: cases with NaN or inf get empty trains, so no conductance
        changes because of them, but the other cases and chips are updated.  Host-planned updates and the
        CPU backend always check first.
        """
        plans = [chip._pulse_plan(x, d, lr) for chip, x, d, lr in updates]
        pulsed = [p for p in plans if p.kind == "pulse"]
        for p in pulsed:
            p.m = p.chip._xp.empty((2, p.xb.shape[0]), np.float32)
            p.chip._k.pulse_maxima(p.xb, p.db, p.m)
        on_device = [p for p in pulsed if not p.chip._cpu and p.chip.pulse_mode == "aggregate"]
        on_host = [p for p in pulsed if p not in on_device]
        _move_together(on_host, "m", to_host=True)
        for p in on_host:
            p.chip._plan_trains(p)  # raises on non-finite inputs
        flags: dict = {}  # per backend: (backend, flag)
        for p in on_device:
            bk = p.chip._bk
            if nonfinite is None and id(bk) not in flags:
                flags[id(bk)] = (bk, p.chip._slot(np.float64))
            p.chip._plan_trains_device(p, nonfinite if nonfinite is not None else flags[id(bk)][1])
        for bk, flag in flags.values():  # one transfer per backend
            if float(bk.to_host(flag)[0]):
                raise NonFiniteInput("pulse_update: x or d contains NaN or inf")
        _move_together(on_host, "coef", to_host=False)
        # independent chips: on the GPU each on a stream of its own where enabled (ffsim.gpu.streams), so
        # that their updates' longest pulse trains overlap; ``plans`` keeps every input alive until the join
        if _on_lanes(pulsed):
            from ffsim.gpu import streams

            with streams.lanes(len(pulsed)) as lane:
                for k, p in enumerate(pulsed):
                    with lane(k):
                        p.chip._pulse_apply(p)
            for p in plans:
                if p.kind != "pulse":
                    p.chip._pulse_apply(p)
            return
        for p in plans:
            p.chip._pulse_apply(p)

    def _pulse_plan(self, x, d, lr) -> _PulsePlan:
        """The checked arguments of an update, and what it is: 'ideal' (float weights), 'skip' (lr = 0) or
        'pulse'."""
        xb, _ = self._batch(x, self.in_features, "pulse_update: x")
        db, _ = self._batch(d, self.out_features, "pulse_update: d")
        if xb.shape[0] != db.shape[0]:
            raise ValueError(f"pulse_update: x and d must have the same batch size ({xb.shape[0]} != {db.shape[0]})")
        if not (isinstance(lr, int | float | np.floating) and math.isfinite(lr) and lr >= 0):
            raise ValueError(f"pulse_update: lr must be a finite number >= 0 (got {lr!r})")
        if self._ideal:
            return _PulsePlan(self, "ideal", xb, db, lr)
        u = self.profile.update
        if u.model == "none":
            raise RuntimeError(f"profile '{self.profile.name}' has no in-situ update (update.model = 'none'); "
                               "write weights with program()")
        return _PulsePlan(self, "skip" if lr == 0 else "pulse", xb, db, lr)

    def _plan_trains(self, p: _PulsePlan) -> None:
        """The trains of an update from its per-case maxima ``p.m`` (host): lengths ``p.BL`` and the host
        coefficients ``p.coef`` (rows cx, cd, √BL); raises on non-finite inputs."""
        u = self.profile.update
        lr = p.lr
        dw_weight = self._dw_weight()
        xm, dm = p.m[0].astype(np.float64), p.m[1].astype(np.float64)
        active = (xm > 0) & (dm > 0) & np.isfinite(xm) & np.isfinite(dm)
        if not np.all(np.isfinite(xm)) or not np.all(np.isfinite(dm)):
            raise NonFiniteInput("pulse_update: x or d contains NaN or inf")
        need = lr * xm * dm / dw_weight
        if u.update_management:
            BL = np.clip(np.ceil(need), 1, u.max_pulses).astype(np.int64)
        else:
            BL = np.full(p.xb.shape[0], u.max_pulses, dtype=np.int64)
        BL[~active] = 0
        if self.pulse_mode == "exact" and BL.max(initial=0) > 64:
            raise ValueError(f"pulse_mode 'exact' supports trains up to 64 slots (update.max_pulses = "
                             f"{u.max_pulses})")
        k = np.where(active, lr / (dw_weight * np.maximum(BL, 1)), 0.0)
        safe_x = np.where(active, xm, 1.0)
        safe_d = np.where(active, dm, 1.0)
        if u.update_management:
            cx = np.sqrt(k * safe_d / safe_x)
            cd = np.sqrt(k * safe_x / safe_d)
        else:
            cx = cd = np.sqrt(k)
        p.BL = BL
        p.coef = np.stack([cx.astype(np.float32), cd.astype(np.float32), np.sqrt(BL.astype(np.float32))])

    def _dw_weight(self) -> float:
        """A pulse's nominal weight change (weight units), the unit of the trains' lengths."""
        u = self.profile.update
        return self.w_max * u.dw_min / (self._R * self._span) * (2.0 if self._mode == 1 else 1.0)

    def _plan_trains_device(self, p: _PulsePlan, flag) -> None:
        """:meth:`_plan_trains` on the device from the maxima ``p.m`` there: ``p.coef`` (equal to the host's),
        the slots summed into ``p.counts[1]``; ``flag[0]`` set to 1.0 where a maximum is not finite."""
        u = self.profile.update
        p.coef = self._xp.empty((3, p.xb.shape[0]), np.float32)
        p.counts = self._slot(np.int64, 2)
        self._k.plan_trains(p.m, p.lr, self._dw_weight(), u.update_management, u.max_pulses, p.coef, flag,
                            p.counts[1:])

    def _pulse_apply(self, p: _PulsePlan) -> None:
        """Carry out a checked update (its trains planned, ``p.coef`` on the device)."""
        if p.kind == "ideal":
            self._W += np.float32(p.lr / self.w_max) * (p.xb.T @ p.db)
            return
        if p.kind == "skip":
            return
        xp = self._xp
        u = self.profile.update
        xb, db, BL, coef = p.xb, p.db, p.BL, p.coef
        # without IR drop the kernels keep the caches current cell by cell; with it, rebuild afterwards
        cache_on = self.profile.tile.ir_drop == 0
        if self._dirty:
            self._rebuild()
        S2 = self._S2 if self._S2 is not None else xp.zeros((0, 0), np.float32)
        common = (self._g, self._gmax, self._dwu, self._dwd, self._gu, self._gd, self._stuck, self._wn, self._prm,
                  self._R, self._mode, draw_key(self._rng), cache_on, self._W, S2, self._ref, self._col_tile,
                  self._span, self._gmin_n, self._xscale, self._lut, self._lut_inv, self._t2(), self._rowsum)
        if self.pulse_mode == "exact":
            pr = xp.minimum(xp.abs(xb) * coef[0][:, None], 1.0)
            pc = xp.minimum(xp.abs(db) * coef[1][:, None], 1.0)
            n = self._k.pulse_exact(pr, pc, xp.sign(xb).astype(np.int8), xp.sign(db).astype(np.int8), self._dev(BL),
                                    *common)
        else:
            # A = p·√BL, C = q·√BL per sample: e_tot = AᵀC and e_net = (A·sign x)ᵀ(C·sign d) are the expected
            # coincidences (all, and up minus down) of the mini-batch
            A, As, Cm, Cs = xp.empty_like(xb), xp.empty_like(xb), xp.empty_like(db), xp.empty_like(db)
            self._k.pulse_factors(xb, db, coef, A, As, Cm, Cs)
            if self._direct_blas:
                from ffsim.gpu import blas

                e_tot = xp.empty((xb.shape[1], db.shape[1]), np.float32)
                e_net = xp.empty_like(e_tot)
                blas.matmul(A.T, Cm, e_tot, tf32=blas.TF32)  # (Poisson means: TF32 where FFSIM_GPU_TF32=1)
                blas.matmul(As.T, Cs, e_net, tf32=blas.TF32)
            else:
                e_tot = A.T @ Cm
                e_net = As.T @ Cs
            if self._cpu:
                n = self._k.pulse_aggregate(e_tot, e_net, *common)
            else:  # trains planned on the device: the counts stay there until the counter is read
                self._k.pulse_aggregate(e_tot, e_net, *common, total=p.counts[:1])
                self.ops.defer_counts(xp, p.counts, _update_counts)
                n = 0
        if not cache_on:
            self._dirty = True
        self._colsum_dirty = True
        if self._cpu or self.pulse_mode == "exact":  # (else both counted on the device, deferred)
            self.ops.add(device_pulses=int(n), update_slots=int(BL.sum()))
        if u.polarity == "set_only" and u.refresh_every:  # (counted only where it decides something)
            self._updates_since_refresh += 1
        if u.polarity == "set_only" and u.refresh_every and self._updates_since_refresh >= u.refresh_every:
            self._refresh()
            self._updates_since_refresh = 0

    def _count_slot(self):
        """A fresh zeroed 1-element int64 device array for a deferred count (:meth:`_slot`)."""
        return self._slot(np.int64)

    def _slot(self, dtype, size: int = 1):
        """A fresh zeroed device array of ``size`` (≤ 256) elements of ``dtype`` for deferred values, cut from
        a block of 256 (one allocation per 256 values, not one per call)."""
        if not self._cpu:
            from ffsim.gpu import kernels

            if kernels.CAPTURE is not None:  # zeroed within the captured step, so each replay starts from zero
                return self._xp.zeros(size, dtype)
        key = np.dtype(dtype).char
        blocks = self.__dict__.setdefault("_slot_blocks", {})
        blk, nxt = blocks.get(key, (None, 0))
        if blk is None or nxt + size > blk.shape[0]:
            blk, nxt = self._xp.zeros(256, dtype), 0
        blocks[key] = (blk, nxt + size)
        return blk[nxt:nxt + size]

    def _refresh(self) -> None:
        """'set_only' pairs: where a device passed the threshold, read the weight, RESET both devices and
        write the weight back onto one of them (see :mod:`ffsim.devices.refresh`)."""
        p = self.profile
        u, d = p.update, p.device
        drift_on = self._nu is not None
        xp = self._xp
        nu = self._nu if drift_on else xp.zeros((2, 1, 1), np.float32)
        nu_prm, prog = self._write_constants()
        cache_on = p.tile.ir_drop == 0
        S2 = self._S2 if self._S2 is not None else xp.zeros((0, 0), np.float32)
        # on the GPU the count stays on the device (deferred, no synchronization) where nothing here depends
        # on it: with IR drop, a refresh that changed nothing must not force a rebuild
        deferred = not self._cpu and cache_on
        total = {"total": self._count_slot()} if deferred else {}
        n = self._k.refresh_pairs(self._g, self._wn, self._gmax, self._stuck, nu, drift_on, nu_prm, prog,
                                  d.levels, u.refresh_threshold, (u.reset_state - u.state_min) / self._R,
                                  u.reset_std / self._R, self._gmin_n, self._xscale, self._lut, self._lut_inv,
                                  math.sqrt(self._t2()), draw_key(self._rng), cache_on, self._W, S2, self._ref,
                                  self._col_tile, self._span, self._t2(), self._rowsum, **total)
        counts = functools.partial(_refresh_counts, p.cost.write_verify_pulses)
        if deferred:
            self.ops.defer_counts(xp, n, counts)
            self._colsum_dirty = True
            return
        if n == 0:
            return
        self.ops.add(**counts(n))
        if not cache_on:
            self._dirty = True
        self._colsum_dirty = True

    def read_weights(self) -> np.ndarray:
        """A noisy measurement of the stored weights, cell by cell (verify reads).

        Each device is read once with its state-dependent read noise at the current time; no IR drop
        (one cell at a time) and no ADC range limit (the verify sense path).  Returns ``W`` in weight
        units (in_features × out_features).
        """
        n_in, n_out = self.shape
        self.ops.mvm_cycles += n_in
        self.ops.macs += n_in * n_out
        if self._ideal:
            return (self._W * self.w_max).astype(np.float32)
        if not self._cpu:  # verify reads are rare: measured on the host, the result moved to the device
            return self._dev(self._read_weights_host())
        return self._read_weights_host()

    def _read_weights_host(self) -> np.ndarray:
        n_in, n_out = self.shape
        lut, g, ref = self._host(self._lut), self._host(self._g), self._host(self._ref)
        t_f = math.sqrt(self._t2())
        x_grid = np.linspace(0, (lut.size - 1) / self._lut_inv, lut.size)
        wn = self._host(self._wn)

        def read(gv: np.ndarray) -> np.ndarray:
            gv = gv.astype(np.float64)
            if not self._noise_on:
                return gv
            sig = np.interp((self._gmin_n + gv) * self._xscale, x_grid, lut) * t_f
            return gv + sig * self._rng.standard_normal(gv.shape)

        a = read(g[0] + wn[0])
        if self._P == 2:
            b = read(g[1] + wn[1])
        else:
            b = np.repeat(read(ref), [hi - lo for lo, hi in self._col_tiles], axis=1)
        n_dev = self._P * n_in * n_out + (ref.size if self._P == 1 else 0)
        self.ops.cell_reads += n_dev
        self.ops.adc_conversions += n_dev
        g_sum = (self._dg * (g.sum(dtype=np.float64) + (ref.sum(dtype=np.float64) if self._P == 1 else 0))
                 + self.profile.device.g_min_uS * n_dev) * 1e-6
        self.ops.read_charge_S_s += g_sum * self.profile.cost.integration_time_ns * 1e-9
        return (self.w_max * (a - b) / self._span).astype(np.float32)

    def advance(self, seconds: float, compensate: bool = False) -> None:
        """Let ``seconds`` pass: conductances drift as G(t) = G(t0)(t/t0)^-ν (t since programming).

        With ``compensate=True`` the periphery re-measures a reference read (all-ones input) and scales
        every later output by its ratio to the value measured right after programming (global drift
        compensation); with ``False`` no compensation is applied.
        """
        if not (isinstance(seconds, int | float | np.floating) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"advance: seconds must be a finite number >= 0 (got {seconds!r})")
        t_old, t_new = self._t, self._t + float(seconds)
        self._t = t_new
        if self._ideal:
            return
        dr = self.profile.device.drift
        if dr.model != "none" and self._nu is not None and t_new > dr.t0_s:
            ratio = max(t_new, dr.t0_s) / max(t_old, dr.t0_s)
            lr = np.float32(math.log(ratio))
            xp = self._xp
            moving = self._stuck == 0
            G = self._gmin_n + self._g
            G *= xp.exp(-self._nu * lr)
            self._g[...] = xp.where(moving, G - self._gmin_n, self._g)
            if self._P == 1:
                Gr = (self._gmin_n + self._ref) * xp.exp(-self._nu_ref * lr)
                self._ref[...] = Gr - self._gmin_n
        self._dirty = True
        if compensate:
            if self._gdc_ref is None:
                raise RuntimeError("advance(compensate=True): no reference read was taken; program() the chip "
                                   "first (and the profile must have drift)")
            self._gdc_gain = 1.0
            r = self._gdc_measure()
            self._gdc_gain = self._gdc_ref / r if r > 0 else 1.0
        else:
            self._gdc_gain = 1.0

    def _gdc_measure(self, reads: int = 8) -> float:
        """Mean Σ_j |y_j| for an all-ones input, measured through the chip (counted as MVMs)."""
        y = self.forward(np.ones((reads, self.in_features), dtype=np.float32))
        return float(self._xp.abs(y).sum(axis=1).mean())

    # ------------------------------------------------------------------------------------------
    # checkpointing (infrastructure, not a trainer-facing operation)

    def _checkpoint(self) -> tuple[dict[str, np.ndarray], dict]:
        """The chip's complete mutable state: arrays and JSON-able scalars (fabrication is re-derived)."""
        arrays = {"W": self._W}
        if not self._ideal:
            arrays.update(g=self._g, ref=self._ref, rowsum=self._rowsum, colsum=self._colsum)
            if self._wn.strides != (0, 0, 0):
                arrays["wn"] = self._wn
            for name in ("_S2", "_S2ref", "_nu", "_nu_ref"):
                v = getattr(self, name)
                if v is not None:
                    arrays[name[1:]] = v
        if not self._cpu:
            arrays = {k: self._host(v) for k, v in arrays.items()}
        scalars = {"t": self._t, "gdc_gain": self._gdc_gain, "gdc_ref": self._gdc_ref,
                   "updates_since_refresh": self._updates_since_refresh, "dirty": self._dirty,
                   "colsum_dirty": self._colsum_dirty, "rng": self._rng.bit_generator.state,
                   "ops": self.ops.as_dict()}
        return arrays, scalars

    def _restore(self, arrays: dict[str, np.ndarray], scalars: dict) -> None:
        for name, v in arrays.items():
            attr = "_" + name
            cur = getattr(self, attr, None)
            if isinstance(cur, self._xp.ndarray) and cur.shape == v.shape:
                cur[...] = self._dev(v)
            else:
                setattr(self, attr, self._dev(np.array(v)))
        self._t = float(scalars["t"])
        self._gdc_gain = float(scalars["gdc_gain"])
        self._gdc_ref = None if scalars["gdc_ref"] is None else float(scalars["gdc_ref"])
        self._updates_since_refresh = int(scalars["updates_since_refresh"])
        self._dirty = bool(scalars["dirty"])
        self._colsum_dirty = bool(scalars["colsum_dirty"])
        self._rng.bit_generator.state = scalars["rng"]
        self.ops.reset()  # the restored counts replace all, values still pending on the device included
        for k, v in scalars["ops"].items():
            setattr(self.ops, k, v)

    def __repr__(self) -> str:
        return (f"Crossbar({self.profile.name!r}, {self.in_features}x{self.out_features}, fab_seed={self.fab_seed}, "
                f"tiles={len(self._row_tiles)}x{len(self._col_tiles)}, w_max={self.w_max:g})")
