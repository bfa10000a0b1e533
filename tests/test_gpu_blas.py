"""The cuBLAS arguments of the direct GEMM path (``ffsim.gpu.blas``), on the CPU: each planned call is
carried out by a numpy emulation of column-major ``cublasSgemmStridedBatched`` reading the operands'
memory through the planned leading dimensions and strides, and must give ``x @ M`` tile by tile."""

# ruff: noqa: I001
from __future__ import annotations

import ffsim  # noqa: F401  (first, before numpy: see ffsim/_runtime.py)

import numpy as np
import pytest

from ffsim.gpu import blas


def _colmajor(view, rows, cols, ld, batch, stride):
    """The column-major matrices (batch × rows × cols) that cuBLAS reads from ``view``'s first element."""
    it = view.itemsize
    return np.lib.stride_tricks.as_strided(view, shape=(batch, rows, cols), strides=(stride * it, it, ld * it))


def _at(a, off):
    """A view starting ``off`` elements after ``a``'s first element (as a pointer plus an offset)."""
    return np.lib.stride_tricks.as_strided(a, shape=(a.size * 4,), strides=(a.itemsize,))[off:]


def _emulate(p: blas.GemmParams, a, b, out) -> None:
    # cuBLAS A: the right factor b (m × k after op), cuBLAS B: the left factor a (k × n after op)
    A = _colmajor(b, *((p.m, p.k) if p.opa == blas.OP_N else (p.k, p.m)), p.lda, p.batch, p.stride_a)
    Bm = _colmajor(a, *((p.k, p.n) if p.opb == blas.OP_N else (p.n, p.k)), p.ldb, p.batch, p.stride_b)
    C = _colmajor(out, p.m, p.n, p.ldc, p.batch, p.stride_c)
    opA = A if p.opa == blas.OP_N else A.transpose(0, 2, 1)
    opB = Bm if p.opb == blas.OP_N else Bm.transpose(0, 2, 1)
    C[...] = (opA.astype(np.float64) @ opB.astype(np.float64)).astype(np.float32)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize(("n_in", "R"), [(10, 4), (12, 4), (7, 7), (5, 8)])
