"""Crossbar arrays: weight matrices on fabricated chips, with tiles, DAC/ADC periphery and op counters."""

from ffsim.crossbar.crossbar import Crossbar, tile_bounds
from ffsim.crossbar.ops import OpCounter

__all__ = ["Crossbar", "OpCounter", "tile_bounds"]
