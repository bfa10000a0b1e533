"""Physics of memory devices: state-dependent noise, drift, pulse response, and their Numba kernels."""

from ffsim.devices import physics, pulse, rng

__all__ = ["physics", "pulse", "rng"]
