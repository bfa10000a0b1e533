"""CUDA device twins of the counter-based random numbers of :mod:`ffsim.devices.rng`.

Same streams: ``(key, counter)`` gives the same 64-bit word, uniform and normal on the CPU and here, so
the GPU kernels draw the numbers their CPU twins draw (the CUDA simulator reproduces them bit for bit;
on a GPU the transcendental functions of libdevice may differ from the CPU's in the last bit).  The scalar
generators are the CPU module's own bodies compiled as device functions (:mod:`ffsim.gpu.twin`); only the
Box-Muller block, which the CPU computes as vectorized loops over a whole block, has an element-wise form
here (:func:`normal_box_muller32`, element ``j`` of the CPU's block).  ``tests/gpu_sim`` compares each
function with its CPU twin.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda

from ffsim.devices import rng as cpu
from ffsim.devices.rng import _C, _HALF_PI, _LN2, _M32, _S, _SQRT2
from ffsim.gpu.twin import device

__all__ = ["mix64", "normal32_from_word", "normal_at", "normal_box_muller32", "poisson_at", "uniform_at", "word_at"]


mix64 = device(cpu.mix64)
word_at = device(cpu.word_at, mix64=mix64)
uniform_at = device(cpu.uniform_at, word_at=word_at)
_zig_slow = device(cpu._zig_slow, mix64=mix64)
_normal_exact = device(cpu._normal_exact, word_at=word_at, _zig_slow=_zig_slow)
normal_at = device(cpu.normal_at, _normal_exact=_normal_exact)
_zig32_fast = device(cpu._zig32_fast)
_zig32_finish = device(cpu._zig32_finish, _zig_slow=_zig_slow, _normal_exact=_normal_exact)
normal32_from_word = device(cpu.normal32_from_word, _zig32_fast=_zig32_fast, _zig32_finish=_zig32_finish)
# float32 exp: numpy's in the simulator (what numba computes on the CPU), libdevice's expf on a GPU
poisson_at = device(cpu.poisson_at, _normal_exact=_normal_exact, uniform_at=uniform_at,
                    expf=np.exp if numba.config.ENABLE_CUDASIM else math.exp)
_fmix32 = device(cpu.fmix32)
_word32 = device(cpu._word32, fmix32=_fmix32)


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
