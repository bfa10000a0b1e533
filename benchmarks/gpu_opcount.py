"""Count what one FF training step asks of a GPU, without a GPU.

On a GPU the FF step is bound by launches, not arithmetic (BENCHMARKS.md, GPU backend: a 784 x 2000
product takes 0.08 ms, a step 11.7 ms on `ideal` and 37 ms on `pcm` in-situ).  This script runs
``model.train_step`` on the GPU backend with a counting stand-in for CuPy (numpy arrays that count every
operation) and the numba-cuda kernels in the CUDA simulator, and reports per mini-batch:

* ``array ops``: CuPy calls that launch a kernel on a GPU (ufuncs, reductions, matmuls, copies, fancy
  indexing and assignment; basic slicing is free);
* ``numba launches``: launches of the crossbar/device kernels (``ffsim.gpu.kernels``), by kernel;
* ``uploads`` / ``downloads``: host -> device and device -> host transfers (each a synchronization of the
  host with the GPU on CuPy's default stream), and scalar reads (``float(a)``, ``int(a)``, ``bool(a)``).

The counts do not depend on the layer widths, so small layers stand in for 2000-wide ones.

    python benchmarks/gpu_opcount.py --profile ideal --profile pcm --layers 4 [--model ff-recurrent ...]
"""

# ruff: noqa: E402, I001
from __future__ import annotations

import os

os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba is imported

import ffsim  # noqa: F401

import argparse
import collections
import sys

import numpy as np

from ffsim import backend
from ffsim.backend import Backend
from ffsim.gpu.standin import Namespace, StandIn, hooked_launches
from ffsim.gpu.standin import raw as _raw

COUNTS: collections.Counter = collections.Counter()
BY_LINE = False  # also count the operations by the ffsim line that asked (--by-line; slow)


def _op(name: str) -> None:
    COUNTS["array ops"] += 1
    COUNTS[f"op {name}"] += 1
    if BY_LINE:
        COUNTS[f"line {_caller()}"] += 1


class Dev(StandIn):
    """A 'device' array: every operation on it is counted, and every read of its value on the host."""

    METHODS = ("sum", "mean", "max", "min", "any", "all", "argmax", "cumsum", "dot", "std", "var")

    @classmethod
    def _operate(cls, name, fn, args, kwargs, result=True):
        _op(name)
        return super()._operate(name, fn, args, kwargs, result)

    def _scalar(self, f):
        COUNTS["scalar reads"] += 1
        COUNTS[f"scalar read at {_caller()}"] += 1
        return f(self.view(np.ndarray))


def _caller() -> str:
    """file:line of the ffsim code that asked (outside this file and ffsim/backend.py)."""
    import traceback

    for fr in reversed(traceback.extract_stack()[:-2]):
        if "/ffsim/" in fr.filename and not fr.filename.endswith(("backend.py", "gpu_opcount.py", "standin.py")):
            return f"{fr.filename.split('/ffsim/')[-1]}:{fr.lineno}"
    return "?"


class _XP(Namespace):
    ndarray = Dev

    @staticmethod
    def asarray(a, dtype=None):
        if not isinstance(a, Dev):
            COUNTS["uploads"] += 1
            COUNTS[f"upload at {_caller()}"] += 1
            return np.array(a, dtype=dtype, order="C").view(Dev)
        if dtype is not None and np.dtype(dtype) != a.dtype:
            _op("asarray (cast)")
            return a.view(np.ndarray).astype(dtype).view(Dev)
        return a

    @staticmethod
    def asnumpy(a):
        COUNTS["downloads"] += 1
        COUNTS[f"download at {_caller()}"] += 1
        return np.array(_raw(a))


COUNTING = Backend("gpu", _XP(), simulated=True)