def test_planned_tile_gemms_compute_every_tile(n_in, R, transposed):
    rng = np.random.default_rng(0)
    B, n_out = 3, 6
    x = rng.standard_normal((B, n_in)).astype(np.float32)
    # the chip's weights, or their transpose (a column-major view) as transposed() passes them
    M = rng.standard_normal((n_out, n_in)).astype(np.float32).T if transposed else \
        rng.standard_normal((n_in, n_out)).astype(np.float32)
    tiles = [(a, min(a + R, n_in)) for a in range(0, n_in, R)]
    out = np.full((len(tiles), B, n_out), np.nan, np.float32)
    calls = blas.plan_tile_gemms(x, M, out, tiles)
    assert calls is not None and len(calls) == 1 + (n_in % R != 0 and n_in > R)
    for p, ao, bo, oo in calls:
        _emulate(p, _at(x, ao), _at(M, bo), _at(out, oo))
    for t, (a, b) in enumerate(tiles):
        np.testing.assert_allclose(out[t], x[:, a:b] @ M[a:b], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("ta", "tb"), [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_params_of_transposed_operands(ta, tb):
    """``e_tot = Aᵀ C`` as the pulse update computes it, and the other layouts."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 4)).astype(np.float32)
    b = rng.standard_normal((5, 3)).astype(np.float32)
    a = np.ascontiguousarray(a.T).T if ta else a  # the same values, column-major
    b = np.ascontiguousarray(b.T).T if tb else b
    lhs = a.T  # (4 × 5)
    out = np.zeros((4, 3), np.float32)
    p = blas.gemm_params(lhs.shape, blas._elems(lhs), b.shape, blas._elems(b), out.shape, blas._elems(out))
    assert p is not None
    _emulate(p, lhs, b, out)
    np.testing.assert_allclose(out, lhs @ b, rtol=1e-5, atol=1e-6)


def test_layouts_cublas_cannot_read_are_refused():
    a = np.zeros((4, 6), np.float32)[:, ::2]  # neither rows nor columns unit-stride
    b = np.zeros((3, 5), np.float32)
    out = np.zeros((4, 5), np.float32)
    assert blas.gemm_params(a.shape, blas._elems(a), b.shape, blas._elems(b), out.shape, blas._elems(out)) is None
    assert blas.gemm_params((4, 3), (3, 1), (2, 5), (5, 1), (4, 5), (5, 1)) is None  # inner sizes differ
    col_out = np.zeros((5, 4), np.float32).T
    assert blas.gemm_params((4, 3), (3, 1), (3, 5), (5, 1), col_out.shape, blas._elems(col_out)) is None
    x = np.zeros((2, 8), np.float64)
    assert blas.plan_tile_gemms(x, np.zeros((8, 3), np.float64), np.zeros((2, 2, 3)), [(0, 4), (4, 8)]) is None


def _fake_cublas(monkeypatch, fail: bool = False):
    """A stand-in for CuPy's cuBLAS bindings that records what the direct path calls."""
    from types import SimpleNamespace

    calls = []

    class Cublas:
        def setStream(self, handle, stream):  # noqa: N802 - the binding's name
            calls.append(("stream", stream))

        def getMathMode(self, handle):  # noqa: N802
            return 7

        def setMathMode(self, handle, mode):  # noqa: N802
            calls.append(("math mode", mode))

        def sgemmStridedBatched(self, *args):  # noqa: N802
            calls.append(("gemm",))
            if fail:
                raise RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED")

    monkeypatch.setattr(blas, "_cu", (SimpleNamespace(get_cublas_handle=lambda: 1), lambda: SimpleNamespace(ptr=5),
                                      Cublas()))
    return calls


def test_tf32_products_set_the_math_mode_for_their_call_only(monkeypatch):
    """``FFSIM_GPU_TF32``: the noise and coincidence products run with the TF32 math mode, which is restored
    after the call (also when it fails); float32 products leave the math mode alone."""
    p = blas.gemm_params((2, 3), (3, 1), (3, 4), (4, 1), (2, 4), (4, 1))
    calls = _fake_cublas(monkeypatch)
    blas._call(p, 0, 0, 0)
    blas._call(p, 0, 0, 0, tf32=True)
    assert calls == [("stream", 5), ("gemm",), ("stream", 5), ("math mode", blas._TF32_MATH), ("gemm",),
                     ("math mode", 7)]
    calls = _fake_cublas(monkeypatch, fail=True)
    with pytest.raises(RuntimeError, match="EXECUTION_FAILED"):
        blas._call(p, 0, 0, 0, tf32=True)
    assert calls[-1] == ("math mode", 7)


def test_a_tf32_layout_is_checked_at_its_own_tolerance(monkeypatch):
    """The first call of a layout is compared with CuPy's float32 product: within 1e-4 of the output's scale
    for float32, 5e-2 for TF32 (a wrong layout is off by O(1)); a failed check turns the direct path off."""
    assert (blas._tolerance(False), blas._tolerance(True)) == (1e-4, 5e-2)
    monkeypatch.setattr(blas, "ENABLED", True)
    monkeypatch.setattr(blas, "_verified", set())
    exact = np.arange(1.0, 7.0, dtype=np.float32)

    def run(out, rel):
        return lambda: out.__setitem__(slice(None), exact * (1 + rel))

    out = np.zeros(6, np.float32)
    blas._first_check(("layout", True), run(out, 1e-3), run(out, 0.0), out, blas._tolerance(True))  # kept
    assert blas.ENABLED and ("layout", True) in blas._verified
    with pytest.warns(RuntimeWarning, match="direct cuBLAS GEMMs off"):
        blas._first_check(("layout", False), run(out, 1e-3), run(out, 0.0), out, blas._tolerance(False))
    assert not blas.ENABLED
    np.testing.assert_array_equal(out, exact)  # CuPy's result in the end
