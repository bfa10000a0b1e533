"""Exact quantizer properties, checked with hypothesis over random inputs and resolutions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ffsim import Crossbar, ProfileError, load_profile
from ffsim.crossbar.periphery import adc_accumulate, dac_convert, zeros_like_view

finite = st.floats(min_value=-8.0, max_value=8.0, allow_nan=False, allow_infinity=False, width=32)
vectors = arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 40)), elements=finite)


def _dac(x: np.ndarray, bits: int, abs_max: bool = False) -> tuple[np.ndarray, np.ndarray]:
    xq = np.empty_like(x)
    xq2 = np.empty_like(x)
    scale = np.empty(x.shape[0], np.float32)
    dac_convert(x, abs_max, bits, np.float32(1.0), True, xq, xq2, scale)
    return xq, scale


@settings(max_examples=200, deadline=None)
@given(x=vectors, bits=st.integers(2, 16))
def test_dac_output_is_on_the_grid_and_nearest(x, bits):
    L = 2 ** (bits - 1) - 1
    q, _ = _dac(x, bits)
    k = q.astype(np.float64) * L
    np.testing.assert_allclose(k, np.rint(k), atol=1e-3)  # an integer number of LSBs
    assert np.all(np.abs(k) <= L)
    # nearest level to the clipped input (float32 arithmetic: allow a hair beyond half an LSB)
    assert np.all(np.abs(q - np.clip(x, -1, 1)) <= 0.5 / L + 1e-6)
    # idempotent, odd-symmetric, monotone
    q2, _ = _dac(q, bits)
    np.testing.assert_array_equal(q2, q)
    qn, _ = _dac(-x, bits)
    np.testing.assert_array_equal(qn, -q)
    order = np.argsort(x.ravel(), kind="stable")
    assert np.all(np.diff(q.ravel()[order]) >= 0)


@settings(max_examples=100, deadline=None)
@given(x=vectors, bits=st.integers(2, 12))
def test_dac_noise_management_uses_full_scale(x, bits):
    q, scale = _dac(x, bits, abs_max=True)
    for b in range(x.shape[0]):
        m = np.abs(x[b]).max()
        if m > 0:
            assert scale[b] == m
            assert np.abs(q[b]).max() == 1.0  # the largest input lands on full scale exactly
        else:
            assert scale[b] == 1.0 and np.all(q[b] == 0)


@settings(max_examples=150, deadline=None)
@given(z=arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 30)),
                elements=st.floats(-30, 30, allow_nan=False, width=32)),
       bits=st.integers(2, 12), bound=st.floats(0.5, 20.0))
def test_adc_output_is_clipped_and_on_the_grid(z, bits, bound):
    T, B, N = z.shape
    lsb = 2 * bound / (2.0**bits - 2)
    out = np.empty((B, N), np.float32)
    ones = np.ones((T, N), np.float32)
    zeros = np.zeros((T, N), np.float32)
    adc_accumulate(z, zeros_like_view(z.shape), np.zeros((T, B, 1), np.float32), ones, zeros, zeros, ones, 10**6,
                   False, np.float32(0), True, np.float32(bound), np.float32(1 / lsb), np.float32(lsb), False,
                   np.ones(B, np.float32), np.uint64(0), out)
    expected = np.zeros((B, N))
    tie = np.zeros((B, N), dtype=bool)
    for t in range(T):
        y = np.clip(z[t].astype(np.float64), -bound, bound)
        levels = np.rint(y / lsb)
        assert np.all(np.abs(levels) <= 2 ** (bits - 1) - 1 + 1e-9)
        expected += levels * lsb
        # within float32 rounding of half an LSB: the kernel (float32) may round the other way
        tie |= np.abs(np.abs(y / lsb - np.floor(y / lsb)) - 0.5) < 1e-5 * (1 + np.abs(y / lsb))
    # each tile contributes an integer number of LSBs; float32 rounding at exact ties may differ by one LSB
    assert np.all(np.abs(out - expected) <= lsb * (1 + 1e-5) * T)
    # everywhere else the levels are the float64 ones
    agree = np.abs(out - expected) < 1e-4 * lsb + 1e-5 * np.abs(expected)
    if np.any(~tie):
        assert np.mean(agree[~tie]) > 0.99


@settings(max_examples=25, deadline=None)
@given(levels=st.integers(2, 64), seed=st.integers(0, 2**16))
def test_programmed_levels_are_exact_and_nearest(levels, seed):
    prof = load_profile("pcm").replace(device={"levels": levels, "programming": {"noise_poly_uS": []},
                                               "variation": {"g_max_rel_std": 0.0}})
    W = np.random.default_rng(seed).uniform(-1.2, 1.2, size=(6, 5))
    chip = Crossbar(prof, 6, 5, fab_seed=1, rng=seed)
    chip.program(W)
    step = 1.0 / (levels - 1)
    for plane, target in ((chip._g[0], np.maximum(W, 0)), (chip._g[1], np.maximum(-W, 0))):
        k = plane / step
        np.testing.assert_allclose(k, np.rint(k), atol=1e-4)
        np.testing.assert_allclose(plane, np.rint(np.clip(target, 0, 1) / step) * step, atol=1e-6)


@pytest.mark.parametrize("conv", ["dac", "adc"])
def test_one_bit_converters_are_rejected(conv):
    with pytest.raises(ProfileError, match=rf"{conv}.bits = 1: must be 0 \(ideal converter\) or at least 2"):
        load_profile("pcm").replace(**{conv: {"bits": 1}})
