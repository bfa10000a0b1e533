"""Goodness, the real/fake probability, its loss, and activity normalization (Hinton 2022).

A layer's goodness G is computed from its ReLU activities *before* they are normalized for the next
layer.  The probability that a case is positive (real) is p = σ((G − θ)/T).  The layer ascends
log p on positive cases and log(1 − p) on negative ones; the loss reported is the numerically stable
softplus form  L = softplus(∓(G − θ)/T), which does not overflow for large |G − θ|.

Goodness functions (``kind``):

* ``"sumsq"`` (default): G = Σ_j y_j², threshold θ = number of units (Hinton's code, with RMS-normalized
  inputs);
* ``"meansq"``: G = mean_j y_j², θ = 1;
* ``"neg_sumsq"``: G = −Σ_j y_j², θ = −number of units (positive data aims for *low* activity).

The derivative used for learning follows Hinton's code: dC/dz_j = (1 − p)·y_j for positive and −p·y_j
for negative cases, with dG/dy scaled to y (the constant factor 2/T of Σy², and 1/N for ``meansq``, are
absorbed into the learning rate; the sign flips for ``neg_sumsq``).  C is the quantity ascended.

Every function takes the array module ``xp`` of its arguments (numpy, the default, or the GPU backend's
CuPy): the same code runs on the host and on the device.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GOODNESS_KINDS", "default_threshold", "goodness", "goodness_grad", "log_sigmoid_loss",
           "normalize", "sigmoid", "sumsq"]

GOODNESS_KINDS = ("sumsq", "meansq", "neg_sumsq")
NORMS = ("rms", "l2")


def sumsq(y: np.ndarray, xp=np) -> np.ndarray:
    """Σ_j y_j² per row (float32 accumulation, float64 result)."""
    return xp.einsum("ij,ij->i", y, y).astype(np.float64)


def goodness(y: np.ndarray, kind: str = "sumsq", ss: np.ndarray | None = None, xp=np) -> np.ndarray:
    """Goodness of each row of ReLU activities ``y`` (batch × units); ``ss`` reuses Σy² if known."""
    if ss is None:
        ss = sumsq(y, xp)
    if kind == "sumsq":
        return ss
    if kind == "meansq":
        return ss / y.shape[1]
    if kind == "neg_sumsq":
        return -ss
    raise ValueError(f"goodness kind must be one of {GOODNESS_KINDS} (got {kind!r})")


def default_threshold(kind: str, units: int) -> float:
    """θ: the layer width for ``sumsq``, 1 for ``meansq``, minus the width for ``neg_sumsq``."""
    return {"sumsq": float(units), "meansq": 1.0, "neg_sumsq": -float(units)}[kind]


def sigmoid(z: np.ndarray, xp=np) -> np.ndarray:
    """Logistic function without overflow warnings."""
    z = xp.asarray(z, dtype=np.float64)
    if xp is not np:  # no boolean indexing on the device (it synchronizes); the same values elementwise
        e = xp.exp(-xp.abs(z))
        return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def softplus(z: np.ndarray, xp=np) -> np.ndarray:
    """log(1 + e^z), stable for any z."""
    z = xp.asarray(z, dtype=np.float64)
    return xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


def log_sigmoid_loss(G: np.ndarray, theta: float, temperature: float, positive: bool, xp=np) -> np.ndarray:
    """−log p (positive) or −log(1 − p) (negative), p = σ((G − θ)/T), per case."""
    z = (xp.asarray(G, dtype=np.float64) - theta) / temperature
    return softplus(-z, xp) if positive else softplus(z, xp)


def goodness_grad(y: np.ndarray, p: np.ndarray, positive: bool, kind: str = "sumsq") -> np.ndarray:
    """dC/dz for ascending log p (positive) or log(1 − p) (negative), Hinton's scaling (see module doc)."""
    w = (1.0 - p) if positive else -p
    if kind == "neg_sumsq":
        w = -w
    return y * w.astype(np.float32)[:, None]


def normalize(y: np.ndarray, kind: str = "rms", ss: np.ndarray | None = None, xp=np) -> np.ndarray:
    """Divide each row by its RMS (Hinton's ``ffnormrows``) or its L2 length; ``ss`` reuses Σy² if known."""
    if ss is None:
        ss = sumsq(y, xp)
    if kind == "rms":
        d = xp.sqrt(ss / y.shape[1])
    elif kind == "l2":
        d = xp.sqrt(ss)
    else:
        raise ValueError(f"normalization must be one of {NORMS} (got {kind!r})")
    return y * (1.0 / (d + 1e-20)).astype(np.float32)[:, None]
