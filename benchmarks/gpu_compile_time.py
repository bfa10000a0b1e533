"""What a new process pays before its first GPU training step: numba-cuda's compilation, with and without the
kernels' disk cache (``ffsim.gpu.twin.jit_kernel``, ``FFSIM_GPU_CACHE``).

Three processes, one after the other, each building the same small ``pcm`` in-situ FF network (784-200x2,
batch 100: the kernels and argument types of the 784-2000x4 benchmark, less host work) on the GPU and timing
its first two training steps:

1. warm-up, ``FFSIM_GPU_CACHE=1``: whatever the step needs is compiled and cached (the CPU kernels the host
   part uses, and the GPU kernels, unless an earlier run cached them);
2. ``FFSIM_GPU_CACHE=0``: every GPU kernel the step launches is compiled in the process (as before the disk
   cache), the CPU kernels loaded;
3. ``FFSIM_GPU_CACHE=1``: everything loaded from the caches.

Each reports its first step (compilation and loading included), its second step (neither), and the GPU
kernels' cache hits and misses: the compile time a process saves is run 2's first step minus run 3's.
Needs a CUDA GPU with CuPy and numba-cuda:

    python benchmarks/gpu_compile_time.py [--json out.json]
"""

# ruff: noqa: E402, I001, F401
from __future__ import annotations

import ffsim  # first, before numpy (see ffsim/_runtime.py)

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

CHILD = "--child"


def step_times() -> dict:
    """Build the network on the GPU backend and time its first two steps (synchronized)."""
    from ffsim.backend import select_backend, set_default_backend
    from ffsim.ff import FFConfig
    from ffsim.ff.trainer import build_model

    set_default_backend("gpu")
    bk = select_backend("gpu")
    sync = bk.xp.cuda.Device().synchronize if bk.is_gpu else (lambda: None)
    cfg = FFConfig(layers=(200, 200), epochs=1, batch_size=100, profile="pcm", mode="insitu", seed=0)
    model = build_model(cfg, 784, 10)
    rng = np.random.default_rng(0)
    x = bk.asarray(rng.random((200, 784), dtype=np.float32))
    y = np.arange(200) % 10
    times = []
    for s in range(2):
        t = time.perf_counter()
        model.train_step(x[100 * s:100 * (s + 1)], y[100 * s:100 * (s + 1)], rng, 1.0)
        sync()
        times.append(time.perf_counter() - t)
    out = {"first_step_s": times[0], "second_step_s": times[1], "simulated": bool(bk.simulated)}
    if bk.is_gpu:
        from ffsim.gpu.twin import disk_cache_stats

        out.update(disk_cache_stats())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument(CHILD, action="store_true", help=argparse.SUPPRESS)  # (one of the timed processes)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(step_times()))
        return 0
    from ffsim.backend import select_backend

    bk = select_backend("gpu")
    if not bk.is_gpu or bk.simulated:
        print("gpu_compile_time: needs a CUDA GPU with CuPy and numba-cuda (not the CPU, not the simulator)",
              file=sys.stderr)
        return 2
    runs = []
    for name, env_cache in (("warm-up", "1"), ("no disk cache", "0"), ("disk cache", "1")):
        env = {**os.environ, "FFSIM_GPU_CACHE": env_cache}
        t = time.perf_counter()
        r = subprocess.run([sys.executable, __file__, CHILD], env=env, capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0:
            print(r.stderr[-3000:], file=sys.stderr)
            print(f"gpu_compile_time: the {name!r} process failed (exit status {r.returncode})", file=sys.stderr)
            return 1
        res = {"run": name, "process_s": time.perf_counter() - t, **json.loads(r.stdout.strip().splitlines()[-1])}
        runs.append(res)
        print(f"{name:18s} process {res['process_s']:6.1f} s, first step {res['first_step_s']:6.2f} s, second step "
              f"{res['second_step_s']:.3f} s" + (f", kernels' cache hits {res['hits']}, misses {res['misses']}"
                                                 if "hits" in res else ""), flush=True)
    if args.json:
        from ffsim.io import write_json_atomic

        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
        write_json_atomic(args.json, {"device": name, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
