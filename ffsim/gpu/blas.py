"""float32 GEMMs of the crossbar's hot path straight through cuBLAS (real GPUs only).

``cupy.matmul`` costs ~40 µs of host time per call (measured under cProfile on an H100, BENCHMARKS.md) and
copies strided operands first: a tile's columns of the DAC output (``x[:, a:b]``) are not contiguous, so
the batched tile GEMM needed a transposed copy of its input.  cuBLAS reads them in place: a row-major
``x[:, a:b]`` is a column-major matrix with leading dimension ``x.shape[1]``, and consecutive tiles are a
fixed stride apart, so all the full tiles of a pass are one ``cublasSgemmStridedBatched`` call.

:func:`gemm_params` works out the cuBLAS arguments of ``out[t] = a_t @ b_t`` (row-major ``out = a @ b`` is
column-major ``outᵀ = bᵀ aᵀ``) from the arrays' strides alone; it is plain Python, checked on the CPU
against an emulation of the column-major routine (``tests/test_gpu_blas.py``).  :func:`tile_gemms` and
:func:`matmul` call cuBLAS with them.  The first call of each layout (shapes and strides: the forward and
the transposed read of a chip are different layouts) is compared with ``cupy.matmul`` on its own operands
(the two need not round alike: within 1e-4 of the output's scale); a difference, or any error, turns the
direct path off for the process with a warning, and CuPy computes from then on.
``FFSIM_GPU_DIRECT_BLAS=0`` turns it off from the start.

``FFSIM_GPU_TF32=1`` (off by default) lets the products that only set the parameters of random draws --
the read-noise variance (x_q² · S2) and the pulse update's expected coincidences -- run on TF32 tensor
cores (their inputs keep 10 of float32's 23 mantissa bits; ``tf32=True`` of :func:`matmul` and
:func:`tile_gemms`, math mode set for the call and restored after).  The signal products (x_q · W) are
always float32.  What it changes in training: ``benchmarks/tf32_effect.py`` (BENCHMARKS.md).  Its first
call of a layout is compared with ``cupy.matmul`` (float32) within 5e-2 of the output's scale (a wrong
layout is off by O(1)).
"""

from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import numpy as np

ENABLED = os.environ.get("FFSIM_GPU_DIRECT_BLAS", "1") != "0"
TF32 = os.environ.get("FFSIM_GPU_TF32", "0") == "1"
_TF32_MATH, _DEFAULT_MATH = 3, 0  # cublasMath_t: CUBLAS_TF32_TENSOR_OP_MATH, CUBLAS_DEFAULT_MATH
_verified: set = set()  # the layouts (shapes, strides) whose direct call has been compared with CuPy
_ONE = np.ones(1, np.float32)
_ZERO = np.zeros(1, np.float32)
OP_N, OP_T = 0, 1  # cublasOperation_t


class GemmParams(NamedTuple):
    """Arguments of ``cublasSgemmStridedBatched`` (column-major; offsets and strides in elements)."""

    opa: int  # cuBLAS's A is the product's right factor b (transposed), its B the left factor a
    opb: int
    m: int
    n: int
    k: int
    lda: int
    stride_a: int
    ldb: int
    stride_b: int
    ldc: int
    stride_c: int
    batch: int


def _layout(strides: tuple[int, int], rows: int, cols: int) -> tuple[str, int] | None:
    """('r', ld) for unit-stride rows, ('c', ld) for unit-stride columns (elements), else None."""
    s0, s1 = strides
    if s1 == 1 and s0 >= max(1, cols):
        return "r", s0
    if s0 == 1 and s1 >= max(1, rows):
        return "c", s1
    if rows == 1 and s1 == 1:
        return "r", max(1, cols)
    if cols == 1 and s0 == 1:
        return "c", max(1, rows)
    return None


