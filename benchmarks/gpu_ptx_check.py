"""Compile every numba-cuda twin (crossbar and FF engine kernels) to PTX for a GPU architecture, without a GPU.

The CUDA simulator (the tests) runs the twins as Python and accepts code that a real GPU compiler would
reject; this check closes that gap as far as it can be closed without a device.  It drives Crossbars of
every shipped profile (and IR-drop variants of three) through programming, forward and transposed
reads, pulse updates in both pulse modes, read-back, drift and refresh on the CPU, and at each kernel call
compiles the twin (:mod:`ffsim.gpu.kernels`) with the argument types of that very call (NVVM only; nothing
is launched); then it runs training steps and evaluations of the FF models on the CPU and compiles the
twins of the engine's kernels (:mod:`ffsim.gpu.ff_kernels`) in the same way.  It needs numba-cuda with
the NVVM wheel, which the project does not depend on:

    python -m venv /tmp/vc && /tmp/vc/bin/pip install "numpy<2.4" "numba==0.68.1" "numba-cuda[cu12]" scipy
    /tmp/vc/bin/pip install --no-deps -e .
    /tmp/vc/bin/python benchmarks/gpu_ptx_check.py [--cc 9.0] [--cache]

Exit status 1 when a kernel fails to compile (its error is printed).

``--cache`` checks the kernels' disk cache (``ffsim.gpu.twin.jit_kernel``) instead: the same calls compile
through numba-cuda's dispatchers (typing, lowering, NVVM to PTX; the driver's link to a cubin is left out)
in two processes that share a fresh cache folder.  The first must compile and save every signature, the
second must load every one from the cache and compile none (exit status 1 otherwise); the time each took
is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numba
import numpy as np
from numba import cuda

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cc", default="9.0", help="compute capability to compile for (default 9.0, H100/H200)")
    ap.add_argument("--cache", action="store_true", help="check the kernels' disk cache (two processes)")
    ap.add_argument("--cache-pass", action="store_true", help=argparse.SUPPRESS)  # (one of those processes)
    args = ap.parse_args()
    if args.cache:
        return cache_check(args.cc)
    t0 = time.perf_counter()
    cc = tuple(int(v) for v in args.cc.split("."))
    if cuda.is_available() or numba.config.ENABLE_CUDASIM:
        print("note: a GPU or the simulator is present; this check is meant for machines without one")
    # device functions ask the current device for its architecture when a kernel that calls them is
    # compiled; without a device, answer with the target architecture
    import numba.cuda.dispatcher as dispatcher

    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=cc)
    if args.cache_pass:  # the dispatchers' compile asks the context; binding (the driver's link) is left out
        from numba.cuda.cudadrv import devices

        devices.get_context = lambda devnum=0: SimpleNamespace(device=SimpleNamespace(compute_capability=cc))
        dispatcher._Kernel.bind = lambda self: self._codelibrary.get_asm_str()  # (its PTX, to be cached)
    cuda.device_array = lambda shape, dtype: np.zeros(shape, dtype=dtype)
    cuda.to_device = lambda a: np.array(a)

    import ffsim.gpu.kernels as gk
    from ffsim.backend import _cpu_kernels
    from ffsim.crossbar import Crossbar
    from ffsim.profiles import load_profile

    compiled: dict[tuple[str, str], int] = {}
    failed: dict[tuple[str, str], str] = {}
    spent = [0.0]  # seconds in the GPU compilations (or cache loads)

    def compile_instead_of_launch(kernel, grid, block, *kargs) -> None:
        sig = tuple(numba.typeof(a) for a in kargs)
        key = (kernel.py_func.__name__, str(sig))
        if key in compiled or key in failed:
            return
        try:
            if args.cache_pass:
                t = time.perf_counter()
                compiled[key] = len(kernel.compile(sig)._codelibrary.get_asm_str())
                spent[0] += time.perf_counter() - t
            else:
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
                compiled[key] = len(ptx)
        except Exception as e:  # report every failure, not only the first
            failed[key] = f"{type(e).__name__}: {e}"

    gk._launch = compile_instead_of_launch
    gk._counter = lambda site: SimpleNamespace(array=lambda: np.zeros(1, dtype=np.int64), read=lambda: 0)
    gk._dummy3 = lambda: np.zeros((1, 1, 1), dtype=np.float32)
    cpu = _cpu_kernels()

    twins = gk.namespace()

    def both(name):
        f_cpu, f_gpu = getattr(cpu, name), getattr(twins, name)

        def run(*kargs):
            f_gpu(*[a.copy() if isinstance(a, np.ndarray) else a for a in kargs])
            return f_cpu(*kargs)
        return run

    kernels = SimpleNamespace(**{n: both(n) for n in vars(cpu)})
    profiles = [load_profile(p) for p in sorted((ROOT / "hardware_profiles").glob("*.toml"))]
    profiles += [load_profile(n).replace(tile={"rows": 16, "cols": 8, "ir_drop": 0.05})
                 for n in ("pcm", "high-variability", "ecram")]
    rng = np.random.default_rng(0)
    for prof in profiles:
        for mode in ("aggregate", "exact"):
            c = Crossbar(prof, 40, 30, fab_seed=1, rng=0, pulse_mode=mode)
            c._k = kernels
            W = (0.3 * rng.standard_normal((40, 30))).astype(np.float32)
            c.program(W)
            x = rng.random((5, 40), dtype=np.float32)
            c.forward(x)
            c.transposed(rng.standard_normal((5, 30)).astype(np.float32))
            c.program(0.5 * W, mask=rng.random((40, 30)) < 0.3)
            if c.profile.update.model != "none" and not (mode == "exact" and c.profile.update.max_pulses > 64):
                for _ in range(3):
                    c.pulse_update(x, (0.1 * rng.standard_normal((5, 30))).astype(np.float32), 0.05)
                if c.profile.update.polarity == "set_only":
                    c._refresh()
            c.read_weights()
            c.advance(1000.0)
            c.forward(x)
    # the FF engine's kernels (ffsim.gpu.ff_kernels) on the calls of real training steps
    from ffsim.backend import select_backend
    from ffsim.ff.config import FFConfig
    from ffsim.ff.trainer import build_model

    select_backend("cpu")._kernels[:] = [kernels]
    x = rng.random((12, 49), dtype=np.float32)
    y = np.arange(12) % 10
    for kw in ({}, {"negatives": "uniform", "label_mode": "concat", "goodness": "meansq", "norm": "l2"},
               {"model": "ff-unsupervised"}, {"model": "ff-recurrent", "recurrent_iters": 2,
                                               "recurrent_eval_iters": (1, 2)}, {"mode": "insitu", "profile": "pcm"}):
        model = build_model(FFConfig(layers=(40, 33), batch_size=6, **kw), 49, 10)
        r = np.random.default_rng(1)
        model.train_step(x[:6], y[:6], r, 1.0)
        if not kw:  # distillation's arguments
            model.train_step(x[:6], y[:6], r, 1.0, head_targets=r.dirichlet(np.ones(10), 6),
                             negative_probs=r.dirichlet(np.ones(10), 6), head_temperature=2.0)
        model.evaluate(x, y, batch=6)
    if args.cache_pass:
        from ffsim.gpu.twin import disk_cache_stats

        print(json.dumps({"signatures": len(compiled), "failed": len(failed), "errors": list(failed.values())[:3],
                          **disk_cache_stats(), "gpu_compile_s": spent[0], "seconds": time.perf_counter() - t0}))
        return 1 if failed else 0
    for (name, _), size in sorted(compiled.items()):
        print(f"ok    {name:16s} PTX {size:7d} chars")
    for (name, sig), err in failed.items():
        print(f"FAIL  {name} {sig}\n      {err}")
    names = {n for n, _ in compiled} | {n for n, _ in failed}
    print(f"{len(names)} kernels, {len(compiled)} signatures compiled for sm_{cc[0]}{cc[1]}, {len(failed)} failed")
    return 1 if failed else 0


def cache_check(cc: str) -> int:
    """Two processes (``--cache-pass``) with one fresh ``NUMBA_CACHE_DIR``: the first compiles and saves, the
    second loads every signature."""
    with tempfile.TemporaryDirectory(prefix="ffsim-cuda-cache-") as d:
        env = {**os.environ, "NUMBA_CACHE_DIR": d, "FFSIM_GPU_CACHE": "1"}
        env.pop("NUMBA_ENABLE_CUDASIM", None)
        runs = []
        for k in (1, 2):
            t = time.perf_counter()
            r = subprocess.run([sys.executable, __file__, "--cc", cc, "--cache-pass"], env=env, capture_output=True,
                               text=True, timeout=1200)
            if r.returncode != 0:
                print(r.stdout[-3000:], r.stderr[-3000:], sep="\n")
                print(f"process {k} failed (exit status {r.returncode})")
                return 1
            runs.append({**json.loads(r.stdout.strip().splitlines()[-1]), "process_s": time.perf_counter() - t})
            print(f"process {k}: {runs[-1]}")
    first, second = runs
    ok = (first["cached"] == first["kernels"] and first["misses"] == first["signatures"] > 0 and first["hits"] == 0
          and second["hits"] == first["signatures"] and second["misses"] == 0)
    print(f"{first['kernels']} kernels with a disk cache; {first['signatures']} signatures compiled in "
          f"{first['gpu_compile_s']:.1f} s, loaded in {second['gpu_compile_s']:.2f} s (whole processes, the CPU "
          f"kernels' compilation and cache included: {first['process_s']:.1f} s, {second['process_s']:.1f} s): "
          + ("ok" if ok else "FAIL: the second process did not load every signature from the cache"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
