"""Test-suite settings shared by every test module, and the CUDA-simulator run started beside the suite."""

# ruff: noqa: I001
from __future__ import annotations

import ffsim  # noqa: F401  (first, before anything imports numpy: see ffsim/_runtime.py)

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

# property-based tests draw the same examples on every run (CI must not pass or fail by chance);
# HYPOTHESIS_PROFILE=explore draws fresh ones
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

ROOT = Path(__file__).resolve().parents[1]

# tests/gpu_sim runs in a subprocess (NUMBA_ENABLE_CUDASIM=1 must be set before numba is imported).  It takes
# minutes, mostly single-threaded Python (the simulator) and Numba compilation, so it is started as soon as
# the test that checks it is collected and runs on another core beside the rest of the suite; that test is
# moved to the end of the run, where it waits for the subprocess and asserts on its result.
SIM_TEST = "tests/test_gpu_backend.py::test_cuda_twins_in_the_simulator"
SIM_RUN = pytest.StashKey["SimulatorRun"]()


class SimulatorRun:
    """``pytest tests/gpu_sim`` under the CUDA simulator in a subprocess, its output in a temporary folder."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ffsim-gpusim-"))
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        env.pop("FFSIM_BACKEND", None)
        self._log = open(self.dir / "output.txt", "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(self.dir / "tmp"),
             "tests/gpu_sim"], stdout=self._log, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)

    def result(self, timeout: float) -> tuple[int, str]:
        """Wait for the run (killing it after ``timeout`` s); its exit status and output."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self._log.seek(0)
        return rc, self._log.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _simulator_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("numba.cuda") is not None


def pytest_collection_modifyitems(session, config, items):
    sim = [it for it in items if it.nodeid == SIM_TEST]
    if sim:  # last, so the suite's other tests run while the subprocess does
        items[:] = [it for it in items if it.nodeid != SIM_TEST] + sim


def pytest_collection_finish(session):
    config = session.config
    if (not config.option.collectonly and any(it.nodeid == SIM_TEST for it in session.items)
            and _simulator_available()):
        config.stash[SIM_RUN] = SimulatorRun()


def pytest_sessionfinish(session, exitstatus):
    run = session.config.stash.get(SIM_RUN, None)
    if run is not None:
        run.close()


@pytest.fixture
def simulator_run(request) -> SimulatorRun | None:
    """The run of tests/gpu_sim started at collection (None where numba has no CUDA target)."""
    return request.config.stash.get(SIM_RUN, None)
