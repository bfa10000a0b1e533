"""numba-cuda twins of the crossbar's Numba CPU kernels, each behind a launcher with the CPU signature.

=====================  =====================================  ====================================
CPU kernel             twin                                   threads
=====================  =====================================  ====================================
``dac_convert``        :func:`dac_convert`                    one per row (scale), one per element
``adc_accumulate``     :func:`adc_accumulate`                 one per output (b, j), tiles in order
``rebuild_caches``     :func:`rebuild_caches`                 one per cell, then one per row
``ir_loads``           :func:`ir_loads`                       one per wire and tile
``column_sums``        :func:`column_sums`                    one per column
``program_masked``     :func:`program_masked`                 one per cell; counts by atomics
``pulse_aggregate``    :func:`pulse_aggregate`                one per cell picks, one per pulsed cell
                                                             pulses (``COMPACT``); counts by atomics
``pulse_exact``        :func:`pulse_exact`                    trains per (b, i); then per cell, sample by sample
``pulse_maxima``       :func:`pulse_maxima`                   one per row
``pulse_factors``      :func:`pulse_factors`                  one per entry
(host numpy)           :func:`plan_trains` (the trains)       one per case
``refresh_pairs``      :func:`refresh_pairs`                  one per cell picks, one per pair above the
                                                             threshold resets (``COMPACT``); atomics
``_smoothed_step``     :func:`smoothed_step`                  one per weight (the float store's step)
=====================  =====================================  ====================================

The FF engine's fused per-row kernels (:mod:`ffsim.ff.kernels`) have their twins in
:mod:`ffsim.gpu.ff_kernels`; :func:`namespace` serves both.

The device physics is not written twice: a pulse's step and a cell's pulses, write noise, write-verify
programming, a pair's refresh, a cell's cache entries and IR-drop loads, and the counter-based generators
are the CPU helpers' own bodies compiled as device functions (:mod:`ffsim.gpu.twin`; their list is
``tests/gpu_sim/test_shared_bodies.py``).  What differs is the parallel structure around them (threads,
atomics, lists of pulsed cells, block reductions) and the converters' element loops (the CPU's are written
for vectorization).

The arrays may be CuPy arrays, numba device arrays or (in the CUDA simulator, or for small checks) numpy
arrays; the kernels write into them in place, as the CPU kernels do, and the launchers return what the
CPU kernels return.  Every random number comes from the same ``(key, counter)`` as in the CPU kernel
(:mod:`ffsim.gpu.rng`), and every operand is converted to the type numba gives it on the CPU, so the
simulator reproduces the CPU results; the per-row sums (``rowsum``) are accumulated by atomics in
another order, equal to rounding.  On a GPU the libdevice ``exp``/``log``/``pow`` and FMA contraction
may change last bits, so GPU and CPU agree in distribution, not bit for bit.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import warnings
from types import SimpleNamespace

import numba
import numpy as np
from numba import cuda

from ffsim.crossbar import kernels as _xbar_cpu
from ffsim.crossbar import periphery as _periph_cpu
from ffsim.devices import physics as _physics
from ffsim.devices import program as _program_cpu
from ffsim.devices import pulse as _pulse_cpu
from ffsim.devices import refresh as _refresh_cpu
from ffsim.ff import weights as _ff_weights
from ffsim.gpu.rng import mix64, normal32_from_word, normal_at, normal_box_muller32, poisson_at, uniform_at, word_at
from ffsim.gpu.twin import device, jit_kernel

__all__ = ["adc_accumulate", "column_sums", "dac_convert", "ir_loads", "namespace", "program_masked",
           "pulse_aggregate", "pulse_exact", "pulse_factors", "pulse_maxima", "rebuild_caches", "refresh_pairs",
           "smoothed_step"]

SIMULATED = bool(numba.config.ENABLE_CUDASIM)
# the simulator runs one Python thread per CUDA thread: small blocks keep tiny test arrays fast
_T1 = 32 if SIMULATED else 128
_T2 = (8, 8) if SIMULATED else (32, 8)
_T2S = (_T2[1], _T2[0])  # a 2-D block's threads as a shared array (rows: threadIdx.y); _T2[0] a power of two
_TR = 32 if SIMULATED else 128  # threads of a block that reduces one row (a power of two)
# Row maxima, the DAC and the read charge by blocks of threads (strided coalesced reads, shared-memory
# trees) on a GPU.  The simulator runs one Python thread per CUDA thread and its barriers are slow, so there
# the same launchers take thread-per-row variants (one launch each as well); tests/gpu_sim/test_kernel_twins.py
# and test_crossbar_gpu.py run both variants against the CPU.
BLOCK_REDUCE = not SIMULATED

# Functions with no CUDA lowering of the numpy ufunc: libdevice on a GPU; in the simulator the numpy ufunc,
# which is what the CPU kernels compute (float32 rint of a float32, ...).
if SIMULATED:
    _rint = _rintf = np.rint
else:
    from numba.cuda import libdevice

    _rint = libdevice.rint
    _rintf = libdevice.rintf

_G2 = np.uint64(0xD6E8FEB86659FD93)


# Launch arguments on a GPU.  numba-cuda 0.30 imports every CuPy argument afresh at each launch (DLPack or
# __cuda_array_interface__, with a wait on the stream the array names): measured on an H200, ~0.7 ms per
# launch of a kernel with ~28 array arguments, most of a pcm in-situ FF step (BENCHMARKS.md).  A numba
# device array passes with its cached type and pointer, so each CuPy argument is replaced by a numba view
# of the same memory, made once per layout and kept in a bounded cache.  The views do not own the memory:
# one is used only while the CuPy array with exactly its pointer, shape, strides and dtype is alive (the
# caller's argument), so a view of freed memory can never be used for anything but the array that now
# occupies it with the same layout.  CuPy and numba launch on the same legacy default stream, so no wait
# is needed.  ``CACHE_VIEWS = False`` passes the CuPy arrays as they are (for comparison).
CACHE_VIEWS = True
_VIEWS_MAX = 4096
_views: dict = {}
_cupy_ndarray: list = []


def _cupy_type():
    if not _cupy_ndarray:
        try:
            import cupy

            _cupy_ndarray.append(cupy.ndarray)
        except ImportError:
            _cupy_ndarray.append(())
    return _cupy_ndarray[0]


def _view(a, make=None):
    """The cached non-owning numba device view of the device array ``a`` (see above)."""
    key = (a.data.ptr, a.shape, a.strides, a.dtype.str)
    v = _views.get(key)
    if v is None:
        if len(_views) >= _VIEWS_MAX:  # drop the oldest half (dicts keep insertion order)
            for k in list(_views)[: _VIEWS_MAX // 2]:
                _views.pop(k, None)
        if make is None:
            v = cuda.from_cuda_array_interface(a.__cuda_array_interface__, owner=None, sync=False)
        else:
            v = make(a)
        _views[key] = v
    return v


# Fast launches on a GPU.  Even with the views above, numba-cuda's launcher spends ~100-250 µs of host time
# per launch (measured on an H100 with cProfile, BENCHMARKS.md): it types every argument, finds the
# overload, imports each array again and builds the parameter list in Python, while the GPU work of most
# of these kernels takes a few µs.  The fast path does what that launcher does, once per kind of call,
# and then only what changes: the parameter list of each CuPy array (a pure function of its pointer,
# shape, strides and dtype) is cached by that layout, scalars are converted as numba converts them, and
# the compiled kernel of each signature is launched through cuda.core, as numba-cuda launches it.  The
# first call of each (kernel, signature) goes through numba (which compiles the kernel), and the next
# builds its parameters both ways and compares them value by value and type by type: a difference (another
# numba-cuda's marshalling) turns the fast path off for that signature, with one warning.  Anything else
# than CuPy arrays and plain scalars, another numba-cuda without cuda.core, or ``FAST_LAUNCH = False``
# (environment ``FFSIM_GPU_FAST_LAUNCH=0``) takes numba's launcher.  Single GPU; the caches are per thread
# (each thread's first launch of a kernel makes numba's context current there).
FAST_LAUNCH = os.environ.get("FFSIM_GPU_FAST_LAUNCH", "1") != "0"
_FAST_ARRAYS_MAX = 8192
_fast_local = threading.local()
_fast_hooks: dict = {}


def _fast_numba_hooks() -> dict | None:
    """numba-cuda's pieces the fast path uses (None where this numba has no cuda.core launch)."""
    if "ok" not in _fast_hooks:
        try:
            from cuda.core import LaunchConfig, launch
            from cupy.cuda import runtime
            from numba.cuda._compat import CUDA_CORE_GE_1_0
            from numba.cuda.cudadrv import driver
            from numba.cuda.errors import normalize_kernel_dimensions
            from numba.cuda.typing.typeof import Purpose, typeof

            coop = "is_cooperative" if CUDA_CORE_GE_1_0 else "cooperative_launch"
            _fast_hooks.update(
                ok=True, launch=launch, stream=driver._to_core_stream(0), device=runtime.getDevice,
                config=lambda grid, block: LaunchConfig(grid=grid, block=block, shmem_size=0, **{coop: False}),
                dims=normalize_kernel_dimensions, typeof=lambda v: typeof(v, Purpose.argument),
                view=lambda a: cuda.from_cuda_array_interface(a.__cuda_array_interface__, owner=None, sync=False))
        except Exception:  # noqa: BLE001 - any other numba: numba's own launcher
            _fast_hooks["ok"] = False
    return _fast_hooks if _fast_hooks["ok"] else None