def gemm_params(a_shape, a_strides, b_shape, b_strides, c_shape, c_strides, batch: int = 1, stride_a: int = 0,
                stride_b: int = 0, stride_c: int = 0) -> GemmParams | None:
    """The column-major call computing ``out_t = a_t @ b_t`` (row-major, 2-D) for t < ``batch``, where
    ``a_t`` starts ``t·stride_a`` elements after ``a`` (likewise b, out); strides in elements.  None where
    a layout is not one cuBLAS reads in place (the caller then uses CuPy)."""
    (M, K), (K2, N), (M2, N2) = a_shape, b_shape, c_shape
    if K != K2 or M != M2 or N != N2 or min(M, N, K) < 1:
        return None
    la, lb, lc = _layout(a_strides, M, K), _layout(b_strides, K, N), _layout(c_strides, M, N)
    if la is None or lb is None or lc is None or lc[0] != "r":
        return None
    # outᵀ (N × M, column-major, ld = out's row stride) = bᵀ (N × K) · aᵀ (K × M)
    opa, lda = (OP_N, lb[1]) if lb[0] == "r" else (OP_T, lb[1])
    opb, ldb = (OP_N, la[1]) if la[0] == "r" else (OP_T, la[1])
    return GemmParams(opa, opb, N, M, K, lda, stride_b, ldb, stride_a, lc[1], stride_c, batch)


def _elems(a) -> tuple[int, int]:
    return a.strides[0] // a.itemsize, a.strides[1] // a.itemsize


_cu = None  # (cupy.cuda.device, cupy.cuda.get_current_stream, cuBLAS bindings), imported on first use


def _call(p: GemmParams, a_ptr: int, b_ptr: int, out_ptr: int, tf32: bool = False) -> None:
    """``out_t = a_t @ b_t`` by one ``cublasSgemmStridedBatched`` on CuPy's current stream (device pointers to
    the operands' first elements); with ``tf32``, on TF32 tensor cores (the handle's math mode restored
    after)."""
    global _cu
    if _cu is None:
        from cupy.cuda import device, get_current_stream
        from cupy_backends.cuda.libs import cublas

        _cu = (device, get_current_stream, cublas)
    device, current, cublas = _cu
    handle = device.get_cublas_handle()
    cublas.setStream(handle, current().ptr)
    mode = None
    if tf32:
        mode = cublas.getMathMode(handle) if hasattr(cublas, "getMathMode") else _DEFAULT_MATH
        cublas.setMathMode(handle, _TF32_MATH)
    try:
        cublas.sgemmStridedBatched(handle, p.opa, p.opb, p.m, p.n, p.k, _ONE.ctypes.data, b_ptr, p.lda, p.stride_a,
                                   a_ptr, p.ldb, p.stride_b, _ZERO.ctypes.data, out_ptr, p.ldc, p.stride_c, p.batch)
    finally:
        if mode is not None:
            cublas.setMathMode(handle, mode)


def _tolerance(tf32: bool) -> float:
    """How far a layout's first direct call may be from CuPy's float32 product (times the output's scale)."""
    return 5e-2 if tf32 else 1e-4


def _usable(*arrays) -> bool:
    return ENABLED and all(x.dtype == np.float32 and x.ndim >= 2 for x in arrays)


def _first_check(key, run_direct, run_cupy, out, tol: float = 1e-4) -> None:
    """Run a layout's first direct call against CuPy on the same operands (``out`` ends with CuPy's
    result); keep the direct path only if they agree.  Not while a step is captured in a CUDA graph (the
    comparison reads the result back): that step runs without a graph."""
    global ENABLED
    from ffsim.gpu import kernels

    if kernels.CAPTURE is not None:
        raise kernels.GraphUnsupported("a GEMM layout first seen while a step is captured")
    _verified.add(key)
    try:
        run_direct()
        got = out.copy()
        run_cupy()
        diff = float(abs(got - out).max())
        scale = float(abs(out).max()) or 1.0
        if not diff <= tol * scale:
            raise RuntimeError(f"it differs from cupy.matmul by {diff:.3g} (output scale {scale:.3g})")
    except Exception as e:  # noqa: BLE001 - any failure: CuPy from now on
        ENABLED = False
        warnings.warn(f"ffsim: direct cuBLAS GEMMs off ({type(e).__name__}: {e}); using cupy.matmul",
                      RuntimeWarning, stacklevel=3)
        run_cupy()


