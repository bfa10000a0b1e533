"""Forward-Forward engine: layers on simulated chips trained with forward passes only."""

from ffsim.ff.config import FFConfig
from ffsim.ff.trainer import TrainingDiverged, train

__all__ = ["FFConfig", "TrainingDiverged", "train"]