def _fast_state(device: int = 0):
    """This thread's fast-launch caches for the current GPU ``device``: a kernel's function handle belongs to
    the device's context, so a thread that switches devices (``cupy.cuda.Device(n).use()``) gets each
    device's own handles."""
    by_device = getattr(_fast_local, "by_device", None)
    if by_device is None:
        by_device = _fast_local.by_device = {}
    st = by_device.get(device)
    if st is None:
        st = by_device[device] = SimpleNamespace(arrays={}, sigs={}, configs={}, scalars={}, type_ids={}, types=[],
                                                 kinds={})
    return st


def _scalar_conv(ty):
    """How numba-cuda passes a scalar of numba type ``ty`` to a kernel (``_Kernel._prepare_args``)."""
    import ctypes

    from numba.core import types as nt

    if isinstance(ty, nt.Integer):
        return getattr(ctypes, f"c_{ty}")
    if ty == nt.float64:
        return ctypes.c_double
    if ty == nt.float32:
        return ctypes.c_float
    if ty == nt.boolean:
        return None  # passed as it is
    raise TypeError(ty)


def _same_params(a: list, b: list) -> bool:
    """Two parameter lists equal value by value and type by type (ctypes values by their ``.value``)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if type(x) is not type(y):
            return False
        if hasattr(x, "_type_"):  # a ctypes scalar
            if x.value != y.value:
                return False
        elif x != y:
            return False
    return True


def fast_launch_stats() -> dict:
    """This thread's fast-launch caches for the current device: signatures launched directly, signatures
    turned off (their parameters differed from numba-cuda's), array layouts cached."""
    h = _fast_numba_hooks()
    st = _fast_state(h["device"]() if h else 0)
    return {"direct": sum(1 for v in st.sigs.values() if v is not False),
            "off": sorted(str(getattr(k, "__name__", k)) for (k, _), v in st.sigs.items() if v is False),
            "array_layouts": len(st.arrays),
            "array_kinds_direct": sum(1 for k in st.kinds.values() if k[2] and k[1] >= _DIRECT_AFTER),
            "array_kinds_numba": sum(1 for k in st.kinds.values() if not k[2])}


def _type_id(st, ty) -> int:
    """A small int for the numba type ``ty`` (signatures are looked up by these: hashing numba types
    costs µs each)."""
    tid = st.type_ids.get(ty)
    if tid is None:
        tid = st.type_ids[ty] = len(st.types)
        st.types.append(ty)
    return tid


_DIRECT_AFTER = 32


@functools.cache
def _c_strides(shape: tuple, itemsize: int) -> tuple:
    """numba-cuda's strides of a C-contiguous array imported without strides (``_fill_stride_by_order``)."""
    st = [0] * len(shape)
    if shape:
        st[-1] = itemsize
        for d in range(len(shape) - 2, -1, -1):
            st[d] = st[d + 1] * shape[d + 1]
    return tuple(st)


def _array_entry(st, h, kernel, a):
    """(type id, parameters) of the CuPy array ``a`` as numba-cuda passes it, or None (no overload yet).

    numba's way (a view, its type, ``_prepare_args``) costs ~100 µs; the same can be read off the array
    (C-contiguous arrays come without strides through ``__cuda_array_interface__``, so numba fills in the
    C strides).  Both are computed and compared for the first ``_DIRECT_AFTER`` arrays of each kind (dtype,
    ndims, contiguity); once they have agreed that often, the kind is read off directly, and one
    disagreement keeps numba's way for it."""
    flags = a.flags
    c = flags.c_contiguous
    kind_key = (a.dtype.str, a.ndim, c, flags.f_contiguous)
    kind = st.kinds.get(kind_key)
    direct = (0, 0, a.size, a.itemsize, a.data.ptr, *a.shape, *(_c_strides(a.shape, a.itemsize) if c else a.strides))
    if kind is not None and kind[2] and kind[1] >= _DIRECT_AFTER:
        return kind[0], direct
    ov = next(iter(kernel.overloads.values()), None)  # any overload: marshalling is per type
    if ov is None:
        return None
    view = h["view"](a)
    ty = h["typeof"](view)
    flat: list = []
    ov._prepare_args(ty, view, h["stream"], [], flat)
    if any(type(v) is not int for v in flat):
        return None
    tid = _type_id(st, ty)
    if kind is None:
        kind = st.kinds[kind_key] = [tid, 0, True]
    if kind[2]:
        if tid == kind[0] and tuple(flat) == direct:
            kind[1] += 1
        else:
            kind[2] = False
    return tid, tuple(flat)


def _fast_launch(kernel, grid, block, args, cp_array) -> bool:
    """Launch ``kernel[grid, block](*args)`` by the fast path; False where it cannot (nothing launched)."""
    h = _fast_numba_hooks()
    if h is None:
        return False
    st = _fast_state(h["device"]())
    kinds = []
    params = []
    for a in args:
        if isinstance(a, cp_array):
            key = (a.data.ptr, a.shape, a.strides, a.dtype)
            e = st.arrays.get(key)
            if e is None:
                e = _array_entry(st, h, kernel, a)
                if e is None:
                    return False
                if len(st.arrays) >= _FAST_ARRAYS_MAX:
                    for k in list(st.arrays)[: _FAST_ARRAYS_MAX // 2]:
                        st.arrays.pop(k, None)
                st.arrays[key] = e
            kinds.append(e[0])
            params.extend(e[1])
        else:
            t = type(a)
            if t is int and not -(2**63) <= a < 2**63:
                return False
            s = st.scalars.get(t)
            if s is None:
                if not (t in (bool, int, float) or isinstance(a, np.number | np.bool_)):
                    return False
                ty = h["typeof"](a)
                try:
                    s = st.scalars[t] = (_type_id(st, ty), _scalar_conv(ty))
                except TypeError:
                    return False
            kinds.append(s[0])
            params.append(a if s[1] is None else s[1](a))
    sk = (kernel, tuple(kinds))
    fn = st.sigs.get(sk)
    if fn is None:
        sig = tuple(st.types[i] for i in sk[1])
        ov = kernel.overloads.get(sig)
        if ov is None or ov.cooperative:
            return False  # numba compiles it (or picks a convertible overload) this time
        ref: list = []
        for ty, a in zip(sig, args, strict=True):
            ov._prepare_args(ty, h["view"](a) if isinstance(a, cp_array) else a, h["stream"], [], ref)
        if _same_params(params, ref):
            fn = ov._codelibrary.get_cufunc().kernel
        else:
            fn = False
            warnings.warn(f"ffsim: fast launch of {getattr(kernel, '__name__', kernel)} off: its parameters differ "
                          "from numba-cuda's", RuntimeWarning, stacklevel=3)
        st.sigs[sk] = fn
    if fn is False:
        return False
    ck = (grid, block)
    cfg = st.configs.get(ck)
    if cfg is None:
        cfg = st.configs[ck] = h["config"](*h["dims"](grid, block))
    h["launch"](_core_stream(h), cfg, fn, *params)
    return True


# Every launch goes to CuPy's current stream (the legacy default stream unless a caller made another one
# current, as the CUDA-graph capture does: capture needs a stream of its own, ffsim.gpu.graph).
_current_stream: list = []
_streams: dict = {}


def _current_stream_ptr() -> int:
    if not _current_stream:
        try:
            from cupy.cuda import get_current_stream

            _current_stream.append(get_current_stream)
        except ImportError:
            _current_stream.append(None)
    f = _current_stream[0]
    return 0 if f is None else f().ptr


def _core_stream(h):
    """cuda.core's stream for CuPy's current stream (the fast path's launches)."""
    ptr = _current_stream_ptr()
    if ptr == 0:
        return h["stream"]
    s = _streams.get(("core", ptr))
    if s is None:
        s = _streams[("core", ptr)] = type(h["stream"]).from_handle(ptr)
    return s


def _numba_stream():
    """numba's stream for CuPy's current stream (0: the default stream)."""
    ptr = _current_stream_ptr()
    if ptr == 0:
        return 0
    s = _streams.get(("numba", ptr))
    if s is None:
        s = _streams[("numba", ptr)] = cuda.external_stream(ptr)
    return s


def _launch(kernel, grid, block, *args) -> None:
    if SIMULATED:  # numpy scalars warn on the uint64 wrap-around the hash functions rely on
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
            kernel[grid, block](*args)
        return
    cp_array = _cupy_type()
    if FAST_LAUNCH and _fast_launch(kernel, grid, block, args, cp_array):
        return
    if CACHE_VIEWS:
        args = tuple(_view(a) if isinstance(a, cp_array) else a for a in args)
    kernel[grid, block, _numba_stream()](*args)


def _g1(n: int) -> tuple[int]:
    return (max(1, -(-n // _T1)),)


def _g2(n_rows: int, n_cols: int) -> tuple[int, int]:
    return (max(1, -(-n_cols // _T2[0])), max(1, -(-n_rows // _T2[1])))


class _Counter:
    """The device counter a kernel adds its count to (atomics), kept for the process: each launcher reads
    how much the total grew (one transfer back) instead of uploading a fresh zero before every launch."""

    def __init__(self):
        self.dev = None
        self.last = 0

    def array(self):
        if self.dev is None:
            self.dev = _device_zeros((1,), np.int64)
            self.last = 0
        return self.dev

    def read(self) -> int:
        total = int(_to_host(self.dev)[0])
        n, self.last = total - self.last, total
        return n


_counters = threading.local()  # per thread: a launch and its read must not interleave with another's


def _counter(site: str) -> _Counter:
    d = getattr(_counters, "by_site", None)
    if d is None:
        d = _counters.by_site = {}
    if site not in d:
        d[site] = _Counter()
    return d[site]


def _zero_stride(a) -> bool:
    return a.size > 1 and all(s == 0 for s in a.strides)


_dummy: dict[str, object] = {}


def _dummy3():
    if "f3" not in _dummy:
        _dummy["f3"] = _device_zeros((1, 1, 1), np.float32)
    return _dummy["f3"]


def _device_zeros(shape, dtype):
    """Zeros on the device: a CuPy array on a GPU (the fast launch path takes CuPy arrays), a numba device
    array in the simulator."""
    cp_array = _cupy_type()
    if not SIMULATED and cp_array:
        import cupy

        return cupy.zeros(shape, dtype=dtype)
    return cuda.to_device(np.zeros(shape, dtype=dtype))


def _to_host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") and not hasattr(a, "copy_to_host") else a.copy_to_host()


# CUDA-graph capture of a step (ffsim.gpu.graph).  A captured launch keeps its arguments: a key passed by
# value would give every replay the same random numbers.  So while a step is captured (``CAPTURE`` set by
# ffsim.gpu.graph), each keyed kernel reads its key from a device array (the tape), at the slot where the
# capture recorded the key's draw, and before each replay the host draws the step's keys again from the
# same generators, in the same order, and uploads them.  Outside a capture the key goes by value
# (``kslot`` = -1).  The per-launch zeroed counters are fresh arrays of the backend's ``xp`` then (their
# zeroing is captured too, so each replay counts from zero).
CAPTURE = None


class GraphUnsupported(RuntimeError):
    """What a step does cannot be captured in a CUDA graph (it runs without one)."""


@cuda.jit(device=True)
def _tape_key(key, keys, kslot):
    if kslot >= 0:
        return keys[kslot]
    return np.uint64(key)


def _keyed(key, used: bool = True) -> tuple:
    """``(keys, kslot)`` for a keyed kernel: a placeholder and -1 (the key goes by value), or, while a step is
    captured, the tape and the slot of ``key``."""
    if CAPTURE is None or not used:
        if "keys" not in _dummy:
            _dummy["keys"] = _device_zeros((1,), np.uint64)
        return _dummy["keys"], np.int64(-1)
    return CAPTURE.keys, np.int64(CAPTURE.slot(key))


def _no_capture(what: str) -> None:
    if CAPTURE is not None:
        raise GraphUnsupported(f"{what} is not captured in a CUDA graph")


# ----------------------------------------------------------------------------------------------
# device functions shared by the kernels (twins of the @njit(inline='always') helpers)


@cuda.jit(device=True)
def _sqrtf(x):
    """float32 square root (correctly rounded: equal to numpy's and to Numba's on the CPU)."""
    return np.float32(math.sqrt(x))


# the device physics: the CPU helpers' own bodies (ffsim.gpu.twin), their callees bound to the twins
_min = device(_physics.smin)
_max = device(_physics.smax)
_lut_eval = device(_physics.lut_eval)
_mean_step = device(_physics.mean_step, smin=_min, smax=_max)
_step_device = device(_pulse_cpu._step_device, mean_step=_mean_step, normal32_from_word=normal32_from_word)
_cell_pulses = device(_pulse_cpu._cell_pulses, _step_device=_step_device, mix64=mix64, word_at=word_at)
_redraw_write_noise = device(_pulse_cpu._redraw_write_noise, normal_at=normal_at)
_refresh_cache_cell = device(_pulse_cpu.refresh_cache_cell, lut_eval=_lut_eval)
_tanh_rational = device(_periph_cpu.tanh_rational, smin=_min, smax=_max)
_dac_scale = device(_periph_cpu._dac_scale)
_dac_value = device(_periph_cpu._dac_value, rintf=_rintf)
_dac_square = device(_periph_cpu._dac_square)
_adc_analog = device(_periph_cpu._adc_analog, sqrtf=_sqrtf)
_adc_compress = device(_periph_cpu._adc_compress, tanh_rational=_tanh_rational)
_adc_quantize = device(_periph_cpu._adc_quantize, smin=_min, smax=_max, rintf=_rintf)
_dprof = device(_xbar_cpu._dprof)
_row_load = device(_xbar_cpu._row_load, smin=_min)
_column_load = device(_xbar_cpu._column_load, smin=_min)
_row_profile = device(_xbar_cpu._row_profile, smin=_min, _dprof=_dprof)
_cache_cell = device(_xbar_cpu._cache_cell, _row_profile=_row_profile, smin=_min, _dprof=_dprof, lut_eval=_lut_eval)
_ref_var_row = device(_xbar_cpu._ref_var_row, _row_profile=_row_profile, lut_eval=_lut_eval)
_column_total = device(_xbar_cpu._column_total)
_smoothed_cell = device(_ff_weights._smoothed_cell)
_popcount64 = device(_pulse_cpu.popcount64)
_train_bits = device(_pulse_cpu._train_bits, uniform_at=uniform_at)
_pulse_count = device(_pulse_cpu._pulse_count, poisson_at=poisson_at)
_cell_done = device(_pulse_cpu._cell_done, _redraw_write_noise=_redraw_write_noise,
                    refresh_cache_cell=_refresh_cache_cell)
_pulse_train = device(_pulse_cpu._pulse_train, mix64=mix64, _cell_pulses=_cell_pulses, _cell_done=_cell_done)
_exact_cell = device(_pulse_cpu._exact_cell, mix64=mix64, _cell_pulses=_cell_pulses, _cell_done=_cell_done)
_poly = device(_refresh_cpu._poly)
_nu = device(_refresh_cpu._nu, smin=_min, smax=_max)
_write_device = device(_program_cpu._write_device, smin=_min, smax=_max, rint=_rint, _poly=_poly, normal_at=normal_at)
_program_cell = device(_program_cpu._program_cell, mix64=mix64, smin=_min, smax=_max, _write_device=_write_device,
                       _nu=_nu, normal_at=normal_at, refresh_cache_cell=_refresh_cache_cell)
_refresh_cell = device(_refresh_cpu._refresh_cell, mix64=mix64, lut_eval=_lut_eval, normal_at=normal_at, smin=_min,
                       smax=_max, rint=_rint, _poly=_poly, _nu=_nu, refresh_cache_cell=_refresh_cache_cell)


@cuda.jit(device=True)
def _row_abs_max(M, b, nan_on, sh):
    """max_j |M[b, j]| (float32) by the block's ``_TR`` threads: each a strided part of the row (coalesced
    reads), then a tree in the shared array ``sh``; with ``nan_on`` NaN if the row holds one (as numpy's
    max), else NaN is passed over.  Every thread of the block must call it (it synchronizes); all get
    the result."""
    t = cuda.threadIdx.x
    m = np.float32(0.0)
    for j in range(t, M.shape[1], _TR):
        a = abs(M[b, j])
        if a > m or (nan_on and a != a):
            m = a
    sh[t] = m
    cuda.syncthreads()
    s = _TR // 2
    while s > 0:
        if t < s:
            o = sh[t + s]
            if o > sh[t] or (nan_on and o != o):
                sh[t] = o
        cuda.syncthreads()
        s //= 2
    return sh[0]


@cuda.jit(device=True)
def _dac_part(x, b, s, bits, want_sq, xq, xq2, start, step):
    """Convert entries start, start + step, ... of row ``b`` with the row's scale ``s`` (the CPU kernel's
    arithmetic: a division, clipping to [-1, 1], rounding to 2^(bits-1) - 1 levels per side)."""
    lev = np.float32(2.0 ** (bits - 1) - 1.0) if bits > 0 else np.float32(0.0)
    for i in range(start, x.shape[1], step):
        v = _dac_value(x[b, i], s, bits, lev)
        xq[b, i] = v
        if want_sq:
            xq2[b, i] = _dac_square(v)


@jit_kernel
def _dac(x, abs_max, bits, bound, want_sq, xq, xq2, scale):
    # one block per row: its scale (the row's max |x| under noise management), then its conversion
    sh = cuda.shared.array(_TR, np.float32)
    b = cuda.blockIdx.x
    s = np.float32(bound)
    if abs_max:
        m = _row_abs_max(x, b, False, sh)
        s = m if m > 0 else np.float32(1.0)
    if cuda.threadIdx.x == 0:
        scale[b] = s
    _dac_part(x, b, s, bits, want_sq, xq, xq2, cuda.threadIdx.x, _TR)


@jit_kernel
def _dac_rows(x, abs_max, bits, bound, want_sq, xq, xq2, scale):
    # the simulator's variant of _dac: a thread per row, its scale and then its conversion
    b = cuda.grid(1)
    if b >= x.shape[0]:
        return
    s = _dac_scale(x, b, abs_max, bound)
    scale[b] = s
    _dac_part(x, b, s, bits, want_sq, xq, xq2, 0, 1)


def dac_convert(x, abs_max, bits, bound, want_sq, xq, xq2, scale) -> None:
    """Twin of :func:`ffsim.crossbar.periphery.dac_convert` (one block per row, one launch; see
    ``BLOCK_REDUCE``)."""
    B = x.shape[0]
    if B:
        kernel, grid, block = (_dac, (B,), (_TR,)) if BLOCK_REDUCE else (_dac_rows, _g1(B), (_T1,))
        _launch(kernel, grid, block, x, bool(abs_max), int(bits), np.float32(bound), bool(want_sq), xq, xq2, scale)


@cuda.jit(device=True)
def _wire_conductance(sums, ref, dg, c0, g_min, i):
    """G_i (µS) of input wire i: dg·sums[i] + c0, plus Σ_c (dg·ref[i, c] + g_min) where ``ref`` has rows."""
    g = dg * sums[i] + c0
    if ref.shape[0] > 0:
        r = 0.0
        for c in range(ref.shape[1]):
            r += dg * np.float64(ref[i, c]) + g_min
        g += r
    return g


@jit_kernel
def _charge(X2, sums, ref, dg, c0, g_min, out):
    # out[0] += Σ_i (Σ_b X2[b, i]) · G_i · 1e-6: a block's threads take _T2[0] inputs (x) and stride over the
    # rows (y); the column sums meet in shared memory, then one atomic per block
    sh = cuda.shared.array(_T2S, np.float64)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    i = cuda.blockIdx.x * _T2[0] + tx
    n = X2.shape[1]
    s = 0.0
    if i < n:
        for b in range(ty, X2.shape[0], _T2[1]):
            s += np.float64(X2[b, i])
    sh[ty, tx] = s
    cuda.syncthreads()
    if ty == 0:
        tot = sh[0, tx]
        for r in range(1, _T2[1]):
            tot += sh[r, tx]
        sh[0, tx] = tot * (_wire_conductance(sums, ref, dg, c0, g_min, i) * 1e-6) if i < n else 0.0
    cuda.syncthreads()
    if tx == 0 and ty == 0:
        acc = 0.0
        for t in range(_T2[0]):
            acc += sh[0, t]
        cuda.atomic.add(out, 0, acc)


@jit_kernel
def _charge_serial(X2, sums, ref, dg, c0, g_min, out):
    # the simulator's variant of _charge (one thread)
    if cuda.grid(1) == 0:
        acc = 0.0
        for i in range(X2.shape[1]):
            s = 0.0
            for b in range(X2.shape[0]):
                s += np.float64(X2[b, i])
            acc += s * (_wire_conductance(sums, ref, dg, c0, g_min, i) * 1e-6)
        out[0] += acc


def read_charge(X2, sums, ref, dg, c0, g_min, out) -> None:
    """GPU-only: add a pass's read charge Σ_b Σ_i x_q²[b, i] · G_i (siemens; ``X2`` the DAC's squared outputs,
    G_i the conductance on input wire i from the devices' sums ``sums``, ``c0`` and, for reference-column
    mappings, ``ref``) to ``out[0]`` (float64, zeroed by the caller), in one launch.  The CPU computes the
    same as ``X2.sum(0) @ G`` with numpy (another order of summation: equal to ~1e-15; the blocks' atomics
    make the last bits vary from run to run)."""
    args = (X2, sums, ref, float(dg), float(c0), float(g_min), out)
    if BLOCK_REDUCE:
        _launch(_charge, (max(1, -(-X2.shape[1] // _T2[0])),), _T2, *args)
    else:
        _launch(_charge_serial, (1,), (1,), *args)


@jit_kernel
def _adc(Z, V, v_on, ZR, gain, off, kappa, tanh_kappa, coltile, noise_on, sigma_adc2, bits_on, bound, inv_lsb, lsb,
         nonlin_on, scale, key, keys, kslot, out):
    j, b = cuda.grid(2)
    T, B, N = Z.shape
    if b >= B or j >= N:
        return
    key = _tape_key(key, keys, kslot)
    sb = scale[b]
    c = j // coltile
    inv_bound = np.float32(np.float32(1.0) / bound)
    acc = np.float32(0.0)
    for t in range(T):
        nz = np.float32(0.0)
        if noise_on:
            nz = normal_box_muller32(key, np.uint64((t * B + b) * N + t * B + b), N, j)
        v = V[t, b, j] if v_on else np.float32(0.0)
        y = _adc_analog(gain[t, j], Z[t, b, j], ZR[t, b, c], off[t, j], v, sigma_adc2, nz)
        if nonlin_on:
            y = _adc_compress(y, kappa[t, j], tanh_kappa[t, j], bound, inv_bound)
        if bits_on:
            y = _adc_quantize(y, bound, inv_lsb, lsb)
        y = np.float32(y * sb)
        acc = y if t == 0 else np.float32(acc + y)
    out[b, j] = acc


def adc_accumulate(Z, V, ZR, gain, off, kappa, tanh_kappa, coltile, noise_on, sigma_adc2, bits_on, bound, inv_lsb,
                   lsb, nonlin_on, scale, key, out) -> None:
    """Twin of :func:`ffsim.crossbar.periphery.adc_accumulate` (a zero-stride ``V`` means no read noise)."""
    T, B, N = Z.shape
    v_on = not _zero_stride(V)
    _launch(_adc, _g2(B, N), _T2, Z, V if v_on else _dummy3(), v_on, ZR, gain, off, kappa, tanh_kappa, int(coltile),
            bool(noise_on), np.float32(sigma_adc2), bool(bits_on), np.float32(bound), np.float32(inv_lsb),
            np.float32(lsb), bool(nonlin_on), scale, np.uint64(key), *_keyed(key, noise_on), out)


# ----------------------------------------------------------------------------------------------
# array caches


@jit_kernel
def _ir_rows(g, col_tile, gmin_n, xscale, Lrow):
    c, i = cuda.grid(2)
    if i >= g.shape[1] or c >= Lrow.shape[2]:
        return
    for p in range(g.shape[0]):
        Lrow[p, i, c] = _row_load(g, p, i, c, col_tile, gmin_n, xscale)


@jit_kernel
def _ir_cols(g, row_tile, gmin_n, xscale, Lcol):
    t, j = cuda.grid(2)
    if j >= g.shape[2] or t >= Lcol.shape[2]:
        return
    for p in range(g.shape[0]):
        Lcol[p, j, t] = _column_load(g[p], t, j, row_tile, gmin_n, xscale)


@jit_kernel
def _ir_ref(ref, row_tile, gmin_n, xscale, Lref):
    c, t = cuda.grid(2)
    if t >= Lref.shape[0] or c >= Lref.shape[1]:
        return
    Lref[t, c] = _column_load(ref, t, c, row_tile, gmin_n, xscale)


def ir_loads(g, ref, row_tile, col_tile, gmin_n, xscale, Lrow, Lcol, Lref) -> None:
    """Twin of :func:`ffsim.crossbar.kernels.ir_loads`."""
    P, n_in, n_out = g.shape
    C, T = Lrow.shape[2], Lcol.shape[2]
    gmin_n, xscale = float(gmin_n), float(xscale)
    _launch(_ir_rows, _g2(n_in, C), _T2, g, int(col_tile), gmin_n, xscale, Lrow)
    _launch(_ir_cols, _g2(n_out, T), _T2, g, int(row_tile), gmin_n, xscale, Lcol)
    if Lref.shape[0] > 0:
        _launch(_ir_ref, _g2(T, C), _T2, ref, int(row_tile), gmin_n, xscale, Lref)


@jit_kernel
def _rebuild_cells(g, wn, ref, row_tile, col_tile, span, gmin_n, xscale, lut, inv_step, t2, kir, noise_on,
                   Lrow, Lcol, Lref, W, S2):
    j, i = cuda.grid(2)
    if i < g.shape[1] and j < g.shape[2]:
        _cache_cell(g, wn, ref, row_tile, col_tile, span, gmin_n, xscale, lut, inv_step, t2, kir, noise_on, Lrow,
                    Lcol, Lref, W, S2, i, j)


@jit_kernel
def _rebuild_rows(g, ref, row_tile, span, gmin_n, xscale, lut, inv_step, t2, kir, noise_on, Lrow, Lref, S2ref,
                  rowsum):
    i = cuda.grid(1)
    P, n_in, n_out = g.shape
    if i >= n_in:
        return
    rs = 0.0
    for j in range(n_out):
        rs += np.float64(g[0, i, j])
        if P == 2:
            rs += np.float64(g[1, i, j])
    rowsum[i] = rs
    if noise_on and P == 1:
        _ref_var_row(ref, row_tile, n_in, span, gmin_n, xscale, lut, inv_step, t2, kir, Lrow, Lref, S2ref, i)


def rebuild_caches(g, wn, ref, row_tile, col_tile, span, gmin_n, xscale, lut, inv_step, t2, kir, noise_on,
                   Lrow, Lcol, Lref, W, S2, S2ref, rowsum) -> None:
    """Twin of :func:`ffsim.crossbar.kernels.rebuild_caches`."""
    P, n_in, n_out = g.shape
    f = float
    _launch(_rebuild_cells, _g2(n_in, n_out), _T2, g, wn, ref, int(row_tile), int(col_tile), f(span), f(gmin_n),
            f(xscale), lut, f(inv_step), f(t2), f(kir), bool(noise_on), Lrow, Lcol, Lref, W, S2)
    _launch(_rebuild_rows, _g1(n_in), _T1, g, ref, int(row_tile), f(span), f(gmin_n), f(xscale), lut, f(inv_step),
            f(t2), f(kir), bool(noise_on), Lrow, Lref, S2ref, rowsum)


@jit_kernel
def _colsums(g, out):
    j = cuda.grid(1)
    if j < g.shape[2]:
        out[j] = _column_total(g, j)


def column_sums(g, out) -> None:
    """Twin of :func:`ffsim.crossbar.kernels.column_sums`."""
    _launch(_colsums, _g1(g.shape[2]), _T1, g, out)


# ----------------------------------------------------------------------------------------------
# device updates


@jit_kernel
def _program(Wn, mask, g, gmax, stuck, wn, wn_on, nu, drift_on, nu_prm, prog_poly_n, levels, gref0, span, gmin_n,
             xscale, key, cache_on, Wc, S2c, ref, coltile, lut, inv_step, t2, rowsum, rows_touched, total):
    j, i = cuda.grid(2)
    if i >= g.shape[1] or j >= g.shape[2] or not mask[i, j]:
        return
    delta = _program_cell(Wn, g, gmax, stuck, wn, wn_on, nu, drift_on, nu_prm, prog_poly_n, levels, gref0, span,
                          gmin_n, xscale, key, cache_on, Wc, S2c, ref, coltile, lut, inv_step, t2, i, j, 0.0)
    cuda.atomic.add(rowsum, i, delta)
    rows_touched[i] = True
    cuda.atomic.add(total, 0, 1)


def program_masked(Wn, mask, g, gmax, stuck, wn, nu, drift_on, nu_prm, prog_poly_n, levels, gref0, span, gmin_n,
                   xscale, key, cache_on, Wc, S2c, ref, coltile, lut, inv_step, t2, rowsum, rows_touched) -> int:
    """Twin of :func:`ffsim.devices.program.program_masked`; returns the number of cells written."""
    _no_capture("program_masked")
    P, n_in, n_out = g.shape
    total = _counter("program_masked")
    f = float
    _launch(_program, _g2(n_in, n_out), _T2, Wn, mask, g, gmax, stuck, wn, not _zero_stride(wn), nu, bool(drift_on),
            nu_prm, prog_poly_n, int(levels), f(gref0), f(span), f(gmin_n), f(xscale), np.uint64(key), bool(cache_on),
            Wc, S2c, ref, int(coltile), lut, f(inv_step), f(t2), rowsum, rows_touched, total.array())
    return total.read()


@cuda.jit(device=True)
def _listed_cell(cells, k, n_out):
    """(i, j) of the cell that entry ``k`` of a list names (rows of ``n_out`` cells)."""
    c = np.int64(cells[k])
    i = c // n_out
    return i, c - i * n_out


@cuda.jit(device=True)
def _add_to_sums(rowsum, total, i, delta, n):
    """A cell's change of its row's conductance sum and its count, added by atomics (where not zero)."""
    if delta != 0.0:
        cuda.atomic.add(rowsum, i, delta)
    if n != 0:
        cuda.atomic.add(total, 0, n)


@cuda.jit(device=True)
def _pulse_agg_cell(Etot, Enet, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode, key, cache_on, Wc, S2c, ref,
                    coltile, span, gmin_n, xscale, lut, inv_step, t2, i, j):
    """Cell (i, j) of :func:`_pulse_agg`: its pulses; returns (its devices' conductance change, pulses)."""
    n = _pulse_count(Etot, key, i, j)
    if n == 0:
        return 0.0, 0
    return _pulse_train(n, Etot, Enet, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode, key, cache_on, Wc, S2c, ref,
                        coltile, span, gmin_n, xscale, lut, inv_step, t2, i, j, 0.0)


@jit_kernel
def _pulse_agg(Etot, Enet, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode, key, keys, kslot, cache_on, Wc, S2c, ref,
               coltile, span, gmin_n, xscale, lut, inv_step, t2, rowsum, total):
    # a thread per cell, its row-sum change and pulses added by atomics.  Summing them per block first (a
    # shared-memory tree) made an FF step's updates 16 % slower on an H200 (most cells have no pulse there
    # and the block waited for its slowest), per warp (shuffles) no faster (BENCHMARKS.md)
    j, i = cuda.grid(2)
    key = _tape_key(key, keys, kslot)
    if i < Etot.shape[0] and j < Etot.shape[1]:
        delta, pulses = _pulse_agg_cell(Etot, Enet, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode, key, cache_on,
                                        Wc, S2c, ref, coltile, span, gmin_n, xscale, lut, inv_step, t2, i, j)
        _add_to_sums(rowsum, total, i, delta, pulses)


def pulse_aggregate(Etot, Enet, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode, key, cache_on, Wc, S2c, ref,
                    coltile, span, gmin_n, xscale, lut, inv_step, t2, rowsum, total=None):
    """Twin of :func:`ffsim.devices.pulse.pulse_aggregate`; returns the number of device pulses, or, given
    ``total`` (a 1-element int64 device array), adds it there and returns ``total`` without reading it."""
    n_in, n_out = Etot.shape
    counter = _counter("pulse_aggregate") if total is None else None
    f = float
    keys, kslot = _keyed(key)
    args = (Etot, Enet, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, f(R), int(mode), np.uint64(key), keys, kslot,
            bool(cache_on), Wc, S2c, ref, int(coltile), f(span), f(gmin_n), f(xscale), lut, f(inv_step), f(t2), rowsum,
            counter.array() if counter else total)
    if COMPACT:
        count, cells, counts = _zero_count(), _device_empty(n_in * n_out, _cell_dtype(n_in * n_out)), \
            _device_empty(n_in * n_out, np.int32)
        _launch(_pulse_pick, _g2(n_in, n_out), _T2, Etot, np.uint64(key), keys, kslot, count, cells, counts)
        _launch(_pulse_listed, _list_grid(n_in * n_out), (_T1,), count, cells, counts, *args)
    else:
        _launch(_pulse_agg, _g2(n_in, n_out), _T2, *args)
    return counter.read() if counter else total


# Sparse updates in two launches.  After its first dozen mini-batches an FF step's pulse updates pulse
# 0-2 % of a layer's cells, up to hundreds of times each (784-2000x4 on pcm: benchmarks/update_density.py,
# BENCHMARKS.md), and a refresh resets only the pairs above its threshold.  With a thread per cell, a
# warp with one busy cell runs as long as that cell while its other lanes idle.  COMPACT
# (the default; ``FFSIM_GPU_COMPACT=0`` for the single pass) first lists the cells to change -- a thread
# per cell draws the cell's pulse count (the same draw) and appends (cell, count), one atomic per block
# on a GPU (a shared-memory counter; ``BLOCK_REDUCE``) -- and then a thread per listed cell changes it
# (a grid-stride loop over the list, whose length stays on the device).  Each cell draws the same
# numbers either way, so the states are equal to the single pass's and to the CPU's.
COMPACT = os.environ.get("FFSIM_GPU_COMPACT", "1") != "0"
_LIST_BLOCKS = 2048  # blocks of _T1 threads that walk a list (an H100/H200 holds 132 SMs x 16 such blocks)


def _cell_dtype(n_cells: int):
    return np.int32 if n_cells < 2**31 else np.int64


def _list_grid(n: int) -> tuple[int]:
    return (max(1, min(-(-n // _T1), _LIST_BLOCKS)),)


def _device_empty(n: int, dtype):
    """An uninitialized 1-D device array (CuPy's pool on a GPU, a numba array in the simulator)."""
    if not SIMULATED and _cupy_type():
        import cupy

        return cupy.empty(n, dtype=dtype)
    return cuda.device_array(n, dtype=dtype)


_zero_blocks = threading.local()


def _zero_count():
    """A zeroed 1-element int64 device array for a list's length, cut from a zeroed block of 256 (one
    allocation and fill per 256 lists; each element is used once, so no launch waits for a reset)."""
    if CAPTURE is not None:
        return CAPTURE.xp.zeros(1, np.int64)
    blk, nxt = getattr(_zero_blocks, "cur", (None, 0))
    if blk is None or nxt == blk.shape[0]:
        blk, nxt = _device_zeros((256,), np.int64), 0
    _zero_blocks.cur = (blk, nxt + 1)
    return blk[nxt:nxt + 1]


@cuda.jit(device=True)
def _list_slot(pick, count, sh):
    """The list index of this thread's entry, -1 where it appends none.  Every thread of the block calls
    it: with ``BLOCK_REDUCE`` the block counts its entries in shared memory and reserves them by one global
    atomic; otherwise one atomic per entry (the simulator, whose barriers are slow)."""
    if BLOCK_REDUCE:
        first = cuda.threadIdx.x == 0 and cuda.threadIdx.y == 0
        if first:
            sh[0] = 0
        cuda.syncthreads()
        k = np.int64(0)
        if pick:
            k = cuda.atomic.add(sh, 0, np.int64(1))
        cuda.syncthreads()
        if first:
            sh[1] = cuda.atomic.add(count, 0, sh[0])
        cuda.syncthreads()
        if pick:
            return sh[1] + k
        return np.int64(-1)
    if pick:
        return np.int64(cuda.atomic.add(count, 0, np.int64(1)))
    return np.int64(-1)


@jit_kernel
def _pulse_pick(Etot, key, keys, kslot, count, cells, counts):
    sh = cuda.shared.array(2, np.int64)
    j, i = cuda.grid(2)
    key = _tape_key(key, keys, kslot)
    n = 0
    if i < Etot.shape[0] and j < Etot.shape[1]:
        n = _pulse_count(Etot, key, i, j)
    k = _list_slot(n > 0, count, sh)
    if 0 <= k < cells.shape[0]:  # (a launch replayed on a list already filled writes nothing)
        cells[k] = i * Etot.shape[1] + j
        counts[k] = n


@jit_kernel
def _pulse_listed(count, cells, counts, Etot, Enet, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode, key, keys,
                  kslot, cache_on, Wc, S2c, ref, coltile, span, gmin_n, xscale, lut, inv_step, t2, rowsum, total):
    n_out = Etot.shape[1]
    key = _tape_key(key, keys, kslot)
    m = _min(count[0], cells.shape[0])
    k = cuda.grid(1)
    while k < m:
        i, j = _listed_cell(cells, k, n_out)
        delta, pulses = _pulse_train(np.int64(counts[k]), Etot, Enet, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R,
                                     mode, key, cache_on, Wc, S2c, ref, coltile, span, gmin_n, xscale, lut, inv_step,
                                     t2, i, j, 0.0)
        _add_to_sums(rowsum, total, i, delta, pulses)
        k += cuda.gridsize(1)


_factor = cuda.jit(device=True)(_pulse_cpu._factor_py)


@jit_kernel
def _plan(m, lr, dw_weight, managed, max_pulses, coef, flag, slots):
    # a thread per case b: Crossbar._plan_trains's float64 numpy expressions, operation by operation
    b = cuda.grid(1)
    if b >= m.shape[1]:
        return
    xm = np.float64(m[0, b])
    dm = np.float64(m[1, b])
    finite = math.isfinite(xm) and math.isfinite(dm)
    if not finite:
        flag[0] = 1.0
    BL = np.int64(0)
    cx = 0.0
    cd = 0.0
    if finite and xm > 0.0 and dm > 0.0:
        if managed:  # clip(ceil(need), 1, max_pulses), clipped before the ceil (no overflow of the int)
            need = lr * xm * dm / dw_weight
            BL = np.int64(math.ceil(_min(need, np.float64(max_pulses))))
            BL = _max(BL, np.int64(1))
        else:
            BL = np.int64(max_pulses)
        k = lr / (dw_weight * np.float64(BL))
        if managed:
            cx = math.sqrt(k * dm / xm)
            cd = math.sqrt(k * xm / dm)
        else:
            cx = math.sqrt(k)
            cd = cx
        cuda.atomic.add(slots, 0, BL)
    coef[0, b] = np.float32(cx)
    coef[1, b] = np.float32(cd)
    coef[2, b] = _sqrtf(np.float32(BL))


def plan_trains(m, lr, dw_weight, managed, max_pulses, coef, flag, slots) -> None:
    """An update's trains planned on the device from its per-case maxima ``m`` (2 × B): ``coef`` (3 × B
    float32: cx, cd, √BL) equal to the host's ``Crossbar._plan_trains``; the trains' lengths summed into
    ``slots`` (1-element int64); ``flag[0] = 1.0`` (float64) where a maximum is not finite (that case gets
    no train).  GPU only: the CPU plans on the host."""
    B = m.shape[1]
    _launch(_plan, _g1(B), (_T1,), m, float(lr), float(dw_weight), bool(managed), int(max_pulses), coef, flag, slots)


@jit_kernel
def _maxima(X, D, out):
    # one block per row of X (blocks 0..B-1) and of D (B..2B-1)
    sh = cuda.shared.array(_TR, np.float32)
    k = cuda.blockIdx.x
    B = X.shape[0]
    if k < B:
        m = _row_abs_max(X, k, True, sh)
        if cuda.threadIdx.x == 0:
            out[0, k] = m
    else:
        m = _row_abs_max(D, k - B, True, sh)
        if cuda.threadIdx.x == 0:
            out[1, k - B] = m


_abs_max = cuda.jit(device=True)(_pulse_cpu._abs_max_py)


@jit_kernel
def _maxima_rows(X, D, out):
    # the simulator's variant of _maxima (a thread per row, the CPU kernel's body)
    k = cuda.grid(1)
    B = X.shape[0]
    if k < B:
        out[0, k] = _abs_max(X, k)
    elif k < 2 * B:
        out[1, k - B] = _abs_max(D, k - B)


def pulse_maxima(X, D, out) -> None:
    """Twin of :func:`ffsim.devices.pulse.pulse_maxima` (one block per row; see ``BLOCK_REDUCE``)."""
    B = X.shape[0]
    if not B:
        return
    if BLOCK_REDUCE:
        _launch(_maxima, (2 * B,), (_TR,), X, D, out)
    else:
        _launch(_maxima_rows, _g1(2 * B), (_T1,), X, D, out)


@jit_kernel
def _factors(X, D, coef, A, As, C, Cs):
    j, b = cuda.grid(2)
    if b >= X.shape[0]:
        return
    if j < X.shape[1]:
        a, s = _factor(X[b, j], coef[0, b], coef[2, b])
        A[b, j] = a
        As[b, j] = s
    if j < D.shape[1]:
        a, s = _factor(D[b, j], coef[1, b], coef[2, b])
        C[b, j] = a
        Cs[b, j] = s


def pulse_factors(X, D, coef, A, As, C, Cs) -> None:
    """Twin of :func:`ffsim.devices.pulse.pulse_factors` (one thread per entry)."""
    _launch(_factors, _g2(X.shape[0], max(X.shape[1], D.shape[1])), _T2, X, D, coef, A, As, C, Cs)


@jit_kernel
def _fill_trains(P, BL, key, out):
    i, b = cuda.grid(2)
    if b < P.shape[0] and i < P.shape[1]:
        out[b, i] = _train_bits(P, BL, key, b, i)


@jit_kernel
def _pulse_sample(b, rows, cols, Sr, Sc, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode, key, cache_on, Wc, S2c,
                  ref, coltile, span, gmin_n, xscale, lut, inv_step, t2, rowsum, total):
    j, i = cuda.grid(2)
    n_in = rows.shape[1]
    n_out = cols.shape[1]
    if i >= n_in or j >= n_out:
        return
    n = _popcount64(rows[b, i] & cols[b, j])
    if n == 0:
        return
    kb = mix64(np.uint64(key) + np.uint64(b + 1) * _G2)
    d = 1 if Sr[b, i] * Sc[b, j] > 0 else -1
    delta, pulses = _exact_cell(n, d, kb, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode, cache_on, Wc, S2c, ref,
                                coltile, span, gmin_n, xscale, lut, inv_step, t2, i, j, 0.0)
    cuda.atomic.add(rowsum, i, delta)
    cuda.atomic.add(total, 0, pulses)


def pulse_exact(Pr, Pc, Sr, Sc, BL, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm, R, mode, key, cache_on, Wc, S2c, ref,
                coltile, span, gmin_n, xscale, lut, inv_step, t2, rowsum) -> int:
    """Twin of :func:`ffsim.devices.pulse.pulse_exact` (samples one after the other, one launch each)."""
    _no_capture("pulse_exact")
    from ffsim.devices.rng import mix64 as mix64_host

    B, n_in = Pr.shape
    n_out = Pc.shape[1]
    key = np.uint64(key)
    rows = cuda.device_array((B, n_in), dtype=np.uint64)
    cols = cuda.device_array((B, n_out), dtype=np.uint64)
    _launch(_fill_trains, _g2(B, n_in), _T2, Pr, BL, key, rows)
    _launch(_fill_trains, _g2(B, n_out), _T2, Pc, BL, np.uint64(mix64_host(key ^ np.uint64(0x243F6A8885A308D3))), cols)
    total = _counter("pulse_exact")
    f = float
    for b in range(B):
        _launch(_pulse_sample, _g2(n_in, n_out), _T2, b, rows, cols, Sr, Sc, g, gmax, dwu, dwd, gu, gd, stuck, wn, prm,
                f(R), int(mode), key, bool(cache_on), Wc, S2c, ref, int(coltile), f(span), f(gmin_n), f(xscale), lut,
                f(inv_step), f(t2), rowsum, total.array())
    return total.read()


@jit_kernel
def _refresh(g, wn, wn_on, gmax, stuck, nu, drift_on, nu_prm, prog_poly_n, levels, thr, reset_n, reset_std_n, gmin_n,
             xscale, lut, inv_step, t_factor, key, keys, kslot, cache_on, Wc, S2c, ref, coltile, span, t2, rowsum,
             total):
    # a thread per cell (atomics, as _pulse_agg)
    j, i = cuda.grid(2)
    key = _tape_key(key, keys, kslot)
    if i < g.shape[1] and j < g.shape[2]:
        delta, n = _refresh_cell(g, wn, wn_on, gmax, stuck, nu, drift_on, nu_prm, prog_poly_n, levels, thr, reset_n,
                                 reset_std_n, gmin_n, xscale, lut, inv_step, t_factor, key, cache_on, Wc, S2c, ref,
                                 coltile, span, t2, i, j)
        _add_to_sums(rowsum, total, i, delta, n)


def refresh_pairs(g, wn, gmax, stuck, nu, drift_on, nu_prm, prog_poly_n, levels, thr, reset_n, reset_std_n, gmin_n,
                  xscale, lut, inv_step, t_factor, key, cache_on, Wc, S2c, ref, coltile, span, t2, rowsum, total=None):
    """Twin of :func:`ffsim.devices.refresh.refresh_pairs`; returns the number of pairs refreshed, or, given
    ``total`` (a 1-element int64 device array), adds it there and returns ``total`` without reading it."""
    n_in, n_out = g.shape[1], g.shape[2]
    counter = _counter("refresh_pairs") if total is None else None
    f = float
    wn_on = wn.shape[0] == 2 and not _zero_stride(wn)
    args = (g, wn, wn_on, gmax, stuck, nu, bool(drift_on), nu_prm, prog_poly_n, int(levels), f(thr), f(reset_n),
            f(reset_std_n), f(gmin_n), f(xscale), lut, f(inv_step), f(t_factor), np.uint64(key), *_keyed(key),
            bool(cache_on), Wc, S2c, ref, int(coltile), f(span), f(t2), rowsum, counter.array() if counter else total)
    if COMPACT:  # the pairs above the threshold listed first (see COMPACT)
        count, cells = _zero_count(), _device_empty(n_in * n_out, _cell_dtype(n_in * n_out))
        _launch(_refresh_pick, _g2(n_in, n_out), _T2, g, stuck, f(thr), count, cells)
        _launch(_refresh_listed, _list_grid(n_in * n_out), (_T1,), count, cells, *args)
    else:
        _launch(_refresh, _g2(n_in, n_out), _T2, *args)
    return counter.read() if counter else total


@jit_kernel
def _refresh_pick(g, stuck, thr, count, cells):
    sh = cuda.shared.array(2, np.int64)
    j, i = cuda.grid(2)
    pick = False
    if i < g.shape[1] and j < g.shape[2]:  # the cells that _refresh_cell does not return from at once
        pick = stuck[0, i, j] == 0 and stuck[1, i, j] == 0 and not (g[0, i, j] <= thr and g[1, i, j] <= thr)
    k = _list_slot(pick, count, sh)
    if 0 <= k < cells.shape[0]:
        cells[k] = i * g.shape[2] + j


@jit_kernel
def _refresh_listed(count, cells, g, wn, wn_on, gmax, stuck, nu, drift_on, nu_prm, prog_poly_n, levels, thr, reset_n,
                    reset_std_n, gmin_n, xscale, lut, inv_step, t_factor, key, keys, kslot, cache_on, Wc, S2c, ref,
                    coltile, span, t2, rowsum, total):
    n_out = g.shape[2]
    key = _tape_key(key, keys, kslot)
    m = _min(count[0], cells.shape[0])
    k = cuda.grid(1)
    while k < m:
        i, j = _listed_cell(cells, k, n_out)
        delta, n = _refresh_cell(g, wn, wn_on, gmax, stuck, nu, drift_on, nu_prm, prog_poly_n, levels, thr, reset_n,
                                 reset_std_n, gmin_n, xscale, lut, inv_step, t_factor, key, cache_on, Wc, S2c, ref,
                                 coltile, span, t2, i, j)
        _add_to_sums(rowsum, total, i, delta, n)
        k += cuda.gridsize(1)


def namespace() -> SimpleNamespace:
    """The launchers under the CPU kernels' names (what :attr:`ffsim.backend.Backend.kernels` returns)."""
    from ffsim.ff.kernels import FF_KERNELS
    from ffsim.gpu import ff_kernels

    return SimpleNamespace(dac_convert=dac_convert, adc_accumulate=adc_accumulate, rebuild_caches=rebuild_caches,
                           ir_loads=ir_loads, column_sums=column_sums, program_masked=program_masked,
                           pulse_aggregate=pulse_aggregate, pulse_exact=pulse_exact, refresh_pairs=refresh_pairs,
                           pulse_maxima=pulse_maxima, pulse_factors=pulse_factors, smoothed_step=smoothed_step,
                           read_charge=read_charge, plan_trains=plan_trains,
                           **{n: getattr(ff_kernels, n) for n in FF_KERNELS})


# ----------------------------------------------------------------------------------------------
# engine


@jit_kernel
def _smoothed(W, grad, g, momentum, a, lr, weight_cost):
    j, i = cuda.grid(2)
    if i < W.shape[0] and j < W.shape[1]:
        _smoothed_cell(W, grad, g, momentum, a, lr, weight_cost, i, j)


def smoothed_step(W, grad, g, momentum, g_scale, lr, weight_cost) -> None:
    """Twin of :func:`ffsim.ff.weights._smoothed_step` (Hinton's smoothed gradient step, fused)."""
    n_in, n_out = W.shape
    a = (1 - np.float64(np.float32(momentum))) * np.float64(np.float32(g_scale))
    _launch(_smoothed, _g2(n_in, n_out), _T2, W, grad, g, np.float32(momentum), a, np.float32(lr),
            np.float32(weight_cost))
