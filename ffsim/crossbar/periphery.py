"""DAC and ADC periphery kernels (Numba), fused so that each pass touches an array once.

Units: the analog side works in *normalized units*, where an input at full DAC scale (1) meets a cell
at full weight scale (1); a column's analog output is then a sum of up to ``rows`` such products and
the ADC clips it at ``±out_bound``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ffsim.devices.physics import smax, smin
from ffsim.devices.rng import normals32_fill
from ffsim.dispatch import any_layout

__all__ = ["adc_accumulate", "dac_convert", "zeros_like_view"]


def zeros_like_view(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """A read-as-zero array of any shape that occupies one element of memory."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype=dtype), shape=shape, strides=(0,) * len(shape),
                                           writeable=True)


@njit(parallel=True, cache=True, error_model="numpy")
def dac_convert(x, abs_max, bits, bound, want_sq, xq, xq2, scale):
    """Input conversion of a batch ``x`` (B × n).

    ``abs_max``: scale each row by its max |x| (noise management) so the DAC's full range is used; else
    divide by ``bound``.  With ``bits > 0`` the scaled input is clipped to [-1, 1] and rounded to
    ``2^(bits-1) - 1`` levels per side; ``bits == 0`` is an ideal converter.  Writes the converted
    input ``xq``, its square ``xq2`` (when ``want_sq``) and the per-row scale.
    """
    B, n = x.shape
    lev = np.float32(2.0 ** (bits - 1) - 1.0) if bits > 0 else np.float32(0.0)
    for b in prange(B):
        s = _dac_scale(x, b, abs_max, bound)
        scale[b] = s
        for i in range(n):
            v = _dac_value(x[b, i], s, bits, lev)
            xq[b, i] = v
            if want_sq:
                xq2[b, i] = _dac_square(v)


