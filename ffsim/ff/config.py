"""Configuration of a Forward-Forward run: every hyper-parameter with its default and allowed values.

Defaults follow Hinton's released MATLAB code (``ffnew.m``) for the supervised MNIST network:
learning rate 0.01 (in-situ: 0.0023, see :func:`default_lr`; softmax head 0.1), weight cost 0.001 (head
0.003), gradient smoothing 0.9 over mini-batches, mini-batch 100, peer normalization 0.03, temperature 1,
threshold = layer width, RMS normalization, label strength 1 in the first 10 pixels, neutral label 0.1,
hard negatives from the model's own predictions, goodness and softmax read from every hidden layer except
the first, learning rate constant for the first half of the epochs and then decreasing linearly to zero.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ffsim.ff.goodness import GOODNESS_KINDS, NORMS
from ffsim.ff.weights import MODES

__all__ = ["FFConfig", "MODELS", "default_lr"]

MODELS = ("ff", "ff-unsupervised", "ff-recurrent", "bp")
BP_MODES = ("ideal", "insitu", "model")
HINTON_LR = 0.01
BP_LR = 0.5


def default_lr(mode: str, momentum: float = 0.9, model: str = "ff") -> float:
    """Hinton's 0.01 for FF (0.5 for the BP baseline: two epochs on 20k MNIST images gave 7.4 %, 5.3 % and
    4.5 % test error at 0.1, 0.3 and 1.0), except in-situ, where the chip applies every mini-batch's raw
    gradient.

    Hinton's optimizer steps along a gradient smoothed over mini-batches (g_s ← m g_s + (1 − m) g), whose
    mini-batch noise has sqrt((1 − m)/(1 + m)) = 0.23 times the standard deviation of one mini-batch's
    gradient (m = 0.9).  An in-situ chip has no memory for that average, so its default learning rate is
    scaled by the same factor, giving steps of the same noise level: 0.0023.  (Measured on 784-500x3,
    two epochs on 20k MNIST cases: float weights updated without smoothing diverge at 0.01 and learn at
    0.003; see EXPERIMENTS.md.)
    """
    base = BP_LR if model == "bp" else HINTON_LR
    if mode in ("insitu", "model"):
        return round(base * math.sqrt((1 - momentum) / (1 + momentum)), 5)
    return base


@dataclass
class FFConfig:
    """All settings of a run (JSON-able; recorded in every result)."""

    model: str = "ff"
    layers: tuple[int, ...] = (1000, 1000, 1000)
    epochs: int = 100
    batch_size: int = 100
    lr: float | None = None
    lr_head: float = 0.1
    weight_cost: float = 0.001
    weight_cost_head: float = 0.003
    momentum: float = 0.9
    peer_norm: float = 0.03
    peer_decay: float = 0.9
    goodness: str = "sumsq"
    threshold: float | None = None
    temperature: float = 1.0
    norm: str = "rms"
    negatives: str = "hard"
    label_mode: str = "overwrite"
    label_strength: float = 1.0
    min_level: int = 1
    head_layers: int | None = None
    mode: str = "ideal"
    profile: str = "ideal"
    w_max_scale: float = 4.0
    hybrid_threshold: float = 0.02
    pulse_mode: str = "aggregate"
    seed: int = 0
    fab_seed: int = 1
    validation: int = 0
    eval_train_cases: int = 10000
    eval_every: int = 1
    recurrent_iters: int = 8
    recurrent_damping: float = 0.3
    recurrent_eval_iters: tuple[int, ...] = (3, 4, 5)
    profile_overrides: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def hardware(self):
        """The run's hardware profile: ``profile`` with ``profile_overrides`` applied (nested dicts, e.g.
        ``{"adc": {"bits": 6}}``), validated."""
        from ffsim.profiles import load_profile

        base = load_profile(self.profile)
        return base.replace(**self.profile_overrides) if self.profile_overrides else base

    def __post_init__(self) -> None:
        if self.lr is None:
            self.lr = default_lr(self.mode, self.momentum, self.model)
        self.layers = tuple(int(v) for v in self.layers)
        self.recurrent_eval_iters = tuple(int(v) for v in self.recurrent_eval_iters)
        problems = []

        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                problems.append(f"{name} = {getattr(self, name)!r}: {allowed}")

        need(self.model in MODELS, "model", f"must be one of {MODELS}")
        need(len(self.layers) >= 1 and all(v >= 1 for v in self.layers), "layers", "must be positive widths")
        need(self.epochs >= 1, "epochs", "must be >= 1")
        need(self.batch_size >= 1, "batch_size", "must be >= 1")
        for name in ("lr", "lr_head", "weight_cost", "weight_cost_head", "peer_norm", "temperature",
                     "label_strength", "w_max_scale", "hybrid_threshold"):
            v = getattr(self, name)
            need(isinstance(v, int | float) and math.isfinite(v) and v >= 0, name, "must be a finite number >= 0")
        need(self.temperature > 0, "temperature", "must be > 0")
        need(self.w_max_scale > 0, "w_max_scale", "must be > 0")
        need(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        need(0 <= self.peer_decay < 1, "peer_decay", "must be in [0, 1)")
        need(self.goodness in GOODNESS_KINDS, "goodness", f"must be one of {GOODNESS_KINDS}")
        need(self.threshold is None or math.isfinite(self.threshold), "threshold", "must be finite or null")
        need(self.norm in NORMS, "norm", f"must be one of {NORMS}")
        need(self.negatives in ("hard", "uniform"), "negatives", "must be 'hard' or 'uniform'")
        need(self.label_mode in ("overwrite", "concat"), "label_mode", "must be 'overwrite' or 'concat'")
        if self.model == "bp":
            need(self.mode in BP_MODES, "mode", f"must be one of {BP_MODES} for model 'bp'")
        else:
            need(self.mode in MODES, "mode", f"must be one of {MODES}")
        need(self.pulse_mode in ("aggregate", "exact"), "pulse_mode", "must be 'aggregate' or 'exact'")
        if self.model != "bp":
            need(0 <= self.min_level < len(self.layers), "min_level",
                 f"must be a hidden-layer index in [0, {len(self.layers) - 1}]")
        need(self.validation >= 0, "validation", "must be >= 0")
        need(self.eval_train_cases >= 0, "eval_train_cases", "must be >= 0")
        need(self.eval_every >= 1, "eval_every", "must be >= 1")
        need(self.recurrent_iters >= 1, "recurrent_iters", "must be >= 1")
        need(0 <= self.recurrent_damping < 1, "recurrent_damping", "must be in [0, 1)")
        need(all(1 <= t <= self.recurrent_iters for t in self.recurrent_eval_iters), "recurrent_eval_iters",
             f"must be iterations in 1..recurrent_iters ({self.recurrent_iters})")
        if self.head_layers is not None:
            need(1 <= self.head_layers <= len(self.layers), "head_layers",
                 f"must be in 1..{len(self.layers)} or null")
        if problems:
            raise ValueError("invalid FF configuration:\n  - " + "\n  - ".join(problems))

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        d["recurrent_eval_iters"] = list(self.recurrent_eval_iters)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FFConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"invalid FF configuration: unknown keys {unknown}")
        return cls(**d)