def count_step(profile: str, mode: str, n_layers: int, width: int = 24, batch: int = 10, steps: int = 3,
               tile_rows: int | None = None, model: str = "ff") -> dict:
    """Per-step counts of an ``n_layers`` × ``width`` network on 36 inputs; ``tile_rows`` overrides the
    profile's tile height (small tiles: several tiles per array, as 2000-wide layers have)."""
    from ffsim.ff import FFConfig
    from ffsim.ff.trainer import build_model
    from ffsim.gpu import kernels

    backend._cache["gpu"] = COUNTING
    env_before = os.environ.get(backend.ENV_VAR)
    os.environ[backend.ENV_VAR] = "gpu"
    launches: collections.Counter = collections.Counter()

    def count_launch(launch, kernel, grid, block, args):
        launches[getattr(kernel, "__name__", None) or getattr(getattr(kernel, "py_func", None), "__name__", "?")] += 1

    real_read = kernels._Counter.read

    def counting_read(self):  # a kernel's count read back through numba (a transfer, a synchronization)
        COUNTS["downloads"] += 1
        COUNTS[f"download at {_caller()}"] += 1
        return real_read(self)

    kernels._Counter.read = counting_read
    try:
        with hooked_launches(count_launch):
            cfg = FFConfig(model=model, layers=(width,) * n_layers, epochs=1, batch_size=batch, profile=profile,
                           mode=mode, seed=0, profile_overrides={"tile": {"rows": tile_rows}} if tile_rows else {})
            net = build_model(cfg, 36, 10)
            rng = np.random.default_rng(0)
            x = rng.random((batch * (steps + 1), 36)).astype(np.float32)
            y = np.arange(batch * (steps + 1)) % 10
            # moved once where the model takes device images, as ffsim train does
            xd = COUNTING.asarray(x) if net.device_batches else x
            net.train_step(xd[:batch], y[:batch], rng, 1.0)  # warm-up: first-step allocations
            COUNTS.clear()
            launches.clear()
            for s in range(1, steps + 1):
                net.train_step(xd[s * batch:(s + 1) * batch], y[s * batch:(s + 1) * batch], rng, 1.0)
    finally:
        kernels._Counter.read = real_read
        backend._cache.pop("gpu", None)
        if env_before is None:  # the process's default backend as it was
            os.environ.pop(backend.ENV_VAR, None)
        else:
            os.environ[backend.ENV_VAR] = env_before
    per = {k: v / steps for k, v in COUNTS.items()}
    return {"model": model, "profile": profile, "mode": mode, "layers": n_layers,
            "array_ops": per.get("array ops", 0), "numba_launches": sum(launches.values()) / steps,
            "uploads": per.get("uploads", 0), "downloads": per.get("downloads", 0),
            "scalar_reads": per.get("scalar reads", 0),
            "ops": {k[3:]: v for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if k.startswith("op ")},
            "transfers": {k: v for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if " at " in k},
            "lines": {k[5:]: v for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if k.startswith("line ")},
            "launches": {k: v / steps for k, v in launches.most_common()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", action="append", help="profile(s) (default: ideal and pcm)")
    ap.add_argument("--layers", type=int, default=4, help="hidden layers (default 4)")
    ap.add_argument("--model", action="append", choices=["ff", "ff-recurrent", "ff-unsupervised"],
                    help="network(s) (default: ff, the supervised one)")
    ap.add_argument("--detail", action="store_true", help="also list the operations and kernels by name")
    ap.add_argument("--by-line", action="store_true", help="also count the operations by the ffsim line that asked")
    ap.add_argument("--json", help="write the counts here")
    args = ap.parse_args()
    global BY_LINE
    BY_LINE = args.by_line
    rows = []
    print("| model | profile | mode | array ops | numba launches | uploads | downloads | scalar reads |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for model in args.model or ["ff"]:
        for prof in args.profile or ["ideal", "pcm"]:
            mode = "ideal" if prof == "ideal" else "insitu"
            r = count_step(prof, mode, args.layers, model=model)
            rows.append(r)
            print(f"| {model} | {prof} | {mode} | {r['array_ops']:.0f} | {r['numba_launches']:.0f} | "
                  f"{r['uploads']:.0f} | {r['downloads']:.0f} | {r['scalar_reads']:.0f} |", flush=True)
    if args.detail:
        for r in rows:
            print(f"\n{r['model']} {r['profile']} {r['mode']}: operations per step")
            for k, v in r["ops"].items():
                print(f"  {v:7.1f}  {k}")
            if r["lines"]:
                print("  operations per step, by the line that asked")
                for k, v in r["lines"].items():
                    print(f"  {v:7.1f}  {k}")
            print("  transfers per step, by the line that asked")
            for k, v in r["transfers"].items():
                print(f"  {v:7.1f}  {k}")
            print("  numba launches per step")
            for k, v in r["launches"].items():
                print(f"  {v:7.1f}  {k}")
    if args.json:
        from ffsim.io import write_json_atomic

        write_json_atomic(args.json, {"layers": args.layers, "per_step": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
