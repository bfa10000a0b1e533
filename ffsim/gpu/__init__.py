"""numba-cuda twins of the Numba CPU kernels (device layer, crossbar periphery, FF engine).

Imported only by the GPU backend (:func:`ffsim.backend.select_backend`), never on the CPU path.
:mod:`ffsim.gpu.rng` holds the device functions of the counter-based RNG; :mod:`ffsim.gpu.kernels` the
crossbar kernels and their launchers, with the signatures of the CPU kernels; :mod:`ffsim.gpu.ff_kernels`
the twins of the FF engine's fused per-row kernels (:mod:`ffsim.ff.kernels`); :mod:`ffsim.gpu.twin` compiles the
CPU helpers' bodies as device functions (the physics is written once).  :mod:`ffsim.gpu.standin` is a
numpy stand-in for CuPy's arrays, for checking the GPU backend's host code without a GPU (counts, emulated
graphs, host/device discipline).
"""


def settings() -> dict:
    """The GPU backend's settings in force (the ``FFSIM_GPU_*`` environment variables, or the modules' flags
    as a benchmark set them): what a run records.  ``tf32`` changes results (the read-noise variance and the
    expected coincidences from inputs with 10 mantissa bits); the others change speed only."""
    from ffsim.gpu import blas, graph, kernels, streams

    return {"tf32": blas.TF32, "direct_blas": blas.ENABLED, "graph": graph.ENABLED, "compact": kernels.COMPACT,
            "streams": streams.ENABLED, "fast_launch": kernels.FAST_LAUNCH}
