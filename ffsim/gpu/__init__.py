"""numba-cuda twins of the Numba CPU kernels (device layer and crossbar periphery).

Imported only by the GPU backend (:func:`ffsim.backend.select_backend`), never on the CPU path.
:mod:`ffsim.gpu.rng` holds the device functions of the counter-based RNG; :mod:`ffsim.gpu.kernels` the
kernels and their launchers, with the signatures of the CPU kernels.
"""
