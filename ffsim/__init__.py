"""ffsim: a simulator of analog and neuromorphic hardware for Forward-Forward training."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ffsim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

from ffsim.crossbar import Crossbar, OpCounter
from ffsim.profiles import HardwareProfile, ProfileError, list_profiles, load_profile

__all__ = ["Crossbar", "HardwareProfile", "OpCounter", "ProfileError", "__version__", "list_profiles", "load_profile"]
