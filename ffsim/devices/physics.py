"""Physics of one memory device: the formulas of a profile, evaluated on conductances.

Conventions used throughout the device and crossbar layers:

* ``gn`` is the *normalized conductance* of a device, ``(G - g_min) / (g_max - g_min)``: 0 at g_min,
  1 at the nominal g_max (a device's own maximum differs by its device-to-device spread).
* ``x = G / g_max`` is the argument of the state-dependent formulas of the PCM model.
* ``u`` is the dimensionless state of the pulsed-update model, affine in ``gn``:
  ``u = state_min + gn * (state_max - state_min)``.

Everything here is a plain formula, vectorized with numpy or inlined into Numba kernels; the tests compare
each with the profile's equation.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ffsim.profiles import HardwareProfile

__all__ = [
    "MODEL_IDS",
    "drift_nu_params",
    "mean_step",
    "programming_sigma_uS",
    "read_noise_lut",
    "read_noise_sigma_uS",
    "read_noise_time_factor",
    "smax",
    "smin",
]

MODEL_IDS = {"none": 0, "linear": 1, "exponential": 2, "power": 3}

LUT_SIZE = 4097


def _poly(coeffs: tuple[float, ...], x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x, dtype=np.float64)
    for c in reversed(coeffs):
        out = out * x + c
    return out


def programming_sigma_uS(profile: HardwareProfile, g_uS: np.ndarray) -> np.ndarray:
    """Std of the programming error (µS) at target conductance ``g_uS``: the profile's polynomial in g/g_max."""
    coeffs = profile.device.programming.noise_poly_uS
    x = np.asarray(g_uS, dtype=np.float64) / profile.device.g_max_uS
    if not coeffs:
        return np.zeros_like(x)
    return np.maximum(_poly(coeffs, x), 0.0)


def read_noise_time_factor(profile: HardwareProfile, t_s: float) -> float:
    """The 1/f time factor sqrt(ln((t + t_read)/(2 t_read))) of model 'pcm_1f' (1 for other models).

    ``t_s`` is the time since programming; reads earlier than ``read_noise.t_min_s`` are evaluated at
    ``t_min_s``.  The factor is clamped at 0 (it would be imaginary for t < t_read).
    """
    rn = profile.device.read_noise
    if rn.model != "pcm_1f":
        return 1.0
    t = max(float(t_s), rn.t_min_s)
    arg = np.log((t + rn.t_read_s) / (2.0 * rn.t_read_s))
    return float(np.sqrt(max(arg, 0.0)))


def read_noise_sigma_uS(profile: HardwareProfile, g_uS: np.ndarray, t_s: float = 0.0) -> np.ndarray:
    """Std of one read (µS) of a device at conductance ``g_uS``, a time ``t_s`` after programming."""
    d = profile.device
    rn = d.read_noise
    g = np.asarray(g_uS, dtype=np.float64)
    x = np.maximum(g, 0.0) / d.g_max_uS
    if rn.model == "none":
        return np.zeros_like(g)
    if rn.model == "poly":
        return np.maximum(_poly(rn.poly_uS, x), 0.0)
    with np.errstate(divide="ignore"):
        q = np.minimum(rn.q_coeff / np.power(x, rn.q_exponent), rn.q_max)
    q = np.where(x > 0, q, rn.q_max)
    return q * np.maximum(g, 0.0) * read_noise_time_factor(profile, t_s)


def read_noise_lut(profile: HardwareProfile, x_cap: float) -> tuple[np.ndarray, float]:
    """Table of σ_read/(g_max − g_min) at t_min (time factor divided out) on x = g/g_max in [0, x_cap].

    Returns ``(table, inv_step)``; kernels interpolate linearly (relative error below 1e-4 for the
    shipped models, checked in the tests).
    """
    d = profile.device
    dg = d.g_max_uS - d.g_min_uS
    xs = np.linspace(0.0, x_cap, LUT_SIZE)
    tf = read_noise_time_factor(profile, 0.0)
    sig = read_noise_sigma_uS(profile, xs * d.g_max_uS, 0.0)
    if tf > 0:
        sig = sig / tf
    return (sig / dg).astype(np.float32), float((LUT_SIZE - 1) / x_cap)


@njit(inline="always", cache=True, error_model="numpy")
def smin(a, b):
    """Python's ``min(a, b)`` (numba's overload of the builtin does not compile for CUDA)."""
    return b if b < a else a


