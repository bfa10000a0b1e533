"""CUDA device twins of the counter-based random numbers of :mod:`ffsim.devices.rng`.

Same streams: ``(key, counter)`` gives the same 64-bit word, uniform and normal on the CPU and here, so
the GPU kernels draw the numbers their CPU twins draw (the CUDA simulator reproduces them bit for bit;
on a GPU the transcendental functions of libdevice may differ from the CPU's in the last bit).  Every
operand is converted explicitly: numba's typing (float32 op float64 → float64) and the simulator's
numpy-scalar rules (NEP 50) then agree.  ``tests/gpu_sim`` compares each function with its CPU twin.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda

from ffsim.devices.rng import ZIG_F, ZIG_X, ZIG_X32

__all__ = ["mix64", "normal32_from_word", "normal_at", "normal_box_muller32", "poisson_at", "uniform_at", "word_at"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_R = float(ZIG_X[1])
_INV_K = np.array([0.0] + [1.0 / k for k in range(1, 1025)])
_M32 = np.uint64(0xFFFFFFFF)
_HALF_PI = np.float32(np.pi / 2)
_S = np.array([1.0, -1 / 6, 1 / 120, -1 / 5040, 1 / 362880, -1 / 39916800], dtype=np.float32)
_C = np.array([1.0, -1 / 2, 1 / 24, -1 / 720, 1 / 40320, -1 / 3628800, 1 / 479001600], dtype=np.float32)
_LN2 = np.float32(np.log(2.0))
_SQRT2 = np.float32(np.sqrt(2.0))
_TWO53 = 1.0 / 9007199254740992.0
# float32 exp: numpy's in the simulator (what Numba computes on the CPU), libdevice's expf on a GPU
_expf = np.exp if numba.config.ENABLE_CUDASIM else math.exp


@cuda.jit(device=True)
def mix64(z):
    z = np.uint64(z)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@cuda.jit(device=True)
def word_at(key, ctr):
    return mix64(np.uint64(key) + (np.uint64(ctr) + np.uint64(1)) * _GOLDEN)


@cuda.jit(device=True)
def uniform_at(key, ctr):
    return np.float64(word_at(key, ctr) >> np.uint64(11)) * _TWO53


@cuda.jit(device=True)
def _zig_slow(key, h, i, x):
    h2 = mix64(np.uint64(key) ^ np.uint64(h) ^ np.uint64(0xD1B54A32D192ED03))
    if i == 0:
        u1 = (np.float64(h2 >> np.uint64(11)) + 0.5) * _TWO53
        u2 = (np.float64(mix64(h2) >> np.uint64(11)) + 0.5) * _TWO53
        xx = -math.log(u1) / _R
        yy = -math.log(u2)
        if 2.0 * yy > xx * xx:
            return _R + xx
        return -1.0
    u2 = np.float64(h2 >> np.uint64(11)) * _TWO53
    if np.float64(ZIG_F[i + 1]) + u2 * (np.float64(ZIG_F[i]) - np.float64(ZIG_F[i + 1])) < math.exp(-0.5 * x * x):
        return x
    return -1.0


@cuda.jit(device=True)
def normal_at(key, ctr):
    """Exact float64 ziggurat normal (the CPU's ``normal_at``)."""
    c = np.uint64(ctr)
    key = np.uint64(key)
    while True:
        h = word_at(key, c)
        i = np.int64(h & np.uint64(127))
        sgn = 1.0 if (h >> np.uint64(7)) & np.uint64(1) else -1.0
        u = np.float64(h >> np.uint64(11)) * _TWO53
        x = u * np.float64(ZIG_X[i])
        if x < np.float64(ZIG_X[i + 1]):
            return sgn * x
        m = _zig_slow(key, h, i, x)
        if m >= 0.0:
            return sgn * m
        c = c ^ np.uint64(0x632BE59BD9B4E019) ^ (h << np.uint64(1))


@cuda.jit(device=True)
def normal32_from_word(w, key):
    """Float32 ziggurat normal from a 32-bit word (the CPU's ``normal32_from_word``)."""
    w = np.uint64(w)
    i = np.int64(w & np.uint64(127))
    u = np.float32(np.int32(w >> np.uint64(8))) * np.float32(1.0 / 16777216.0)
    x = np.float32(u * ZIG_X32[i])
    s = np.float32(1.0) if (w & np.uint64(128)) else np.float32(-1.0)
    if x < ZIG_X32[i + 1]:
        return np.float32(s * x)
    sgn = 1.0 if (w & np.uint64(128)) else -1.0
    m = _zig_slow(key, w, i, np.float64(x))
    if m >= 0.0:
        return np.float32(sgn * m)
    return np.float32(normal_at(np.uint64(key) ^ np.uint64(0x5851F42D4C957F2D), w))


@cuda.jit(device=True)
def poisson_at(key, ctr, lam):
    """Poisson(lam) of stream ``key`` at ``ctr``; ``lam`` is float32 as in the CPU kernel (whose
    ``sqrt`` and ``exp`` of it are float32 operations)."""
    lf = np.float32(lam)
    l64 = np.float64(lf)
    if l64 <= 0.0:
        return 0
    if l64 > 40.0:
        k = math.floor(l64 + np.float64(np.float32(math.sqrt(lf))) * normal_at(key, ctr) + 0.5)
        return np.int64(k) if k > 0 else 0
    u = uniform_at(key, ctr)
    if u < 1.0 - l64:
        return 0
    p = np.float64(np.float32(_expf(-lf)))
    cdf = p
    k = 0
    while u >= cdf and k < 1024:
        k += 1
        p *= l64 * _INV_K[k]
        cdf += p
    return k


@cuda.jit(device=True)
def _fmix32(h):
    h = np.uint64(h)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & _M32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & _M32
    h ^= h >> np.uint64(16)
    return h


@cuda.jit(device=True)
def _word32(key32, ctr):
    return _fmix32(((np.uint64(ctr) * np.uint64(0x9E3779B1)) ^ np.uint64(key32)) & _M32)


@cuda.jit(device=True)
def normal_box_muller32(key, base, n, j):
    """Element ``j`` of the block that the CPU's ``normals32_fill(key, base, n, ...)`` writes.

    Pair k = j (cosine half) or j − ⌈n/2⌉ (sine half) uses the 32-bit words ``base + 2k`` and
    ``base + 2k + 1``; the float32 polynomial logarithm, sine and cosine are those of the CPU.
    """
    k32 = np.uint64(key) & _M32
    npair = (n + 1) // 2
    use_sin = j >= npair
    k = j - npair if use_sin else j
    c = np.uint64(base) + np.uint64(2 * k)
    w1 = _word32(k32, c)
    w2 = _word32(k32, c + np.uint64(1))
    bu = np.float32((np.float32(np.int64(w1)) + np.float32(0.5)) * np.float32(2.3283064365386963e-10))
    q = np.int32(w2 >> np.uint64(30))
    f = np.float32((np.float32(np.int32((w2 >> np.uint64(8)) & np.uint64(0x3FFFFF))) + np.float32(0.5))
                   * np.float32(1.0 / 4194304.0))
    ph = np.float32(f * _HALF_PI)
    p2 = np.float32(ph * ph)
    sn = ph * (_S[0] + p2 * (_S[1] + p2 * (_S[2] + p2 * (_S[3] + p2 * (_S[4] + p2 * _S[5])))))
    cs = _C[0] + p2 * (_C[1] + p2 * (_C[2] + p2 * (_C[3] + p2 * (_C[4] + p2 * (_C[5] + p2 * _C[6])))))
    swap = (q & 1) == 1
    cq = sn if swap else cs
    sq = cs if swap else sn
    trig = np.float32(0.0)
    if use_sin:
        trig = -sq if q >= 2 else sq
    else:
        trig = -cq if ((q == 1) or (q == 2)) else cq
    # float32 bits of bu: mantissa m in [1, 2) and exponent e, as the CPU's bit manipulation gives
    fm, fe = math.frexp(bu)
    m = np.float32(2.0 * fm)
    e = np.float32(fe - 1)
    big = m > _SQRT2
    if big:
        m = np.float32(m * np.float32(0.5))
        e = np.float32(e + np.float32(1.0))
    t = np.float32((m - np.float32(1.0)) / (m + np.float32(1.0)))
    t2 = np.float32(t * t)
    lnm = np.float32(np.float32(2.0) * t * (np.float32(1.0) + t2 * (np.float32(1 / 3) + t2 * (
        np.float32(1 / 5) + t2 * (np.float32(1 / 7) + t2 * np.float32(1 / 9))))))
    r = np.float32(math.sqrt(np.float32(np.float32(-2.0) * (e * _LN2 + lnm))))
    return np.float32(r * trig)
