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