@any_layout("V")
@njit(parallel=True, cache=True, error_model="numpy")
def adc_accumulate(Z, V, ZR, gain, off, kappa, tanh_kappa, coltile, noise_on, sigma_adc2, bits_on, bound,
                   inv_lsb, lsb, nonlin_on, scale, key, out):
    """Convert every tile's partial sums and accumulate them digitally.

    ``Z[t, b, j]``: analog output of input-tile t for sample b, column j; ``V``: its read-noise variance
    (same shape; a zero-stride array of zeros when there is no read noise); ``ZR[t, b, c]``: the reference-column
    current of column tile c (subtracted before the ADC).  Per column of each tile the ADC applies gain,
    offset, noise of variance ``gain² V + sigma_adc2``, the compression ``tanh(κ y/bound)/tanh(κ)``
    (when ``nonlin_on``), clipping and rounding to the LSB (when ``bits_on``).
    ``out[b, j] = scale[b] * Σ_t ADC_t``.  The normal variates of row (t, b) are the block of stream
    ``key`` starting at counter ``(t B + b)(N + 1)``, whatever the number of threads.
    """
    T, B, N = Z.shape
    n_ct = (N + coltile - 1) // coltile
    nth = min(B, 64)
    chunk = (B + nth - 1) // nth
    for th in prange(nth):
        buf = np.zeros(N, dtype=np.float32)
        scratch = np.zeros((3, (N + 1) // 2), dtype=np.float32)
        for b in range(th * chunk, min(B, (th + 1) * chunk)):
            sb = scale[b]
            for t in range(T):
                if noise_on:
                    normals32_fill(key, np.uint64((t * B + b) * N + t * B + b), N, buf, scratch)
                first = t == 0
                for c in range(n_ct):
                    zr = ZR[t, b, c]
                    j0 = c * coltile
                    j1 = min(j0 + coltile, N)
                    if nonlin_on:
                        inv_bound = np.float32(np.float32(1.0) / bound)
                        for j in range(j0, j1):
                            y = _adc_analog(gain[t, j], Z[t, b, j], zr, off[t, j], V[t, b, j], sigma_adc2, buf[j])
                            y = _adc_compress(y, kappa[t, j], tanh_kappa[t, j], bound, inv_bound)
                            if bits_on:
                                y = _adc_quantize(y, bound, inv_lsb, lsb)
                            y = np.float32(y * sb)
                            out[b, j] = y if first else np.float32(out[b, j] + y)
                    elif bits_on:
                        # branch-free loops that LLVM vectorizes (buf is zero without noise)
                        for j in range(j0, j1):
                            y = _adc_analog(gain[t, j], Z[t, b, j], zr, off[t, j], V[t, b, j], sigma_adc2, buf[j])
                            y = np.float32(_adc_quantize(y, bound, inv_lsb, lsb) * sb)
                            out[b, j] = y if first else np.float32(out[b, j] + y)
                    else:
                        for j in range(j0, j1):
                            y = _adc_analog(gain[t, j], Z[t, b, j], zr, off[t, j], V[t, b, j], sigma_adc2, buf[j])
                            y = np.float32(y * sb)
                            out[b, j] = y if first else np.float32(out[b, j] + y)


_TANH_P = np.array([4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
                    -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16])
_TANH_Q = np.array([4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06])


# The converters' element arithmetic, shared with the GPU twins (ffsim.gpu.twin compiles these bodies as device
# functions): float32 as numba types the kernels above, converted explicitly so that the CUDA simulator, which
# runs the bodies as Python, rounds alike; ``rintf`` and ``sqrtf`` are names the GPU binds to its own.
rintf = np.rint
sqrtf = np.sqrt


@njit(inline="always", cache=True, error_model="numpy")
def tanh_rational(x):
    """tanh by a [13/6] rational function (the float32 kernel of Eigen's ptanh); |error| < 3e-7, vectorizable."""
    x = smin(smax(np.float64(x), -7.90531110763549805), 7.90531110763549805)
    x2 = x * x
    p = ((((((_TANH_P[6] * x2 + _TANH_P[5]) * x2 + _TANH_P[4]) * x2 + _TANH_P[3]) * x2 + _TANH_P[2]) * x2
          + _TANH_P[1]) * x2 + _TANH_P[0]) * x
    q = ((_TANH_Q[3] * x2 + _TANH_Q[2]) * x2 + _TANH_Q[1]) * x2 + _TANH_Q[0]
    return p / q


@njit(inline="always", cache=True, error_model="numpy")
def _dac_scale(x, b, abs_max, bound):
    """Row b's DAC scale: its max |x| (noise management; 1 for an all-zero row; NaN passed over), else
    ``bound`` (float32)."""
    s = np.float32(bound)
    if abs_max:
        m = np.float32(0.0)
        for i in range(x.shape[1]):
            a = abs(x[b, i])
            if a > m:
                m = a
        s = m if m > 0 else np.float32(1.0)
    return s


@njit(inline="always", cache=True, error_model="numpy")
def _dac_value(xv, s, bits, lev):
    """One input through the DAC: divided by the row's scale ``s`` (a division, not a reciprocal: exact at full
    scale even for tiny maxima); with ``bits`` > 0 clipped to [-1, 1] and rounded to ``lev`` levels per side."""
    v = np.float32(xv / s)
    if bits > 0:
        if v > 1.0:
            v = np.float32(1.0)
        elif v < -1.0:
            v = np.float32(-1.0)
        v = np.float32(rintf(np.float32(v * lev)) / lev)
    return v


@njit(inline="always", cache=True, error_model="numpy")
def _dac_square(v):
    """x_q² of a converted input, for the read-noise variance and the read charge: 0 where the conversion is
    NaN or infinite (a NaN input; an infinite one that no clipping bounded).  No voltage is defined for it:
    its outputs are NaN, but the chip's charge and energy counters stay finite."""
    return np.float32(v * v) if abs(v) < np.inf else np.float32(0.0)


@njit(inline="always", cache=True, error_model="numpy")
def _adc_analog(g, z, zr, o, v, sigma_adc2, nz):
    """A column's signal at the ADC: gain ``g`` times (its current ``z`` minus the reference's ``zr``), offset
    ``o``, and the normal draw ``nz`` scaled to the noise of variance g² v + σ²_ADC (float32)."""
    y = np.float32(np.float32(g * np.float32(z - zr)) + o)
    return np.float32(y + np.float32(sqrtf(np.float32(np.float32(g * g) * v + sigma_adc2)) * nz))


@njit(inline="always", cache=True, error_model="numpy")
def _adc_compress(y, k, tk, bound, inv_bound):
    """The ADC's compression bound · tanh(k y / bound) / tanh(k) (``tk`` = tanh(k)); y itself where k = 0."""
    yc = np.float32(np.float64(bound) * tanh_rational(np.float32(np.float32(k * y) * inv_bound)) / np.float64(tk))
    return yc if k > 0.0 else y


@njit(inline="always", cache=True, error_model="numpy")
def _adc_quantize(y, bound, inv_lsb, lsb):
    """Clipped to ±``bound`` and rounded to the LSB (float32)."""
    y = smin(smax(y, -bound), bound)
    return np.float32(np.float32(rintf(np.float32(y * inv_lsb))) * lsb)
