"""Mortal computation: every chip is unique; weights copied between chips degrade, distillation moves
the function (Hinton 2022, §9)."""

from ffsim.mortal.run import evaluate_probs, run_mortal
from ffsim.mortal.transfer import (
    TeacherOracle,
    agreement,
    agreement_on_mistakes,
    copy_weights,
    distill,
    error_rate,
    mean_kl,
    soften,
    train_on,
    transfer_images,
)

__all__ = ["TeacherOracle", "agreement", "agreement_on_mistakes", "copy_weights", "distill", "error_rate",
           "evaluate_probs", "mean_kl", "run_mortal", "soften", "train_on", "transfer_images"]
