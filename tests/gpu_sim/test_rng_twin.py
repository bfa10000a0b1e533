"""The CUDA twins of the counter-based RNG draw the CPU's numbers (simulator)."""

import numpy as np
from numba import cuda, njit

import ffsim  # noqa: F401  (before numpy)
from ffsim.devices import rng as cpu
from ffsim.gpu import rng as gpu

KEY = np.uint64(0x1234_5678_9ABC_DEF1)


@cuda.jit
def _draw(key, lam, out_w, out_u, out_n, out_n32, out_p):
    i = cuda.grid(1)
    if i < out_w.shape[0]:
        c = np.uint64(i)
        out_w[i] = gpu.word_at(key, c)
        out_u[i] = gpu.uniform_at(key, c)
        out_n[i] = gpu.normal_at(key, c)
        out_n32[i] = gpu.normal32_from_word(gpu.word_at(key, c) & np.uint64(0xFFFFFFFF), key)
        out_p[i] = gpu.poisson_at(key, c, lam[i])


@njit
def _draw_cpu(key, lam, out_w, out_u, out_n, out_n32, out_p):
    for i in range(out_w.shape[0]):
        c = np.uint64(i)
        out_w[i] = cpu.word_at(key, c)
        out_u[i] = cpu.uniform_at(key, c)
        out_n[i] = cpu.normal_at(key, c)
        out_n32[i] = cpu.normal32_from_word(cpu.word_at(key, c) & np.uint64(0xFFFFFFFF), key)
        out_p[i] = cpu.poisson_at(key, c, lam[i])


def _arrays(n):
    return (np.zeros(n, np.uint64), np.zeros(n), np.zeros(n), np.zeros(n, np.float32), np.zeros(n, np.int64))


def test_scalar_draws_match_cpu_exactly():
    n = 300
    lam = np.random.default_rng(0).uniform(0, 60, n).astype(np.float32)
    lam[:20] = 0.0
    lam[20:60] = np.float32(0.01)
    a, b = _arrays(n), _arrays(n)
    _draw_cpu(KEY, lam, *a)
    _draw[(n + 63) // 64, 64](KEY, lam, *b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@cuda.jit
def _bm(key, base, n, out):
    j = cuda.grid(1)
    if j < n:
        out[j] = gpu.normal_box_muller32(key, base, n, j)


def test_box_muller_block_matches_cpu_fill():
    for n in (1, 7, 64, 301):
        base = np.uint64(12345 * n)
        ref = np.zeros(n, np.float32)
        njit(lambda k, b, m, o, s: cpu.normals32_fill(k, b, m, o, s))(KEY, base, n, ref, cpu.normals32_scratch(n))
        out = np.zeros(n, np.float32)
        _bm[(n + 63) // 64, 64](KEY, base, n, out)
        np.testing.assert_array_equal(out, ref)