def matmul(a, b, out, tf32: bool = False) -> None:
    """``out[...] = a @ b`` (float32, 2-D, ``out`` with unit-stride rows), through cuBLAS where it can; ``tf32``:
    on TF32 tensor cores (see the module's text)."""
    import cupy

    p = gemm_params(a.shape, _elems(a), b.shape, _elems(b), out.shape, _elems(out)) if _usable(a, b, out) else None
    if p is None:
        cupy.matmul(a, b, out=out)
    elif (p, tf32) not in _verified:
        _first_check((p, tf32), lambda: _call(p, a.data.ptr, b.data.ptr, out.data.ptr, tf32),
                     lambda: cupy.matmul(a, b, out=out), out, _tolerance(tf32))
    else:
        _call(p, a.data.ptr, b.data.ptr, out.data.ptr, tf32)


def plan_tile_gemms(x, M, out, in_tiles) -> list[tuple[GemmParams, int, int, int]] | None:
    """The calls of :func:`tile_gemms` as ``(params, a, b, out)``, the operands' first elements as offsets (in
    elements) from those of ``x``, ``M`` and ``out``; None where a layout is not one cuBLAS reads in place."""
    if not in_tiles or not _usable(x, M, out) or out.ndim != 3 or not out.flags.c_contiguous:
        return None
    R = in_tiles[0][1] - in_tiles[0][0]
    n_full = sum(1 for a, b in in_tiles if b - a == R)
    if any(tuple(in_tiles[t]) != (t * R, (t + 1) * R) for t in range(n_full)):
        return None
    sx, sm = _elems(x), _elems(M)
    B, N = out.shape[1], out.shape[2]
    calls = [(gemm_params((B, R), sx, (R, N), sm, (B, N), (N, 1), batch=n_full, stride_a=R * sx[1],
                          stride_b=R * sm[0], stride_c=B * N), 0, 0, 0)]
    for t in range(n_full, len(in_tiles)):
        a, b = in_tiles[t]
        calls.append((gemm_params((B, b - a), sx, (b - a, N), sm, (B, N), (N, 1)), a * sx[1], a * sm[0], t * B * N))
    return None if any(c[0] is None for c in calls) else calls


_PLANS: dict = {}  # tile_gemms' plans by the operands' shapes, strides and tiles (they do not depend on addresses)


def tile_gemms(x, M, out, in_tiles, tf32: bool = False) -> None:
    """``out[t] = x[:, a:b] @ M[a:b]`` for each input tile ``(a, b)`` of ``in_tiles`` (consecutive from 0, the
    full ones first): the full tiles in one strided-batched call reading ``x`` and ``M`` in place, the last
    (shorter) tile in a second.  ``out`` is (tiles × batch × n_out), C-contiguous.  ``tf32``: on TF32 tensor
    cores (see the module's text)."""
    import cupy

    def by_cupy():
        for t, (a, b) in enumerate(in_tiles):
            cupy.matmul(x[:, a:b], M[a:b], out=out[t])

    key = (x.shape, x.strides, x.dtype.char, M.shape, M.strides, M.dtype.char, out.shape, out.strides,
           out.dtype.char, out.flags.c_contiguous, tuple(map(tuple, in_tiles)))
    calls = _PLANS.get(key, False)
    if calls is False:
        if len(_PLANS) > 256:
            _PLANS.clear()
        calls = _PLANS[key] = plan_tile_gemms(x, M, out, in_tiles)
    if calls is None or not ENABLED:
        by_cupy()
        return
    px, pm, po = x.data.ptr, M.data.ptr, out.data.ptr

    def direct():
        for q, ao, bo, oo in calls:
            _call(q, px + 4 * ao, pm + 4 * bo, po + 4 * oo, tf32)

    if (key, tf32) not in _verified:
        _first_check((key, tf32), direct, by_cupy, out, _tolerance(tf32))
    else:
        direct()
