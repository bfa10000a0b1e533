"""Counter-based random numbers for the Numba kernels.

Every stochastic kernel draws a 64-bit ``key`` from the caller's :class:`numpy.random.Generator` and then
derives each random number from ``(key, counter)`` through the SplitMix64 finalizer.  Results therefore
depend only on the Generator's state and on array indices: they are the same whatever the number of
threads, and two calls with Generators in the same state give identical output.

Single normal variates use the ziggurat method (Marsaglia & Tsang 2000, 128 layers; a 32-bit word gives
a float32 normal on the fast path, the slow path completes the rare rejections exactly).  Blocks of
normals for the converters use a vectorized Box-Muller transform (:func:`normals32_fill`).
``tests/test_rng.py`` checks the moments, tails and a Kolmogorov-Smirnov test of each.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["draw_key", "mix64", "normal_at", "normal32_from_word", "normals32_fill", "normals32_scratch", "poisson_at",
           "uniform_at"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _ziggurat_tables(n: int = 128) -> tuple[np.ndarray, np.ndarray]:
    r = 3.442619855899
    v = 9.91256303526217e-3
    x = np.zeros(n + 1)
    x[0] = v / np.exp(-0.5 * r * r)
    x[1] = r
    for i in range(2, n):
        x[i] = np.sqrt(-2.0 * np.log(v / x[i - 1] + np.exp(-0.5 * x[i - 1] ** 2)))
    x[n] = 0.0
    return x, np.exp(-0.5 * x * x)


ZIG_X, ZIG_F = _ziggurat_tables()
ZIG_X32 = ZIG_X.astype(np.float32)
_R = float(ZIG_X[1])


KEY_HOOKS: list = []
"""Callables ``hook(rng, key)`` told of every key :func:`draw_key` draws, the last one only (the GPU's
CUDA-graph capture records which generator drew each key of a step, :mod:`ffsim.gpu.graph`)."""


def draw_key(rng: np.random.Generator) -> np.uint64:
    """One 64-bit stream key from a Generator (advances it by one draw)."""
    key = np.uint64(rng.integers(0, 2**63, dtype=np.int64))
    if KEY_HOOKS:
        KEY_HOOKS[-1](rng, key)
    return key


# The scalar generators below are also the GPU's (ffsim.gpu.rng compiles their bodies as CUDA device
# functions): every operand is converted explicitly, so numba's typing and numpy's scalar rules (the CUDA
# simulator runs the bodies as Python) agree, and the float32 exponential is a name the GPU binds to its own.
expf = np.exp
_TWO53 = 1.0 / 9007199254740992.0


@njit(inline="always", cache=True, error_model="numpy")
def mix64(z):
    """SplitMix64 finalizer: a bijective 64-bit hash with full avalanche."""
    z = np.uint64(z)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(inline="always", cache=True, error_model="numpy")
def word_at(key, ctr):
    """The 64-bit random word number ``ctr`` of stream ``key``."""
    return mix64(np.uint64(key) + (np.uint64(ctr) + np.uint64(1)) * _GOLDEN)


@njit(inline="always", cache=True, error_model="numpy")
def uniform_at(key, ctr):
    """Uniform float64 in [0, 1) with 53 random bits."""
    return np.float64(word_at(key, ctr) >> np.uint64(11)) * _TWO53


@njit(cache=True, error_model="numpy")
def _zig_slow(key, h, i, x):
    """The ziggurat's slow path for magnitude ``x`` from layer ``i`` that failed the fast test.

    Returns the accepted magnitude, or -1.0 when the attempt is rejected and the sampler must restart.
    ``h`` seeds the fresh random numbers of this attempt.
    """
    h2 = mix64(np.uint64(key) ^ np.uint64(h) ^ np.uint64(0xD1B54A32D192ED03))
    if i == 0:  # the tail beyond R (Marsaglia 1964)
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


@njit(cache=True, error_model="numpy")
def _normal_exact(key, ctr):
    """Exact float64 ziggurat normal; restarts (rarely) until an attempt is accepted."""
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


@njit(inline="always", cache=True, error_model="numpy")
def normal_at(key, ctr):
    """Standard normal (float64) number ``ctr`` of stream ``key``."""
    return _normal_exact(key, ctr)


@njit(inline="always", cache=True, error_model="numpy")
def _zig32_fast(w):
    """Fast path of the float32 ziggurat from a 32-bit word: (value, accepted)."""
    w = np.uint64(w)
    i = np.int64(w & np.uint64(127))
    u = np.float32(np.int32(w >> np.uint64(8))) * np.float32(1.0 / 16777216.0)
    x = np.float32(u * ZIG_X32[i])
    s = np.float32(1.0) if (w & np.uint64(128)) else np.float32(-1.0)
    return np.float32(s * x), x < ZIG_X32[i + 1]


@njit(cache=True, error_model="numpy")
def _zig32_finish(w, key):
    """Complete a float32 ziggurat draw whose fast path rejected: slow path on the same (layer, x),
    then, if that attempt is rejected too, a full restart."""
    w = np.uint64(w)
    i = np.int64(w & np.uint64(127))
    u = np.float32(np.int32(w >> np.uint64(8))) * np.float32(1.0 / 16777216.0)
    x = np.float64(np.float32(u * ZIG_X32[i]))
    sgn = 1.0 if (w & np.uint64(128)) else -1.0
    m = _zig_slow(key, w, i, x)
    if m >= 0.0:
        return np.float32(sgn * m)
    return np.float32(_normal_exact(np.uint64(key) ^ np.uint64(0x5851F42D4C957F2D), w))


@njit(inline="always", cache=True, error_model="numpy")
def normal32_from_word(w, key):
    """Standard normal (float32) from a 32-bit word ``w`` (held in a uint64)."""
    v, ok = _zig32_fast(w)
    if ok:
        return v
    return _zig32_finish(w, key)


_INV_K = np.array([0.0] + [1.0 / k for k in range(1, 1025)])


@njit(cache=True, error_model="numpy")
def poisson_at(key, ctr, lam):
    """Poisson(lam) variate of stream ``key`` at ``ctr`` (inversion; normal approximation above 40).

    ``lam`` is taken as float32 (the pulse update's expected counts), its ``sqrt`` and ``exp`` float32."""
    lf = np.float32(lam)
    l64 = np.float64(lf)
    if l64 <= 0.0:
        return 0
    if l64 > 40.0:
        k = math.floor(l64 + np.float64(np.float32(math.sqrt(lf))) * _normal_exact(key, ctr) + 0.5)
        return np.int64(k) if k > 0 else 0
    u = uniform_at(key, ctr)
    # P(0) = exp(-lam) >= 1 - lam: most calls with small lam end here without a transcendental.
    if u < 1.0 - l64:
        return 0
    p = np.float64(np.float32(expf(-lf)))
    cdf = p
    k = 0
    while u >= cdf and k < 1024:
        k += 1
        p *= l64 * _INV_K[k]
        cdf += p
    return k


_M32 = np.uint64(0xFFFFFFFF)


@njit(inline="always", cache=True, error_model="numpy")
def fmix32(h):
    """MurmurHash3 32-bit finalizer (held in a uint64; vectorizes with 32-bit lanes)."""
    h = np.uint64(h)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & _M32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & _M32
    h ^= h >> np.uint64(16)
    return h


@njit(inline="always", cache=True, error_model="numpy")
def _word32(key32, ctr):
    return fmix32(((np.uint64(ctr) * np.uint64(0x9E3779B1)) ^ np.uint64(key32)) & _M32)


_HALF_PI = np.float32(np.pi / 2)
_S = np.array([1.0, -1 / 6, 1 / 120, -1 / 5040, 1 / 362880, -1 / 39916800], dtype=np.float32)
_C = np.array([1.0, -1 / 2, 1 / 24, -1 / 720, 1 / 40320, -1 / 3628800, 1 / 479001600], dtype=np.float32)
_LN2 = np.float32(np.log(2.0))
_SQRT2 = np.float32(np.sqrt(2.0))


def normals32_scratch(n: int) -> np.ndarray:
    """Scratch space for :func:`normals32_fill` of up to ``n`` values."""
    return np.zeros((3, (n + 1) // 2), dtype=np.float32)


@njit(inline="always", cache=True, error_model="numpy")
def normals32_fill(key, base, n, out, scratch):
    """``out[:n]`` = standard normal variates of stream ``key``, block ``base`` (float32).

    Box-Muller with float32 polynomial logarithm, sine and cosine, written as branch-free loops that
    LLVM vectorizes.  Pair k uses the 32-bit words ``base + 2k`` (radius) and ``base + 2k + 1`` (angle)
    and gives ``out[k]`` = r cos θ and ``out[npair + k]`` = r sin θ, npair = ⌈n/2⌉.  The radius uses the
    full 32 bits, so the largest |z| is 6.8 (P(|z| > 6.8) = 1e-11 for a normal); the polynomial errors
    are below 1e-6 relative.  ``scratch`` is from :func:`normals32_scratch`.
    """
    k32 = key & _M32
    npair = (n + 1) // 2
    bu = scratch[0]
    bc = scratch[1]
    bs = scratch[2]
    for k in range(npair):
        c = base + np.uint64(2 * k)
        w1 = _word32(k32, c)
        w2 = _word32(k32, c + np.uint64(1))
        bu[k] = (np.float32(np.int64(w1)) + np.float32(0.5)) * np.float32(2.3283064365386963e-10)
        q = np.int32(w2 >> np.uint64(30))
        f = (np.float32(np.int32((w2 >> np.uint64(8)) & np.uint64(0x3FFFFF))) + np.float32(0.5)) * np.float32(
            1.0 / 4194304.0)
        ph = f * _HALF_PI
        p2 = ph * ph
        sn = ph * (_S[0] + p2 * (_S[1] + p2 * (_S[2] + p2 * (_S[3] + p2 * (_S[4] + p2 * _S[5])))))
        cs = _C[0] + p2 * (_C[1] + p2 * (_C[2] + p2 * (_C[3] + p2 * (_C[4] + p2 * (_C[5] + p2 * _C[6])))))
        swap = (q & 1) == 1
        cq = sn if swap else cs
        sq = cs if swap else sn
        bc[k] = -cq if ((q == 1) | (q == 2)) else cq
        bs[k] = -sq if q >= 2 else sq
    bits = bu.view(np.uint32)
    for k in range(npair):
        b = bits[k]
        e = np.float32(np.int32(b >> np.uint32(23)) - np.int32(127))
        m = (b & np.uint32(0x7FFFFF)) | np.uint32(0x3F800000)
        bits[k] = m
        # the exponent travels in out[] until the logarithm is formed
        out[k] = e
    for k in range(npair):
        m = bu[k]
        e = out[k]
        big = m > _SQRT2
        m = m * np.float32(0.5) if big else m
        e = e + np.float32(1.0) if big else e
        t = (m - np.float32(1.0)) / (m + np.float32(1.0))
        t2 = t * t
        lnm = np.float32(2.0) * t * (np.float32(1.0) + t2 * (np.float32(1 / 3) + t2 * (
            np.float32(1 / 5) + t2 * (np.float32(1 / 7) + t2 * np.float32(1 / 9)))))
        r = np.sqrt(np.float32(-2.0) * (e * _LN2 + lnm))
        bc[k] = r * bc[k]
        bs[k] = r * bs[k]
    for k in range(npair):
        out[k] = bc[k]
    for k in range(n - npair):
        out[npair + k] = bs[k]
