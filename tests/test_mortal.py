"""Mortal computation: metrics on constructed cases, transfer sets, the teacher boundary, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ffsim.ff import FFConfig
from ffsim.ff.trainer import build_model
from ffsim.mortal import (
    TeacherOracle,
    agreement,
    agreement_on_mistakes,
    copy_weights,
    distill,
    error_rate,
    mean_kl,
    run_mortal,
    transfer_images,
)


def test_metrics_on_constructed_cases():
    t = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    s = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    labels = np.array([0, 1, 0, 0])
    assert error_rate(t, labels) == 0.25
    assert agreement(s, t) == 0.5  # cases 0 and 2
    # the teacher's only mistake is case 2 (predicts 2, truth 0); the student makes the same mistake
    assert agreement_on_mistakes(s, t, labels) == 1.0
    assert agreement_on_mistakes(s, t, np.array([0, 1, 2, 0])) is None  # a teacher without mistakes
    assert mean_kl(t, t) == pytest.approx(0.0, abs=1e-12)
    expected = np.mean(np.sum(t * np.log(t / s), axis=1))
    assert mean_kl(t, s) == pytest.approx(expected, rel=1e-9)
    assert mean_kl(t, s) > 0


def test_transfer_sets():
    rng = np.random.default_rng(0)
    x = rng.random((50, 784), dtype=np.float32)
    assert transfer_images(x, "train", rng).shape == (50, 784)
    sub = transfer_images(x, "subset", np.random.default_rng(1), n=20)
    assert sub.shape == (20, 784)
    assert all(any(np.array_equal(r, y) for y in x) for r in sub)  # rows of the original
    noisy = transfer_images(x, "noisy", rng, sigma=0.05)
    assert noisy.min() >= 0 and noisy.max() <= 1
    d = noisy - x[np.argsort(np.argsort(np.arange(50)))]
    assert 0.02 < d.std() < 0.06  # clipping at 0 and 1 shrinks the 0.05 a little
    img = np.zeros((1, 784), np.float32)
    img[0, 14 * 28 + 14] = 1.0
    shifted = transfer_images(np.repeat(img, 200, axis=0), "shifted", rng, shift=2)
    pos = np.argwhere(shifted.reshape(200, 28, 28) == 1.0)
    assert len(pos) == 200  # the lit pixel survives every shift (it is far from the border)
    assert np.all(np.abs(pos[:, 1] - 14) <= 2) and np.all(np.abs(pos[:, 2] - 14) <= 2)
    assert len({(a, b) for _, a, b in pos}) > 10  # several different shifts
    with pytest.raises(ValueError, match="transfer kind must be"):
        transfer_images(x, "rotated", rng)
    with pytest.raises(ValueError, match="transfer size must be in 1..50"):
        transfer_images(x, "subset", rng, n=60)


def _small_cfg(**kw):
    return FFConfig(layers=(24, 24), epochs=1, profile="high-variability", mode="hybrid", batch_size=50, **kw)


def _data(n=300, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784), dtype=np.float32)
    x[:, :10] = 0
    return x, rng.integers(0, 10, n)


def test_the_student_reaches_the_teacher_only_through_the_oracle():
    cfg = _small_cfg()
    teacher = build_model(cfg, 784, 10)
    oracle = TeacherOracle(teacher)
    public = {n for n in dir(oracle) if not n.startswith("_")}
    assert public == {"queries", "ops"}
    assert not hasattr(oracle, "__dict__")  # slots only: no place holding the model
    with pytest.raises(AttributeError):
        oracle.model = teacher  # noqa: B010  (nothing can be attached either)
    # distillation leaves every hidden state of the teacher chips untouched
    chips = [layer.store.chip for layer in teacher.layers]
    before = [(c._g.copy(), c._ref.copy()) for c in chips]
    student = build_model(dataclasses.replace(cfg, fab_seed=2), 784, 10)
    x, _ = _data()
    calls = []

    class Spy:
        def __call__(self, xb):
            calls.append(len(xb))
            return oracle(xb)

    res = distill(Spy(), student, x, epochs=1, batch=50, rng=np.random.default_rng(0))
    assert sum(calls) == len(x) == res["teacher_queries"]
    for c, (g, ref) in zip(chips, before, strict=True):  # device states: untouched
        np.testing.assert_array_equal(c._g, g)
        np.testing.assert_array_equal(c._ref, ref)


def test_copy_programs_the_read_back_weights_and_digital_values():
    # digital-int8 reads back exactly what it stores, so the copy is checkable to the bit
    cfg = dataclasses.replace(_small_cfg(), profile="digital-int8")
    teacher = build_model(cfg, 784, 10)
    x, y = _data()
    teacher.train_step(x[:50], y[:50], np.random.default_rng(0), 1.0)
    student = build_model(dataclasses.replace(cfg, fab_seed=5), 784, 10)
    copy_weights(teacher, student)
    for lt, ls in zip(teacher.layers, student.layers, strict=True):
        np.testing.assert_array_equal(ls.b, lt.b)
        w_max = lt.store.chip.w_max
        stored = np.round(np.clip(lt.store.written / w_max, -1, 1) * 127) / 127 * w_max  # what the teacher chip holds
        np.testing.assert_allclose(ls.store.W, stored, rtol=0, atol=1e-6 * w_max)
        np.testing.assert_array_equal(ls.store.W, ls.store.written)
        np.testing.assert_allclose(ls.store.chip.read_weights(), stored, rtol=0, atol=1e-6 * w_max)
    for a, b in zip(teacher.head.W, student.head.W, strict=True):
        np.testing.assert_array_equal(a, b)


def test_copy_between_high_variability_chips_loses_the_adaptation():
    cfg = _small_cfg()
    teacher = build_model(cfg, 784, 10)
    student = build_model(dataclasses.replace(cfg, fab_seed=5), 784, 10)
    other = build_model(dataclasses.replace(cfg, fab_seed=6), 784, 10)
    assert not np.array_equal(student.layers[0].store.chip._gmax, other.layers[0].store.chip._gmax)
    copy_weights(teacher, student)
    h = np.abs(np.random.default_rng(1).standard_normal((200, 784))).astype(np.float32)
    t = teacher.layers[0].store.forward(h)
    s = student.layers[0].store.forward(h)
    # same weights read back, different chip: the layer computes something else (stuck cells, spread, ADC
    # mismatch); read noise alone (same chip, two reads) is far smaller
    again = teacher.layers[0].store.forward(h)
    assert np.linalg.norm(s - t) > 3 * np.linalg.norm(again - t)


def test_run_mortal_is_deterministic(tmp_path):
    cfg = _small_cfg(eval_train_cases=100)

    def run(out):
        r = run_mortal(cfg, out, student_fab_seeds=[2], transfer_size=300, distill_epochs=1, train_cases=300,
                       test_cases=100, log=lambda m: None)
        return r["rows"]

    a = run(tmp_path / "a")
    stale = tmp_path / "b" / ".results.json.k1ll3d.tmp"  # left by a run killed while writing: removed
    stale.parent.mkdir()
    stale.write_text("partial")
    b = run(tmp_path / "b")
    assert a == b and not stale.exists()
    kinds = [r["student"] for r in a]
    assert kinds == ["teacher", "copy", "distilled", "scratch"]
    for r in a[1:]:
        assert 0 <= r["agreement"] <= 1 and r["mean_kl_teacher_student"] >= 0
        assert r["transfer_energy_J"] > 0


def test_soften_keeps_the_ranking_and_flattens_the_distribution():
    from ffsim.mortal import soften

    p = np.array([[0.90, 0.07, 0.03], [0.2, 0.5, 0.3]], dtype=np.float32)
    assert soften(p, 1.0) is p
    q = soften(p, 2.0)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-6)
    # softmax(log p / T) = p^(1/T) / Σ p^(1/T)
    r = np.sqrt(p.astype(np.float64))
    np.testing.assert_allclose(q, r / r.sum(axis=1, keepdims=True), rtol=1e-6)
    assert (q.argsort(axis=1) == p.argsort(axis=1)).all()
    assert q[0, 0] < p[0, 0]
    with pytest.raises(ValueError, match="temperature"):
        soften(p, 0.0)


def test_distill_averages_several_teacher_reads():
    cfg = _small_cfg()
    teacher = build_model(cfg, 784, 10)
    oracle = TeacherOracle(teacher)
    x, _ = _data(100)
    student = build_model(dataclasses.replace(cfg, fab_seed=2), 784, 10)
    res = distill(oracle, student, x, epochs=1, batch=50, rng=np.random.default_rng(0), teacher_reads=3)
    assert res["teacher_queries"] == 3 * len(x) == oracle.queries
    with pytest.raises(ValueError, match="teacher_reads"):
        distill(oracle, student, x, epochs=1, batch=50, rng=np.random.default_rng(0), teacher_reads=0)


def test_head_temperature_step_is_the_scaled_soft_target_gradient():
    # the head's step at temperature T equals T x the cross-entropy gradient of softmax(logits / T) against
    # the softened targets (the T² rule for gradients with respect to logits / T)
    from ffsim.ff.layer import SoftmaxHead, softmax

    rng = np.random.default_rng(4)
    hs = [rng.standard_normal((8, 5)).astype(np.float32)]
    targets = softmax(rng.standard_normal((8, 3)).astype(np.float32))
    head = SoftmaxHead([5], 3, lr=0.1, weight_cost=0.0, momentum=0.0)
    head.W[0][...] = rng.standard_normal((5, 3)).astype(np.float32)
    W0 = head.W[0].copy()
    T = 3.0
    logits = head.logits(hs)
    head.update(hs, softmax(logits / np.float32(T)), targets, T)
    expected = W0 + 0.1 * T * hs[0].T @ ((targets - softmax(logits / T)) / 8)
    np.testing.assert_allclose(head.W[0], expected, rtol=1e-5, atol=1e-6)


def test_train_step_learns_soft_targets_at_the_head_temperature():
    # targets that the head already produces at temperature T leave it (almost) unchanged at T, and move it at T = 1
    from ffsim.mortal import soften

    cfg = FFConfig(layers=(16, 16), epochs=1, profile="ideal", mode="ideal", batch_size=20)
    x, y = _data(20)
    moved = {}
    for T in (1.0, 4.0):
        model = build_model(cfg, 784, 10)
        model.head.weight_cost = np.float32(0.0)  # only the error term moves the head
        rng = np.random.default_rng(7)
        for W in model.head.W:
            W[...] = rng.standard_normal(W.shape).astype(np.float32)
        before = [W.copy() for W in model.head.W]
        targets = soften(model.predict_softmax(x), 4.0)
        model.train_step(x, y, np.random.default_rng(0), 1.0, head_targets=targets, head_temperature=T)
        moved[T] = max(float(np.abs(W - W0).max()) for W, W0 in zip(model.head.W, before, strict=True))
    assert moved[4.0] < 1e-5, moved
    assert moved[1.0] > 1e-3, moved


def test_augmented_transfer_doubles_the_images_and_bad_kinds_are_named(tmp_path):
    cfg = _small_cfg(eval_train_cases=100)
    r = run_mortal(cfg, tmp_path / "aug", student_fab_seeds=[2], transfer="augmented", transfer_size=150,
                   distill_epochs=1, train_cases=300, test_cases=100, log=lambda m: None)
    assert r["transfer"]["kind"] == "augmented" and r["transfer"]["size"] == 300
    assert [row["student"] for row in r["rows"]] == ["teacher", "copy", "distilled", "scratch"]
    with pytest.raises(ValueError, match="transfer must be one of .*augmented.*'mixed'"):  # before training
        run_mortal(cfg, tmp_path / "bad", student_fab_seeds=[2], transfer="mixed", distill_epochs=1, train_cases=300,
                   test_cases=100, log=lambda m: None)
