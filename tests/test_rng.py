"""Counter-based random numbers: distribution, determinism, independence from thread count."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit, prange
from scipy import stats

from ffsim.devices.rng import draw_key, normal_at, normals32_fill, poisson_at, uniform_at


@njit(parallel=True, cache=False)
def _normals64(key, n):
    out = np.empty(n)
    for k in prange(n):
        out[k] = normal_at(key, np.uint64(k))
    return out


@njit(cache=False)
def _normals32(key, n):
    out = np.empty(n, np.float32)
    chunk = 1000
    scratch = np.zeros((3, chunk // 2), np.float32)
    for a in range(0, n, chunk):
        m = min(chunk, n - a)
        normals32_fill(key, np.uint64(2 * a), m, out[a:a + m], scratch)
    return out


@njit(cache=False)
def _uniforms(key, n):
    out = np.empty(n)
    for k in range(n):
        out[k] = uniform_at(key, np.uint64(k))
    return out


@njit(cache=False)
def _poissons(key, n, lam):
    out = np.empty(n, np.int64)
    for k in range(n):
        out[k] = poisson_at(key, np.uint64(k), lam)
    return out


N = 400_000


@pytest.mark.parametrize("gen", [_normals64, _normals32], ids=["float64", "float32"])
def test_normals_are_standard_normal(gen):
    z = gen(np.uint64(12345), N).astype(np.float64)
    se = 1 / np.sqrt(N)
    assert abs(z.mean()) < 5 * se  # mean: 5 standard errors
    assert abs(z.std() - 1) < 5 * se / np.sqrt(2)  # std: relative s.e. 1/sqrt(2N)
    assert abs(stats.skew(z)) < 5 * np.sqrt(6 / N)
    assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24 / N)
    assert stats.kstest(z, "norm").pvalue > 1e-4
    # tails: P(|z| > 3) = 0.0027; count within 5 binomial sd
    p3 = 2 * stats.norm.sf(3)
    assert abs((np.abs(z) > 3).sum() - N * p3) < 5 * np.sqrt(N * p3)


def test_float32_normals_depend_only_on_key_and_block():
    a = np.empty(1000, np.float32)
    b = np.empty(1000, np.float32)
    normals32_fill(np.uint64(7), np.uint64(2000), 1000, a, np.zeros((3, 500), np.float32))
    normals32_fill(np.uint64(7), np.uint64(2000), 1000, b, np.ones((3, 500), np.float32))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, _normals32(np.uint64(7), 2000)[1000:])
    normals32_fill(np.uint64(8), np.uint64(2000), 1000, b, np.zeros((3, 500), np.float32))
    assert not np.array_equal(a, b)
    # odd block lengths: the last pair contributes its cosine only
    c = np.empty(7, np.float32)
    normals32_fill(np.uint64(7), np.uint64(0), 7, c, np.zeros((3, 4), np.float32))
    assert np.all(np.isfinite(c))


def test_uniforms_uniform_and_keys_independent():
    u = _uniforms(np.uint64(1), N)
    counts, _ = np.histogram(u, bins=50, range=(0, 1))
    assert stats.chisquare(counts).pvalue > 1e-4
    v = _uniforms(np.uint64(2), N)
    assert abs(np.corrcoef(u, v)[0, 1]) < 5 / np.sqrt(N)
    # consecutive counters are not correlated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5 / np.sqrt(N)


@pytest.mark.parametrize("lam", [0.01, 0.3, 2.0, 15.0, 120.0])
def test_poisson_mean_and_variance(lam):
    n = 200_000
    k = _poissons(np.uint64(3), n, lam)
    assert abs(k.mean() - lam) < 5 * np.sqrt(lam / n)
    # var of the sample variance of a Poisson: (λ + 2λ²)/n (approximately)
    assert abs(k.var() - lam) < 5 * np.sqrt((lam + 2 * lam**2) / n)
    if lam < 40:  # exact inversion: compare with the pmf
        vals, cnt = np.unique(k, return_counts=True)
        expected = stats.poisson.pmf(vals, lam) * n
        ok = expected > 20
        assert stats.chisquare(cnt[ok], expected[ok] * cnt[ok].sum() / expected[ok].sum()).pvalue > 1e-4


def test_same_key_same_numbers_and_generator_determines_key():
    np.testing.assert_array_equal(_normals64(np.uint64(9), 1000), _normals64(np.uint64(9), 1000))
    assert draw_key(np.random.default_rng(5)) == draw_key(np.random.default_rng(5))
    assert draw_key(np.random.default_rng(5)) != draw_key(np.random.default_rng(6))
