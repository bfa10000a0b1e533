"""Crossbar arrays: weight matrices on fabricated chips, with tiles, DAC/ADC periphery and op counters."""

from ffsim.crossbar.crossbar import Crossbar, NonFiniteInput, tile_bounds
from ffsim.crossbar.ops import OpCounter

__all__ = ["Crossbar", "NonFiniteInput", "OpCounter", "tile_bounds"]
