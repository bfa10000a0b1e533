"""Numba's cache of ffsim's kernels goes stale when a helper they compile in changes (ffsim._numba_cache)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import ffsim
from ffsim._numba_cache import module_closure
from ffsim.devices import pulse

PKG = Path(ffsim.__file__).resolve().parent

RUN = textwrap.dedent("""
    import sys
    if sys.argv[1] == "with":
        import ffsim
        from ffsim._numba_cache import install
        assert install({"stalepkg": sys.argv[2] + "/stalepkg"})
    sys.path.insert(0, sys.argv[2])
    from stalepkg.kern import kern
    print(kern(1), len(kern.stats.cache_hits))
""")


def _package(root: Path, k: int) -> None:
    pkg = root / "stalepkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "consts.py").write_text(f"K = {k}\n")
    (pkg / "helper.py").write_text("from numba import njit\n\nfrom stalepkg.consts import K\n\n\n"
                                   "@njit(inline='always')\ndef helper(x):\n    return x + K\n")
    (pkg / "kern.py").write_text("from numba import njit\n\nfrom stalepkg.helper import helper\n\n\n"
                                 "@njit(cache=True)\ndef kern(x):\n    return helper(x)\n")


def _run(mode: str, root: Path) -> tuple[int, int]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    r = subprocess.run([sys.executable, "-c", RUN, mode, str(root)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    value, hits = r.stdout.split()
    return int(value), int(hits)


def test_an_edit_to_an_imported_module_recompiles_the_cached_kernel(tmp_path):
    """A constant two imports away from the kernel's file changes: with the closure stamp the kernel is
    compiled again; with Numba's own stamp (the kernel's file only) the old machine code comes back."""
    for mode in ("with", "without"):
        root = tmp_path / mode
        root.mkdir()
        _package(root, 1)
        assert _run(mode, root) == (2, 0)  # compiled, and cached
        assert _run(mode, root) == (2, 1)  # loaded from the cache
        _package(root, 5)  # helper.py and kern.py unchanged, consts.py edited
        expected = (6, 0) if mode == "with" else (2, 1)
        assert _run(mode, root) == expected, mode


def test_the_pulse_kernels_stamp_covers_the_device_physics_and_not_the_cli():
    files = {str(p.relative_to(PKG)) for p in module_closure(PKG / "devices" / "pulse.py")}
    assert {"devices/pulse.py", "devices/physics.py", "devices/rng.py", "dispatch.py"} <= files
    assert not files & {"cli.py", "ff/trainer.py", "crossbar/crossbar.py", "__init__.py"}
    locator = pulse.pulse_aggregate.dispatcher._cache._impl.locator
    assert type(locator).__name__ == "ClosureStampLocator"
    assert locator.get_cache_path() == str(PKG / "devices" / "__pycache__") or os.environ.get("NUMBA_CACHE_DIR")


def test_install_into_another_caching_module_adds_its_stamp(tmp_path):
    """numba-cuda keeps its own copy of Numba's caching module: the locator goes first in that module's list
    too, and its stamps there carry the extra part (numba-cuda's version)."""
    from types import SimpleNamespace

    from ffsim._numba_cache import install

    class Base:
        pass

    class Inner(Base):
        @classmethod
        def from_function(cls, py_func, py_file):
            return cls()

        def get_source_stamp(self):
            return "own"

        def get_cache_path(self):
            return str(tmp_path)

    impl = type("CacheImpl", (), {"_locator_classes": [Inner]})
    caching = SimpleNamespace(CacheImpl=impl, _CacheLocator=Base)
    assert install(caching=caching, extra_stamp="numba-cuda 9.9")
    assert install(caching=caching, extra_stamp="numba-cuda 9.9")  # once only
    assert len(impl._locator_classes) == 2 and impl._locator_classes[1] is Inner
    closure = impl._locator_classes[0]
    loc = closure.from_function(pulse.pulse_aggregate.py_func, pulse.__file__)
    stamp = loc.get_source_stamp()
    assert stamp[0] == "own" and stamp[2] == "numba-cuda 9.9" and len(stamp) == 3
    assert loc.get_cache_path() == str(tmp_path)
    outside = tmp_path / "elsewhere.py"
    outside.write_text("def f():\n    pass\n")
    assert closure.from_function(None, str(outside)) is None  # not a registered package's file: Numba's own


class _FakeCache:
    def __init__(self, fail_load=False, fail_save=False):
        self.saved, self.fail_load, self.fail_save = [], fail_load, fail_save

    def load_overload(self, sig, ctx):
        if self.fail_load:
            raise EOFError("truncated entry")
        return None

    def save_overload(self, sig, data):
        if self.fail_save:
            raise RuntimeError("Cannot pickle CUDACodeLibrary with linking files")
        self.saved.append(sig)


class _FakeKernel:
    def __init__(self, cache=None, fail_enable=False):
        self.py_func, self._cache_made, self.fail_enable = _FakeKernel, cache, fail_enable

    def enable_caching(self):
        if self.fail_enable:
            raise RuntimeError("cannot cache function 'k': no locator available")
        self._cache = self._cache_made


def test_gpu_disk_cache_failures_warn_once_and_compile_instead(monkeypatch):
    """The GPU kernels' disk cache (ffsim.gpu.twin.disk_cache) only saves time: a cache that cannot be set up,
    an entry that cannot be read or saved, each warns once (naming what failed) and the kernel compiles."""
    import warnings

    import pytest

    from ffsim.gpu import twin

    monkeypatch.setattr(twin, "_warned", set())
    with pytest.warns(RuntimeWarning, match=r"disk cache: setting it up failed .*no locator available"):
        assert twin.disk_cache(_FakeKernel(fail_enable=True)) is False

    ok = _FakeKernel(_FakeCache())
    assert twin.disk_cache(ok) is True
    ok._cache.save_overload("sig", "data")
    assert ok._cache.saved == ["sig"] and ok._cache.load_overload("sig", None) is None

    bad = _FakeKernel(_FakeCache(fail_load=True, fail_save=True))
    assert twin.disk_cache(bad) is True
    with pytest.warns(RuntimeWarning, match=r"loading an entry failed .*EOFError: truncated entry"):
        assert bad._cache.load_overload("sig", None) is None  # compiled instead
    with pytest.warns(RuntimeWarning, match=r"saving an entry failed .*linking files"):
        bad._cache.save_overload("sig", "data")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per kind: no second warning
        assert bad._cache.load_overload("sig", None) is None
        bad._cache.fail_save = False
        bad._cache.save_overload("sig", "data")  # that kernel saves no more after a failed save
    assert bad._cache.saved == []


def test_gpu_kernels_are_cached_on_disk_unless_turned_off():
    """Every GPU kernel has the disk cache on, with the closure-stamp locator (numba-cuda's own caching module
    where numba-cuda is installed, Numba's otherwise); ``FFSIM_GPU_CACHE=0`` leaves them all without it.  (No
    GPU needed: the cache is set up when the kernels are defined.)"""
    import json

    code = ("import json, ffsim\n"
            "from ffsim.gpu import kernels\n"
            "from ffsim.gpu.twin import disk_cache_stats\n"
            "c = getattr(kernels._pulse_agg, '_cache', None)\n"
            "loc = type(c._impl.locator).__name__ if hasattr(c, '_impl') else None\n"
            "print(json.dumps({**disk_cache_stats(), 'locator': loc}))\n")
    out = {}
    for flag in ("1", "0"):
        env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "FFSIM_GPU_CACHE")}
        env["FFSIM_GPU_CACHE"] = flag
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        out[flag] = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["1"]["kernels"] > 20 and out["1"]["cached"] == out["1"]["kernels"], out
    assert out["1"]["locator"] == "ClosureStampLocator"
    assert out["1"]["hits"] == out["1"]["misses"] == 0  # nothing launched
    assert out["0"]["kernels"] == out["1"]["kernels"] and out["0"]["cached"] == 0 and out["0"]["locator"] is None
