"""Moving knowledge between unique chips: weight copy, distillation, and their metrics.

*Weight copy* reads the teacher chip's weights cell by cell (``read_weights``, noisy) and programs them
into the student chip (``program``); the digital periphery values (biases, softmax head) are copied
exactly.  What the teacher's training had adapted to its own chip — device-to-device spread, stuck
cells, ADC mismatch — does not come along.

*Distillation* (Hinton 2022, §9) trains the student chip with FF from the teacher chip's outputs only:
the teacher's soft predictions are the targets of the student's softmax head, the positive label is the
teacher's top class, and the negatives are drawn from the teacher's probabilities over the other
classes (hard negatives with the teacher as oracle).  The student sees the teacher only through a
:class:`TeacherOracle`, a function from images to class probabilities.
"""

from __future__ import annotations

import numpy as np

from ffsim.crossbar import OpCounter

__all__ = ["TeacherOracle", "agreement", "agreement_on_mistakes", "copy_weights", "distill", "error_rate",
           "mean_kl", "soften", "train_on", "transfer_images"]


class TeacherOracle:
    """The only view of a teacher a student gets: images in, class probabilities out.

    Each call runs the teacher chip's inference (with its read and converter noise) and is counted in
    ``ops``.  The teacher model itself is held in a closure, not as an attribute.
    """

    __slots__ = ("_predict", "_ops", "queries")

    def __init__(self, model):
        def predict(x: np.ndarray) -> np.ndarray:
            return model.predict_softmax(x)

        def ops() -> OpCounter:
            return model.ops()

        self._predict = predict
        self._ops = ops
        self.queries = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.queries += len(x)
        return self._predict(x)

    def ops(self) -> OpCounter:
        """The teacher chips' op counter (counts only)."""
        return self._ops()


def transfer_images(x: np.ndarray, kind: str, rng: np.random.Generator, n: int | None = None,
                    sigma: float = 0.1, shift: int = 2, side: int = 28) -> np.ndarray:
    """A label-free transfer set built from images ``x`` (n_images × pixels, values in [0, 1]).

    ``kind``: ``"train"`` (the images as they are), ``"subset"`` (``n`` random images), ``"noisy"``
    (Gaussian pixel noise of std ``sigma``, clipped to [0, 1]) or ``"shifted"`` (random translations of up
    to ``shift`` pixels, zeros shifted in).  ``n`` limits the number of images for every kind.
    """
    if kind not in ("train", "subset", "noisy", "shifted"):
        raise ValueError(f"transfer kind must be 'train', 'subset', 'noisy' or 'shifted' (got {kind!r})")
    if n is not None and not 0 < n <= len(x):
        raise ValueError(f"transfer size must be in 1..{len(x)} (got {n})")
    idx = rng.permutation(len(x))[:n] if (n is not None or kind == "subset") else np.arange(len(x))
    out = x[idx].astype(np.float32, copy=True)
    if kind == "noisy":
        out += np.float32(sigma) * rng.standard_normal(out.shape, dtype=np.float32)
        np.clip(out, 0.0, 1.0, out=out)
    elif kind == "shifted":
        imgs = out.reshape(len(out), side, side)
        dy = rng.integers(-shift, shift + 1, len(out))
        dx = rng.integers(-shift, shift + 1, len(out))
        shifted = np.zeros_like(imgs)
        for k in range(len(out)):
            ys, xs = dy[k], dx[k]
            src = imgs[k, max(0, -ys):side - max(0, ys), max(0, -xs):side - max(0, xs)]
            shifted[k, max(0, ys):max(0, ys) + src.shape[0], max(0, xs):max(0, xs) + src.shape[1]] = src
        out = shifted.reshape(len(out), -1)
    return out


def copy_weights(teacher, student) -> None:
    """Program the student's chips with the teacher's read-back weights; copy digital values exactly."""
    for t_layer, s_layer in zip(teacher.layers, student.layers, strict=True):
        t_store, s_store = t_layer.store, s_layer.store
        W = t_store.chip.read_weights() if hasattr(t_store, "chip") else t_store.W.copy()
        if hasattr(s_store, "chip"):
            s_store.chip.program(W)
            if hasattr(s_store, "written"):  # hybrid: the student's master copy starts from what was written
                s_store.W[...] = W
                s_store.written[...] = W
        else:
            s_store.W[...] = W
        s_layer.b[...] = t_layer.b
        s_layer.mean_act[...] = t_layer.mean_act
    for Wt, Ws in zip(teacher.head.W, student.head.W, strict=True):
        Ws[...] = Wt


