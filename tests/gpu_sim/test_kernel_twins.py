"""Each numba-cuda twin against its Numba CPU kernel, on the arguments a Crossbar really passes (simulator).

A CPU Crossbar runs a short life (program, forward, transposed, pulse updates with refresh, masked
programming, drift) with every kernel call recorded; each call is replayed on copies through the CPU
kernel and through its twin, and every array the kernels write is compared: exactly (float32 states,
weights, read variances, quantized outputs, drawn noise, counts), and to 1e-12 for the float64 per-row
sums that the twins accumulate by atomics in another order.
"""

from __future__ import annotations

import numpy as np
import pytest

from ffsim import Crossbar, load_profile
from ffsim.backend import select_backend

CPU = select_backend("cpu").kernels
GPU = select_backend("gpu")
assert GPU.is_gpu and GPU.simulated
TWINS = GPU.kernels
ALL = {"dac_convert", "adc_accumulate", "rebuild_caches", "ir_loads", "column_sums", "program_masked",
       "pulse_aggregate", "pulse_exact", "refresh_pairs", "pulse_maxima", "pulse_factors"}


def _zero_stride(a) -> bool:
    return isinstance(a, np.ndarray) and a.size > 1 and all(s == 0 for s in a.strides)


def _copy(a):
    if isinstance(a, np.ndarray) and not _zero_stride(a):
        return a.copy()
    return a


class _Recorder:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        fn = getattr(CPU, name)

        def wrapped(*args):
            self.calls.append((name, [_copy(a) for a in args]))
            return fn(*args)

        return wrapped


def _life(cb, rng):
    n_in, n_out = cb.shape
    W = rng.uniform(-0.8, 0.8, (n_in, n_out)).astype(np.float32)
    cb.program(W)
    x = rng.standard_normal((3, n_in)).astype(np.float32)
    cb.forward(x)
    cb.transposed(rng.standard_normal((2, n_out)).astype(np.float32))
    for _ in range(2):
        cb.pulse_update(x, 0.5 * rng.standard_normal((3, n_out)).astype(np.float32), lr=0.3)
    if cb.profile.device.mapping != "ideal":
        cb.program(0.5 * W, mask=rng.random((n_in, n_out)) < 0.3)
    cb.advance(100.0)
    cb.forward(x)


def _profile(name, ir):
    return load_profile(name).replace(tile={"rows": 4, "cols": 3, "ir_drop": ir}, update={"max_pulses": 12})


# differential set-only pairs with refresh and drift; IR drop with exact trains; reference mapping with IR drop;
# write noise, stuck devices and a polynomial read noise
CASES = [("pcm", 0.0, "aggregate"), ("pcm", 0.05, "exact"), ("ecram", 0.05, "aggregate"),
         ("rram-hfo2", 0.0, "aggregate")]


def _record(name, ir, mode):
    cb = Crossbar(_profile(name, ir), 9, 7, fab_seed=3, rng=5, pulse_mode=mode, backend="cpu")
    rec = _Recorder()
    cb._k = rec
    _life(cb, np.random.default_rng(11))
    return rec.calls


def _compare(kernel, i, a, b):
    if isinstance(a, np.ndarray):
        b = np.asarray(b)
        if a.dtype == np.float64:
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12, err_msg=f"{kernel} argument {i}")
        else:
            np.testing.assert_array_equal(b, a, err_msg=f"{kernel} argument {i}")
    else:
        assert a == b, f"{kernel} returned {b}, CPU {a}"


_seen: set[str] = set()


@pytest.mark.parametrize(("name", "ir", "mode"), CASES)
def test_twins_replay_crossbar_calls_exactly(name, ir, mode):
    calls = _record(name, ir, mode)
    assert calls
    _replay(calls)
    _seen.update(k for k, _ in calls)


def _replay(calls) -> None:
    """Each recorded call on copies of its arguments, through the CPU kernel and through its twin: the
    returns and every array the two wrote must agree (``_compare``)."""
    for kernel, args in calls:
        ca = [_copy(a) for a in args]
        ga = [_copy(a) for a in args]
        r_cpu = getattr(CPU, kernel)(*ca)
        r_gpu = getattr(TWINS, kernel)(*ga)
        _compare(kernel, "return", r_cpu if r_cpu is None else int(r_cpu), r_gpu if r_gpu is None else int(r_gpu))
        for i, (a, b) in enumerate(zip(ca, ga, strict=True)):
            _compare(kernel, i, a, b)


def test_every_kernel_was_replayed():
    if len(_seen) < len(CASES):  # run alone (-k): replay the cases here
        for case in CASES:
            _seen.update(k for k, _ in _record(*case))
    assert _seen >= ALL, ALL - _seen