@njit(inline="always", cache=True, error_model="numpy")
def smax(a, b):
    """Python's ``max(a, b)``."""
    return b if b > a else a


@njit(inline="always", cache=True, error_model="numpy")
def lut_eval(table, inv_step, x):
    """Linear interpolation in a read-noise table (x clamped to the table's domain); float64."""
    x = np.float64(x)
    if x <= 0.0:
        return np.float64(table[0])
    pos = x * np.float64(inv_step)
    n = table.shape[0] - 1
    if pos >= n:
        return np.float64(table[n])
    k = np.int64(pos)
    f = pos - np.float64(k)
    return np.float64(table[k]) + np.float64(np.float32(table[k + 1] - table[k])) * f


def drift_nu_params(profile: HardwareProfile, g_uS: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the drift exponent ν for devices programmed to ``g_uS``."""
    dr = profile.device.drift
    x = np.maximum(np.asarray(g_uS, dtype=np.float64), 1e-12) / profile.device.g_max_uS
    lx = np.log(x)
    mean = np.clip(dr.nu_mean_ln_coeff * lx + dr.nu_mean_offset, dr.nu_mean_min, dr.nu_mean_max)
    std = np.clip(dr.nu_std_ln_coeff * lx + dr.nu_std_offset, dr.nu_std_min, dr.nu_std_max)
    return mean, std


# Indices of the float parameter vector handed to the pulse kernels (see ffsim.devices.pulse).
(P_MODEL, P_SMIN, P_SMAX, P_A, P_B, P_AUP, P_ADN, P_REL, P_ADD, P_STATE, P_WNOISE, P_INV_SMIN, P_INV_SMAX,
 P_INV_RANGE) = range(14)
N_PARAMS = 14


def update_params(profile: HardwareProfile) -> np.ndarray:
    """The update model as the float vector the kernels read (indices ``P_*``)."""
    u = profile.update
    prm = np.zeros(N_PARAMS, dtype=np.float64)
    prm[P_MODEL] = MODEL_IDS[u.model]
    prm[P_SMIN] = u.state_min
    prm[P_SMAX] = u.state_max
    prm[P_A] = u.exp_a
    prm[P_B] = u.exp_b
    prm[P_AUP] = u.exp_A_up
    prm[P_ADN] = u.exp_A_down
    prm[P_REL] = u.step_noise_rel
    prm[P_ADD] = u.dw_min * u.step_noise_add
    prm[P_STATE] = u.dw_min * u.step_noise_state
    prm[P_WNOISE] = u.dw_min * u.write_noise
    prm[P_INV_SMIN] = 1.0 / u.state_min if u.state_min != 0 else 0.0
    prm[P_INV_SMAX] = 1.0 / u.state_max if u.state_max != 0 else 0.0
    prm[P_INV_RANGE] = 1.0 / (u.state_max - u.state_min)
    return prm


@njit(inline="always", cache=True, error_model="numpy")
def mean_step(prm, u, d, dw_up, dw_dn, g_up, g_dn):
    """Signed mean change of the state ``u`` for one pulse in direction ``d`` (+1 up, −1 down); float64."""
    model = np.int64(prm[P_MODEL])
    smax_ = prm[P_SMAX]
    g_up = np.float64(g_up)
    g_dn = np.float64(g_dn)
    f = 1.0
    if model == 1:  # linear step (soft bounds for γ = 1); a zero bound means no slope on that side
        if d > 0:
            f = 1.0 - g_up * u * prm[P_INV_SMAX]
        else:
            f = 1.0 - g_dn * u * prm[P_INV_SMIN]
    elif model == 2:  # exponential step (aihwkit ExpStep)
        z = 2.0 * prm[P_A] * u * prm[P_INV_RANGE] + prm[P_B]
        if d > 0:
            f = 1.0 - prm[P_AUP] * math.exp(g_up * z)
        else:
            f = 1.0 - prm[P_ADN] * math.exp(-g_dn * z)
    elif model == 3:  # power step (Fusi & Abbott 2007)
        w = (smax_ - u) * prm[P_INV_RANGE]
        w = smin(smax(w, 0.0), 1.0)
        if d > 0:
            f = math.pow(w, g_up)
        else:
            f = math.pow(1.0 - w, g_dn)
    if f < 0.0:
        f = 0.0
    if d > 0:
        return np.float64(dw_up) * f
    return -np.float64(dw_dn) * f