def soften(probs: np.ndarray, temperature: float, eps: float = 1e-12) -> np.ndarray:
    """Class probabilities at temperature T: softmax(log p / T) (T = 1 returns ``probs`` unchanged)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (got {temperature})")
    if temperature == 1.0:
        return probs
    z = np.log(np.clip(probs.astype(np.float64), eps, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def train_on(model, x: np.ndarray, labels: np.ndarray, *, epochs: int, batch: int, rng: np.random.Generator,
             soft: np.ndarray | None = None, temperature: float = 1.0) -> OpCounter:
    """``epochs`` of FF on (x, labels) with Hinton's learning-rate schedule; with ``soft`` (class
    probabilities per case) the head learns those (at ``temperature``) and the negatives are drawn from
    them (at temperature 1).  Returns the model's op delta."""
    head_targets = None if soft is None else soften(soft, temperature)
    from ffsim.ff.trainer import lr_gain

    before = model.ops()
    n_batches = len(x) // batch
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x))
        gain = lr_gain(epoch, epochs)
        for b in range(n_batches):
            idx = order[b * batch:(b + 1) * batch]
            if soft is None:
                model.train_step(x[idx], labels[idx], rng, gain)
            else:
                model.train_step(x[idx], labels[idx], rng, gain, head_targets=head_targets[idx],
                                 negative_probs=soft[idx], head_temperature=temperature)
    return model.ops() - before


def distill(oracle: TeacherOracle, student, x_transfer: np.ndarray, *, epochs: int, batch: int,
            rng: np.random.Generator, query_batch: int = 1000, teacher_reads: int = 1,
            temperature: float = 1.0) -> dict:
    """Train ``student`` (an :class:`~ffsim.ff.network.FFNetwork`) from the oracle's outputs on a label-free
    transfer set.  The oracle labels every transfer image ``teacher_reads`` times (independent teacher
    inferences, each with its own read and converter noise) and the probabilities are averaged: the
    teacher's expected function rather than one noisy reading of it.  The student then trains for
    ``epochs``: positive label = the teacher's top class, head targets = the teacher's probabilities at
    ``temperature`` (the student's head trained at the same temperature), negatives drawn from the
    teacher's probabilities over the other classes."""
    if teacher_reads < 1:
        raise ValueError(f"teacher_reads must be >= 1 (got {teacher_reads})")
    probs = np.zeros((len(x_transfer), 0), dtype=np.float32)
    for _ in range(teacher_reads):
        p = np.concatenate([oracle(x_transfer[a:a + query_batch]) for a in range(0, len(x_transfer), query_batch)])
        probs = p.astype(np.float32) if probs.shape[1] == 0 else probs + p
    probs /= np.float32(teacher_reads)
    ops = train_on(student, x_transfer, probs.argmax(axis=1), epochs=epochs, batch=batch, rng=rng, soft=probs,
                   temperature=temperature)
    return {"student_ops": ops, "teacher_queries": teacher_reads * len(x_transfer)}


# ---------------------------------------------------------------------------------------------
# metrics


def error_rate(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(axis=1) != labels).mean())


def agreement(p_student: np.ndarray, p_teacher: np.ndarray) -> float:
    """Fraction of cases where student and teacher predict the same class."""
    return float((p_student.argmax(axis=1) == p_teacher.argmax(axis=1)).mean())


def agreement_on_mistakes(p_student: np.ndarray, p_teacher: np.ndarray, labels: np.ndarray) -> float | None:
    """Among the cases the teacher gets wrong, the fraction where the student makes the same mistake."""
    t = p_teacher.argmax(axis=1)
    wrong = t != labels
    if not wrong.any():
        return None
    return float((p_student.argmax(axis=1)[wrong] == t[wrong]).mean())


def mean_kl(p_teacher: np.ndarray, p_student: np.ndarray, eps: float = 1e-12) -> float:
    """Mean KL(teacher ‖ student) in nats over cases (probabilities floored at ``eps``)."""
    pt = np.clip(p_teacher.astype(np.float64), eps, 1.0)
    ps = np.clip(p_student.astype(np.float64), eps, 1.0)
    pt /= pt.sum(axis=1, keepdims=True)
    ps /= ps.sum(axis=1, keepdims=True)
    return float(np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1)))