def test_smoothed_step_twin_equals_the_cpu_kernel():
    from ffsim.ff.weights import _smoothed_step

    rng = np.random.default_rng(3)
    W, grad, g = (rng.standard_normal((9, 7)).astype(np.float32) for _ in range(3))
    args = (np.float32(0.9), np.float32(1 / 100), np.float32(0.03), np.float32(0.001))
    a, b = [W.copy(), grad.copy()], [W.copy(), grad.copy()]
    for _ in range(3):
        _smoothed_step(a[0], a[1], g, *args)
        TWINS.smoothed_step(b[0], b[1], g, *args)
    np.testing.assert_array_equal(b[0], a[0])
    np.testing.assert_array_equal(b[1], a[1])


BLOCK_KERNELS = {"dac_convert", "pulse_maxima"}


@pytest.mark.parametrize(("name", "ir", "mode"), CASES)
def test_block_reduction_variants_replay_crossbar_calls_exactly(name, ir, mode, monkeypatch):
    """The GPU's variants of the DAC and the update's row maxima (blocks of threads, shared-memory trees;
    ``ffsim.gpu.kernels.BLOCK_REDUCE``, off in the simulator for speed) against the CPU kernels."""
    from ffsim.gpu import kernels as gk

    monkeypatch.setattr(gk, "BLOCK_REDUCE", True)
    calls = [(k, a) for k, a in _record(name, ir, mode) if k in BLOCK_KERNELS]
    assert {k for k, _ in calls} == BLOCK_KERNELS
    _replay(calls)


@pytest.mark.parametrize("block", [False, True])
def test_row_maxima_and_dac_twins_on_long_rows_zeros_and_nan(block, monkeypatch):
    """Rows longer than a block (strided loads), shorter than one, all zeros, with inf and NaN: the maxima
    equal the CPU's (NaN where the row holds one), the DAC's outputs and scales exactly (a NaN input converts
    to NaN with a square of 0)."""
    from ffsim.gpu import kernels as gk

    monkeypatch.setattr(gk, "BLOCK_REDUCE", block)
    rng = np.random.default_rng(7)
    for n_x, n_d in ((70, 5), (gk._TR, 2 * gk._TR + 3)):
        X = rng.standard_normal((4, n_x)).astype(np.float32)
        D = rng.standard_normal((4, n_d)).astype(np.float32)
        X[1] = 0.0
        X[2, -1] = np.inf
        D[3, n_d // 2] = np.nan
        ref, out = np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32)
        CPU.pulse_maxima(X, D, ref)
        TWINS.pulse_maxima(X, D, out)
        np.testing.assert_array_equal(out, ref)
        assert np.isnan(out[1, 3]) and out[0, 2] == np.inf and out[0, 1] == 0.0
        X[2, -1] = 1e3
        X[3, 1] = np.nan
        for abs_max, bits in ((True, 6), (True, 0), (False, 4)):
            a = [np.empty_like(X), np.empty_like(X), np.empty(4, np.float32)]
            b = [np.empty_like(X), np.empty_like(X), np.empty(4, np.float32)]
            CPU.dac_convert(X, abs_max, bits, np.float32(1.5), True, *a)
            TWINS.dac_convert(X, abs_max, bits, np.float32(1.5), True, *b)
            for u, v in zip(a, b, strict=True):
                np.testing.assert_array_equal(v, u)
            assert np.isnan(b[0][3, 1]) and b[1][3, 1] == 0.0 and np.all(np.isfinite(b[1]))


SPARSE_KERNELS = {"pulse_aggregate", "refresh_pairs"}


@pytest.mark.parametrize(("compact", "block"), [(True, True), (False, False), (False, True)])
def test_sparse_update_variants_replay_crossbar_calls_exactly(compact, block, monkeypatch):
    """The pulse update and the refresh in their other variants (``ffsim.gpu.kernels.COMPACT``: listed cells
    or one pass over all; ``BLOCK_REDUCE``: list slots reserved per block or per entry) against the CPU
    kernels.  The lists are walked by one block of threads, fewer than their entries (the grid-stride loop)."""
    from ffsim.gpu import kernels as gk

    monkeypatch.setattr(gk, "COMPACT", compact)
    monkeypatch.setattr(gk, "BLOCK_REDUCE", block)
    monkeypatch.setattr(gk, "_LIST_BLOCKS", 1)
    calls = [(k, a) for k, a in _record("pcm", 0.0, "aggregate") if k in SPARSE_KERNELS]
    assert {k for k, _ in calls} == SPARSE_KERNELS
    changed = []  # cells whose conductances the CPU kernel changed, per call
    for k, args in calls:
        a = [_copy(v) for v in args]
        g = a[2] if k == "pulse_aggregate" else a[0]
        before = g.copy()
        getattr(CPU, k)(*a)
        changed.append(int(np.any(g != before, axis=0).sum()))
    # more listed cells than the list's threads (_T1 in the simulator); a refresh of some pairs, not all
    assert changed[0] > gk._T1 and 0 < changed[1] < 9 * 7, changed
    _replay(calls)
