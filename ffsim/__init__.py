"""ffsim: a simulator of analog and neuromorphic hardware for Forward-Forward training."""

from ffsim._runtime import configure_threads

configure_threads()

from ffsim._numba_cache import install as _install_cache_stamps  # noqa: E402

_install_cache_stamps()  # (before any kernel is defined: see ffsim._numba_cache)

from importlib.metadata import PackageNotFoundError, version  # noqa: E402

try:
    __version__ = version("ffsim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

from ffsim.crossbar import Crossbar, OpCounter  # noqa: E402
from ffsim.profiles import HardwareProfile, ProfileError, list_profiles, load_profile  # noqa: E402

__all__ = ["Crossbar", "HardwareProfile", "OpCounter", "ProfileError", "__version__", "list_profiles", "load_profile"]
