"""Backpropagation baseline on the same simulated chips (ideal, in-situ and model-based modes)."""

from ffsim.bp.mlp import BPNetwork

__all__ = ["BPNetwork"]
