"""``ffsim train``: results, determinism, bad input, resume and divergence (tiny networks, in-process)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import ffsim
from ffsim.cli import main
from ffsim.ff.network import FFNetwork
from ffsim.profiles import list_profiles, load_profile

N_BATCHES = 6  # 300 training cases / batch size 50
TINY = ["--layers", "20,20", "--train-cases", "300", "--test-cases", "100", "--eval-train-cases", "100",
        "--batch-size", "50", "--no-progress"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("FFSIM_DATA_DIR", raising=False)
    monkeypatch.delenv("FFSIM_PROFILE_PATH", raising=False)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``ffsim ARGV`` in-process: (exit status, stdout, stderr). Any exception but SystemExit fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return rc, out.getvalue(), err.getvalue()


def train(out: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(["train", "--out", str(out), *TINY, *extra])


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in rec.items() if not k.endswith("_time_s")} for rec in history]


def checkpoint_arrays(out: Path) -> dict[str, np.ndarray]:
    with np.load(out / "checkpoint.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def assert_no_traceback(*texts: str) -> None:
    for t in texts:
        assert "Traceback" not in t, t


@pytest.fixture(scope="module")
def ideal_run(tmp_path_factory) -> tuple[Path, int, str, str]:
    """A finished 2-epoch run on the ideal profile (read-only: copy it before changing it)."""
    out = tmp_path_factory.mktemp("ideal") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("FFSIM_DATA_DIR", raising=False)
        mp.delenv("FFSIM_PROFILE_PATH", raising=False)
        rc, so, se = train(out, "--epochs", "2")
    return out, rc, so, se


@pytest.fixture(scope="module")
def pcm_run(tmp_path_factory) -> tuple[Path, int, str, str]:
    """A finished 2-epoch in-situ run on the pcm profile (read-only)."""
    out = tmp_path_factory.mktemp("pcm") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("FFSIM_DATA_DIR", raising=False)
        mp.delenv("FFSIM_PROFILE_PATH", raising=False)
        rc, so, se = train(out, "--epochs", "2", "--profile", "pcm")
    return out, rc, so, se


# --------------------------------------------------------------------------------------------------
# a run on the ideal profile


def test_ideal_run_exit_status_and_output(ideal_run):
    out, rc, so, se = ideal_run
    assert rc == 0, se
    assert "test error:" in so and "(goodness)" in so and "(softmax)" in so
    assert f"results: {out / 'results.json'}" in so
    assert "epoch 1:" in se and "epoch 2:" in se  # the per-epoch log
    assert_no_traceback(so, se)


def test_ideal_run_results_json(ideal_run):
    out, rc, _, se = ideal_run
    assert rc == 0, se
    r = results(out)
    assert r["kind"] == "ff_training"
    assert r["ffsim_version"] == ffsim.__version__
    assert r["profile"] == "ideal"
    assert r["profile_hash"] == load_profile("ideal").profile_hash
    assert r["mode"] == "ideal"
    assert r["seeds"] == {"seed": 0, "fab_seed": 1}
    cfg = r["config"]
    assert cfg["layers"] == [20, 20] and cfg["epochs"] == 2 and cfg["batch_size"] == 50
    assert cfg["mode"] == "ideal" and cfg["profile"] == "ideal" and cfg["model"] == "ff"
    assert cfg["eval_train_cases"] == 100 and cfg["seed"] == 0 and cfg["fab_seed"] == 1
    assert r["train_cases"] == 300 and r["test_cases"] == 100
    assert r["dataset"]["name"] == "mnist"
    assert r["dataset"]["sha256"] == "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"


def test_ideal_run_history(ideal_run):
    out, rc, _, se = ideal_run
    assert rc == 0, se
    r = results(out)
    hist = r["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    assert [h["lr_gain"] for h in hist] == [1.0, 0.5]
    for h in hist:
        assert np.isfinite(h["train_loss"]) and h["train_loss"] > 0
        for k in ("train_running_error", "test_error_goodness", "test_error_softmax", "train_error_goodness",
                  "train_error_softmax"):
            assert 0.0 <= h[k] <= 1.0, (k, h[k])
            assert round(h[k] * 100) == pytest.approx(h[k] * 100)  # a count over 100 or 300 cases
        assert h["train_energy_J_per_sample"] > 0
        assert h["inference_energy_J_per_image_softmax"] > 0
        # the goodness evaluation runs one pass per label: ten times the softmax's single pass
        e_soft = h["inference_energy_J_per_image_softmax"]
        assert h["inference_energy_J_per_image_goodness"] == pytest.approx(10 * e_soft, rel=1e-6)
        assert h["train_time_s"] >= 0 and h["eval_time_s"] >= 0
    last = hist[-1]
    for k in ("test_error_goodness", "test_error_softmax", "train_energy_J_per_sample",
              "inference_energy_J_per_image_softmax", "inference_energy_J_per_image_goodness"):
        assert r["final"][k] == last[k]
    assert r["final"]["val_error_softmax"] is None
    assert r["ops_total"]["macs"] > 0
    assert r["ops_total"]["device_pulses"] == 0 and r["ops_total"]["program_steps"] == 0


def test_ideal_run_files(ideal_run):
    out, rc, _, se = ideal_run
    assert rc == 0, se
    png = (out / "learning_curves.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 1000
    assert (out / "checkpoint.npz").is_file() and (out / "checkpoint.json").is_file()
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["epoch"] == 2
    assert untimed(state["history"]) == untimed(results(out)["history"])
    arrays = checkpoint_arrays(out)
    assert arrays["model.layer0.W"].shape == (784, 20) and arrays["model.layer1.W"].shape == (20, 20)
    assert all(np.all(np.isfinite(v)) for v in arrays.values())
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))  # no leftovers of atomic writes


def test_eval_every_skips_evaluations_but_not_the_last(tmp_path):
    rc, _, se = train(tmp_path / "r", "--epochs", "3", "--eval-every", "2")
    assert rc == 0, se
    hist = results(tmp_path / "r")["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert ["test_error_softmax" in h for h in hist] == [False, True, True]


def test_validation_split_is_evaluated(tmp_path):
    rc, _, se = train(tmp_path / "r", "--epochs", "1", "--validation", "10000")
    assert rc == 0, se
    r = results(tmp_path / "r")
    assert r["config"]["validation"] == 10000
    h = r["history"][0]
    assert 0 <= h["val_error_goodness"] <= 1 and 0 <= h["val_error_softmax"] <= 1
    assert r["final"]["val_error_softmax"] == h["val_error_softmax"]


def test_train_on_an_npz_dataset(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "toy.npz"
    np.savez(path, x_train=rng.integers(0, 256, (120, 6, 6), dtype=np.uint8), y_train=rng.integers(0, 10, 120),
             x_test=rng.integers(0, 256, (40, 6, 6), dtype=np.uint8), y_test=rng.integers(0, 10, 40))
    rc, _, se = run_cli(["train", "--out", str(tmp_path / "r"), "--dataset", str(path), "--layers", "12,12",
                         "--epochs", "1", "--batch-size", "20", "--no-progress"])
    assert rc == 0, se
    r = results(tmp_path / "r")
    assert r["train_cases"] == 120 and r["test_cases"] == 40
    assert r["dataset"]["source"] == str(path)
    assert r["dataset"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert checkpoint_arrays(tmp_path / "r")["model.layer0.W"].shape == (36, 12)


# --------------------------------------------------------------------------------------------------
# on a chip: pcm, in situ and hybrid


def test_pcm_defaults_to_insitu(pcm_run):
    out, rc, so, se = pcm_run
    assert rc == 0, se
    assert_no_traceback(so, se)
    r = results(out)
    assert r["mode"] == "insitu" and r["config"]["mode"] == "insitu"
    assert r["profile"] == "pcm" and r["config"]["profile"] == "pcm"
    assert r["profile_hash"] == load_profile("pcm").profile_hash
    assert r["profile_hash"] != load_profile("ideal").profile_hash
    assert r["ops_total"]["device_pulses"] > 0
    assert r["ops_total"]["adc_conversions"] > 0
    for h in r["history"]:
        assert 0 <= h["test_error_softmax"] <= 1 and 0 <= h["test_error_goodness"] <= 1
        assert h["train_energy_J_per_sample"] > 0 and h["inference_energy_J_per_image_softmax"] > 0
    assert len(r["history"]) == 2


def test_pcm_hybrid(tmp_path):
    rc, so, se = train(tmp_path / "h", "--epochs", "1", "--profile", "pcm", "--mode", "hybrid")
    assert rc == 0, se
    assert_no_traceback(so, se)
    r = results(tmp_path / "h")
    assert r["mode"] == "hybrid" and r["config"]["mode"] == "hybrid"
    assert r["profile"] == "pcm" and r["profile_hash"] == load_profile("pcm").profile_hash
    assert r["ops_total"]["program_steps"] > 0
    assert r["ops_total"]["update_slots"] == 0  # no in-situ pulse trains in hybrid mode
    assert len(r["history"]) == 1 and 0 <= r["history"][0]["test_error_softmax"] <= 1


def test_profile_given_as_a_path(tmp_path):
    path = list_profiles()["pcm"]
    rc, _, se = train(tmp_path / "r", "--epochs", "1", "--profile", str(path), "--mode", "hybrid")
    assert rc == 0, se
    r = results(tmp_path / "r")
    assert r["profile"] == "pcm" and r["profile_hash"] == load_profile("pcm").profile_hash


# --------------------------------------------------------------------------------------------------
# determinism


def test_same_command_same_history_ideal(ideal_run, tmp_path):
    out, rc, _, se = ideal_run
    assert rc == 0, se
    rc2, _, se2 = train(tmp_path / "again", "--epochs", "2")
    assert rc2 == 0, se2
    a, b = results(out), results(tmp_path / "again")
    assert untimed(a["history"]) == untimed(b["history"])
    assert a["ops_total"] == b["ops_total"]
    for k, v in checkpoint_arrays(out).items():
        np.testing.assert_array_equal(v, checkpoint_arrays(tmp_path / "again")[k], err_msg=k)


def test_same_command_same_history_pcm(pcm_run, tmp_path):
    out, rc, _, se = pcm_run
    assert rc == 0, se
    rc2, _, se2 = train(tmp_path / "again", "--epochs", "2", "--profile", "pcm")
    assert rc2 == 0, se2
    a, b = results(out), results(tmp_path / "again")
    assert untimed(a["history"]) == untimed(b["history"])
    assert a["ops_total"] == b["ops_total"]


def test_seed_changes_the_run(ideal_run, tmp_path):
    out, rc, _, se = ideal_run
    assert rc == 0, se
    rc2, _, se2 = train(tmp_path / "s1", "--epochs", "2", "--seed", "1")
    assert rc2 == 0, se2
    assert results(tmp_path / "s1")["seeds"]["seed"] == 1
    assert [h["train_loss"] for h in results(out)["history"]] != [h["train_loss"] for h in
                                                                  results(tmp_path / "s1")["history"]]


# --------------------------------------------------------------------------------------------------
# bad input: exit status 2, one clear message, no traceback, nothing written


def _bad(tmp_path, argv: list[str]) -> tuple[str, str]:
    out = tmp_path / "run"
    rc, so, se = run_cli(["train", "--out", str(out), *argv])
    assert rc == 2, (rc, so, se)
    assert_no_traceback(so, se)
    assert se.strip(), "no message"
    assert not (out / "results.json").exists() and not (out / "checkpoint.json").exists()
    return so, se


def test_unknown_profile_did_you_mean(tmp_path):
    _, se = _bad(tmp_path, [*TINY, "--epochs", "1", "--profile", "pcn"])
    assert "pcn" in se and "did you mean 'pcm'" in se
    assert not (tmp_path / "run").exists()  # the profile is checked before anything is written


def test_missing_profile_file(tmp_path):
    path = tmp_path / "nowhere" / "chip.toml"
    _, se = _bad(tmp_path, [*TINY, "--epochs", "1", "--profile", str(path)])
    assert str(path) in se and "no such file" in se


def test_invalid_profile_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[meta\nname = 'x'\n")
    _, se = _bad(tmp_path, [*TINY, "--epochs", "1", "--profile", str(path)])
    assert str(path) in se and "TOML" in se


def test_bad_layers(tmp_path):
    _, se = _bad(tmp_path, [*TINY, "--epochs", "1", "--layers", "10,x"])
    assert "--layers" in se and "10,x" in se


@pytest.mark.parametrize("layers", ["10,0", "-5"])
def test_nonpositive_layers(tmp_path, layers):
    _, se = _bad(tmp_path, ["--epochs", "1", "--layers", layers])
    assert "layers" in se and "positive" in se


def test_zero_epochs(tmp_path):
    _, se = _bad(tmp_path, [*TINY, "--epochs", "0"])
    assert "epochs" in se and ">= 1" in se


def test_unknown_set_key(tmp_path):
    _, se = _bad(tmp_path, [*TINY, "--epochs", "1", "--set", "no_such_key=1"])
    assert "no_such_key" in se


def test_negative_lr_via_set(tmp_path):
    _, se = _bad(tmp_path, [*TINY, "--epochs", "1", "--set", "lr=-1"])
    assert "lr" in se and ">= 0" in se


def test_set_without_equals(tmp_path):
    _, se = _bad(tmp_path, [*TINY, "--epochs", "1", "--set", "lr"])
    assert "KEY=VALUE" in se


def test_batch_larger_than_training_set(tmp_path):
    _, se = _bad(tmp_path, ["--layers", "20,20", "--epochs", "1", "--train-cases", "30", "--batch-size", "50",
                            "--no-progress"])
    assert "batch_size 50" in se and "30" in se


@pytest.mark.parametrize("kind", ["missing_npz", "missing_name", "junk_file", "empty_folder", "truncated_npz"])
def test_unreadable_dataset(tmp_path, kind):
    if kind == "missing_npz":
        path = tmp_path / "nowhere.npz"
    elif kind == "missing_name":
        path = tmp_path / "no" / "such" / "folder"
    elif kind == "junk_file":
        path = tmp_path / "junk.dat"
        path.write_bytes(b"definitely not a dataset")
    elif kind == "empty_folder":
        path = tmp_path / "empty"
        path.mkdir()
    else:  # an interrupted download of a valid npz
        valid = tmp_path / "valid.npz"
        np.savez(valid, x_train=np.zeros((10, 4, 4), np.uint8), y_train=np.zeros(10, np.uint8),
                 x_test=np.zeros((5, 4, 4), np.uint8), y_test=np.zeros(5, np.uint8))
        path = tmp_path / "truncated.npz"
        path.write_bytes(valid.read_bytes()[:300])
    _, se = _bad(tmp_path, [*TINY, "--epochs", "1", "--dataset", str(path)])
    assert "dataset" in se and str(path) in se


def test_model_bp_trains_and_reports_softmax_only(tmp_path):
    rc, so, se = run_cli(["train", "--out", str(tmp_path / "bp"), *TINY, "--epochs", "1", "--model", "bp"])
    assert rc == 0, se
    r = json.loads((tmp_path / "bp" / "results.json").read_text())
    assert r["config"]["model"] == "bp" and r["mode"] == "ideal"
    h = r["history"][-1]
    assert h["test_error_goodness"] is None and 0 <= h["test_error_softmax"] <= 1
    rc, so, se = run_cli(["train", "--out", str(tmp_path / "bp2"), *TINY, "--epochs", "1", "--model", "ff",
                          "--mode", "model"])
    assert rc == 2 and "must be one of" in se


@pytest.mark.parametrize("argv", [["--mode", "cloud"], ["--epochs", "two"], ["--model", "cnn"], []])
def test_argparse_errors_exit_2(tmp_path, argv):
    extra = [] if not argv else ["--out", str(tmp_path / "r")]
    rc, so, se = run_cli(["train", *extra, *argv])
    assert rc == 2
    assert "usage:" in se
    assert_no_traceback(so, se)


# --------------------------------------------------------------------------------------------------
# resume


@pytest.mark.parametrize("which", ["ideal_run", "pcm_run"])
def test_resume_finished_run_returns_identical_results(which, request, tmp_path, monkeypatch):
    src, rc, _, se = request.getfixturevalue(which)
    assert rc == 0, se
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    before = results(out)
    ckpt_before = (out / "checkpoint.npz").read_bytes(), (out / "checkpoint.json").read_bytes()

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(FFNetwork, "submit_step", no_training)
    extra = ["--profile", "pcm"] if which == "pcm_run" else []
    rc, so, se = train(out, "--epochs", "2", *extra, "--resume")
    assert rc == 0, se
    assert "resuming" in se and "after epoch 2" in se
    after = results(out)
    assert untimed(after["history"]) == untimed(before["history"])
    assert after["history"] == before["history"]  # the recorded times are the original ones
    assert after["ops_total"] == before["ops_total"]
    assert after == before
    assert ((out / "checkpoint.npz").read_bytes(), (out / "checkpoint.json").read_bytes()) == ckpt_before


class _Interrupt:
    """Replaces FFNetwork.submit_step (what the trainer calls): runs the real one, but raises
    KeyboardInterrupt on call ``at``."""

    def __init__(self, at: int):
        self.at = at
        self.calls = 0
        self.real = FFNetwork.submit_step

    def __call__(self, model, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.real(model, *args, **kwargs)

    def method(self):
        return lambda model, *args, **kwargs: self(model, *args, **kwargs)


@pytest.mark.parametrize("which", ["ideal_run", "pcm_run"])
def test_resume_after_interrupt_matches_an_uninterrupted_run(which, request, tmp_path, monkeypatch):
    ref, rc, _, se = request.getfixturevalue(which)
    assert rc == 0, se
    extra = ["--profile", "pcm"] if which == "pcm_run" else []
    out = tmp_path / "interrupted"
    with monkeypatch.context() as mp:
        mp.setattr(FFNetwork, "submit_step", _Interrupt(at=N_BATCHES + 3).method())  # epoch 2, mini-batch 3
        rc, _, se = train(out, "--epochs", "2", *extra)
    assert rc == 130 and "interrupted" in se
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 1
    assert len(results(out)["history"]) == 1

    rc, _, se = train(out, "--epochs", "2", *extra, "--resume")
    assert rc == 0, se
    assert "resuming" in se and "after epoch 1" in se
    a, b = results(ref), results(out)
    assert untimed(b["history"]) == untimed(a["history"])
    ra, rb = checkpoint_arrays(ref), checkpoint_arrays(out)
    assert ra.keys() == rb.keys()
    for k in ra:
        np.testing.assert_array_equal(rb[k], ra[k], err_msg=k)
    assert b["ops_total"] == a["ops_total"]  # operation counts (and so energy totals) survive the resume


def test_resume_without_checkpoint_starts_from_scratch(ideal_run, tmp_path):
    ref, rc, _, se = ideal_run
    assert rc == 0, se
    rc, _, se = train(tmp_path / "fresh", "--epochs", "2", "--resume")
    assert rc == 0, se
    assert "no checkpoint" in se
    assert untimed(results(tmp_path / "fresh")["history"]) == untimed(results(ref)["history"])


def test_resume_from_another_checkout_ignores_the_dataset_path_but_not_its_hash(ideal_run, tmp_path, monkeypatch):
    # a run folder carried to another checkout or machine: the dataset file's path differs, its sha256 not
    src, rc, _, se = ideal_run
    assert rc == 0, se
    monkeypatch.setattr(FFNetwork, "submit_step", lambda *a, **k: pytest.fail("a finished run was trained again"))
    for field, value, ok in (("source", "/elsewhere/mnist.npz", True), ("sha256", "0" * 64, False)):
        out = tmp_path / field
        shutil.copytree(src, out)
        ck = json.loads((out / "checkpoint.json").read_text())
        ck["meta"]["dataset"][field] = value
        (out / "checkpoint.json").write_text(json.dumps(ck))
        rc, so, se = train(out, "--epochs", "2", "--resume")
        if ok:
            assert rc == 0 and "after epoch 2" in se, se
        else:
            assert rc == 2 and "different configuration" in se, (so, se)


@pytest.mark.parametrize("change", [["--lr", "0.02"], ["--layers", "20,20", "--seed", "5"], ["--epochs", "3"]])
def test_resume_with_a_different_config_is_refused(ideal_run, tmp_path, change):
    src, rc, _, se = ideal_run
    assert rc == 0, se
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    argv = ["train", "--out", str(out), *TINY, "--epochs", "2", *change, "--resume"]
    rc, so, se = run_cli(argv)
    assert rc == 2, (so, se)
    assert "different configuration" in se and "--resume" in se
    assert_no_traceback(so, se)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing overwritten


# --------------------------------------------------------------------------------------------------
# divergence


def test_divergence_exits_3_naming_epoch_and_minibatch(tmp_path):
    out = tmp_path / "div"
    rc, so, se = train(out, "--epochs", "2", "--lr", "1e30")
    assert rc == 3, (so, se)
    assert_no_traceback(so, se)
    assert "diverged" in se
    assert "epoch 1" in se and "mini-batch" in se and f"/{N_BATCHES}" in se
    assert "--lr" in se
    # it diverged in the first epoch: there is no checkpoint and no results
    assert not (out / "checkpoint.npz").exists() and not (out / "checkpoint.json").exists()
    assert not (out / "results.json").exists()


def test_divergence_in_first_epoch_does_not_claim_a_checkpoint(tmp_path):
    out = tmp_path / "div"
    rc, _, se = run_cli(["train", "--out", str(out), *TINY, "--epochs", "2", "--set", "lr=1e30"])
    assert rc == 3, se
    assert not (out / "checkpoint.json").exists()
    # no checkpoint exists, so the message must not say one "(end of epoch 0)" is kept
    assert "epoch 0" not in se, se
    assert "no checkpoint" in se.lower(), se


@pytest.mark.parametrize("mode", ["insitu", "hybrid"])
def test_divergence_on_a_chip_exits_3(tmp_path, mode):
    out = tmp_path / mode
    rc, so, se = train(out, "--epochs", "2", "--profile", "pcm", "--mode", mode, "--lr", "1e30")
    assert rc == 3, (rc, se)
    assert "diverged" in se and "epoch 1" in se and "mini-batch" in se
    assert_no_traceback(so, se)
    assert not (out / "checkpoint.json").exists()


class _NanLoss:
    """Replaces FFNetwork.submit_step: the real step, but a NaN loss from call ``at`` on."""

    def __init__(self, at: int):
        self.at = at
        self.calls = 0
        self.real = FFNetwork.submit_step

    def __call__(self, model, *args, **kwargs):
        self.calls += 1
        step = self.real(model, *args, **kwargs)
        if self.calls >= self.at:
            real_stats = step.stats
            step = SimpleNamespace(stats=lambda: {**real_stats(), "loss": float("nan")})
        return step

    def method(self):
        return lambda model, *args, **kwargs: self(model, *args, **kwargs)


def test_a_step_refusing_its_input_stops_the_run_before_the_next_step(tmp_path, monkeypatch):
    """The trainer keeps one step in flight; a step that raises NonFiniteInput when submitted (the CPU refuses
    before its updates) ends the run at once: no later step is submitted, and the message names that step."""
    from ffsim.crossbar import NonFiniteInput

    real = FFNetwork.submit_step
    calls = []

    def submit(model, *args, **kwargs):
        calls.append(1)
        if len(calls) == N_BATCHES + 2:  # epoch 2, mini-batch 2
            raise NonFiniteInput("pulse_update: x or d contains NaN or inf")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(FFNetwork, "submit_step", submit)
    rc, so, se = train(tmp_path / "nan", "--epochs", "2")
    assert rc == 3, se
    assert_no_traceback(so, se)
    assert "NaN or inf reached the chip" in se and f"epoch 2, mini-batch 2/{N_BATCHES}" in se
    assert len(calls) == N_BATCHES + 2


def test_divergence_in_second_epoch_keeps_the_first_epochs_checkpoint(ideal_run, tmp_path, monkeypatch):
    ref, rc, _, se = ideal_run
    assert rc == 0, se
    out = tmp_path / "div2"
    with monkeypatch.context() as mp:
        mp.setattr(FFNetwork, "submit_step", _NanLoss(at=N_BATCHES + 2).method())  # epoch 2, mini-batch 2
        rc, so, se = train(out, "--epochs", "2")
    assert rc == 3, se
    assert_no_traceback(so, se)
    assert f"epoch 2, mini-batch 2/{N_BATCHES}" in se
    assert "end of epoch 1" in se and str(out) in se
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["epoch"] == 1
    r = results(out)
    assert [h["epoch"] for h in r["history"]] == [1]
    assert untimed(r["history"]) == untimed(results(ref)["history"][:1])
    assert (out / "learning_curves.png").read_bytes().startswith(PNG_SIGNATURE)
    # the kept checkpoint is a good one: resuming from it ends where an uninterrupted run ends
    rc, _, se = train(out, "--epochs", "2", "--resume")
    assert rc == 0, se
    assert untimed(results(out)["history"]) == untimed(results(ref)["history"])
    ra, rb = checkpoint_arrays(ref), checkpoint_arrays(out)
    for k in ra:
        np.testing.assert_array_equal(rb[k], ra[k], err_msg=k)
