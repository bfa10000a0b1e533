"""GPU benchmarks (needs a CUDA GPU with CuPy and numba.cuda; refuses to run on the CPU or the simulator).

* W1 / W2 on the GPU backend, as ratios to a CuPy ideal matmul of the same shape measured in the same
  process, interleaved (ideal, ffsim, ideal, ffsim, ...), median of the repeats: W1 = ``forward(x)`` vs
  ``x @ W``; W2 = ``forward(x)`` + ``pulse_update(x, d, lr)`` vs ``x @ W`` + ``x.T @ d`` (784 x 2000,
  batch 256, the inputs of benchmarks/bench_crossbar.py, already on the device).
* The FF training epoch of issue 6: MNIST 784-2000x4, batch 100, ``pcm`` in-situ, 600 mini-batches
  (target <= 1.0 s/epoch on an H100; a faithful PyTorch FF without device simulation: 3.25 s/epoch).
* Optional diagnostics of an FF step: ``--profile-steps N`` (cProfile: host time per call),
  ``--gpu-timeline [DIR]`` (every kernel, copy and memset of 10 mini-batches recorded by CUPTI through
  PyTorch's profiler: GPU busy time against wall time, by kernel; needs PyTorch) and ``--kernel-times``
  (each numba-cuda launch of one mini-batch replayed alone behind a sleeping kernel).

Run on the GPU machine:

    python benchmarks/bench_gpu.py --profile pcm --profile ecram --profile ideal --repeats 40 --ff pcm --ff ideal \
        --json benchmarks/results_gpu.json
"""

# ruff: noqa: E402, I001, F401
from __future__ import annotations

import ffsim  # first, before numpy (see ffsim/_runtime.py)

import argparse
import json
import os
import sys
import time

import numpy as np

from ffsim import Crossbar
from ffsim.backend import select_backend, set_default_backend


def _median_pair(sync, f_ideal, f_sim, repeats: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        f_ideal()
        f_sim()
    sync()
    ti, ts = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f_ideal()
        sync()
        ti.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        f_sim()
        sync()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ti)), float(np.median(ts))


def crossbar(bk, profile: str, repeats: int, n_in: int = 784, n_out: int = 2000, batch: int = 256) -> dict:
    cp = bk.xp
    sync = cp.cuda.Device().synchronize
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((n_in, n_out)) / 3).astype(np.float32)
    x = np.maximum(rng.standard_normal((batch, n_in)), 0).astype(np.float32)
    d = (0.01 * rng.standard_normal((batch, n_out))).astype(np.float32)
    chip = Crossbar(profile, n_in, n_out, fab_seed=1, rng=0, w_max=1.0, backend=bk)
    chip.program(W)
    Wd, xd, dd = cp.asarray(W), cp.asarray(x), cp.asarray(d)
    lr = 0.01

    def ideal_step():
        _ = xd @ Wd
        Wd[...] += lr * (xd.T @ dd)

    def sim_step():
        chip.forward(xd)
        if chip.profile.update.model != "none":
            chip.pulse_update(xd, dd, lr)

    i1, s1 = _median_pair(sync, lambda: xd @ Wd, lambda: chip.forward(xd), repeats)
    i2, s2 = _median_pair(sync, ideal_step, sim_step, repeats)
    return {"profile": profile, "W1_ms": 1e3 * s1, "W1_ideal_ms": 1e3 * i1, "W1_ratio": s1 / i1,
            "W2_ms": 1e3 * s2, "W2_ideal_ms": 1e3 * i2, "W2_ratio": s2 / i2}


def kernel_times(model, x, y, batch: int, rng, repeats: int = 20) -> dict[str, list]:
    """GPU time of the numba-cuda kernels of one FF mini-batch: {kernel: [launches per step, ms per step]}.

    One ``train_step`` runs with every launch recorded (kernel, configuration, arguments); then each launch
    is replayed ``repeats`` times behind a kernel that keeps the GPU asleep for ~20 ms, so the host has
    queued all of them before the GPU starts: the time between a CUDA event recorded after the sleep and
    one after the last replay is GPU time only, not the host's cost of launching.  The replays act on the
    step's arrays in place (the model is of no further use afterwards), except that small int64 counters
    (the sparse updates' list lengths) are put back after each kernel's replays.  cuBLAS and CuPy operations are not
    included."""
    import collections

    import cupy
    from numba import cuda

    from ffsim.gpu import kernels as gk

    @cuda.jit
    def sleep(n):
        for _ in range(n):
            cuda.nanosleep(np.uint32(1000000))

    calls = []
    real = gk._launch

    def record(kernel, grid, block, *args):
        calls.append((kernel, grid, block, args))
        return real(kernel, grid, block, *args)

    gk._launch = record
    try:
        model.train_step(x[:batch], y[:batch], rng, 1.0)
    finally:
        gk._launch = real
    cupy.cuda.Device().synchronize()
    out: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
    for kernel, grid, block, args in calls:
        name = getattr(getattr(kernel, "py_func", None), "__name__", str(kernel))
        # the list lengths of the sparse updates (and the counters) as the step left them: replaying a
        # kernel that appends to a list must not lengthen the list the next kernel walks
        counters = [(a, a.copy()) for a in args if isinstance(a, cupy.ndarray) and a.dtype == np.int64 and a.size <= 2]
        sleep[1, 1](20)
        e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
        e0.record()
        for _ in range(repeats):
            real(kernel, grid, block, *args)
        e1.record()
        e1.synchronize()
        for a, v in counters:
            a[...] = v
        out[name][0] += 1
        out[name][1] += cupy.cuda.get_elapsed_time(e0, e1) / repeats
    return dict(sorted(out.items(), key=lambda kv: -kv[1][1]))


def gpu_timeline(model, x, y, batch: int, rng, steps: int = 10, trace: str | None = None) -> dict:
    """Every GPU activity of ``steps`` FF mini-batches, recorded by PyTorch's profiler (CUPTI records the
    kernels, copies and memsets of the whole process: CuPy, cuBLAS and numba-cuda alike; PyTorch only has
    to share the device's primary context, as CuPy does).  Returns the wall time per step, the GPU's busy
    time per step (the union of the activity intervals) and the activities by name, GPU time first; with
    ``trace`` the Chrome trace is also written there."""
    import collections
    import tempfile

    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.init()
    sync = select_backend().xp.cuda.Device().synchronize
    model.train_step(x[:batch], y[:batch], rng, 1.0)
    sync()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        in_flight(model, x, y, batch, rng, range(steps))
        sync()
        wall = time.perf_counter() - t0
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
        if trace:
            os.replace(path, trace)
    finally:
        if os.path.exists(path):
            os.remove(path)
    gpu = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    by: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
    spans = sorted((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))) for e in gpu)
    busy, end = 0.0, -1e300
    for a, b in spans:  # union of the intervals (streams may overlap)
        if b > end:
            busy += b - max(a, end)
            end = b
    for e in gpu:
        name = e["name"] if len(e["name"]) < 90 else e["name"][:87] + "..."
        by[name][0] += 1
        by[name][1] += float(e.get("dur", 0)) / 1e3
    rows = sorted(([k, n / steps, ms / steps] for k, (n, ms) in by.items()), key=lambda r: -r[2])
    return {"steps": steps, "wall_ms_per_step": 1e3 * wall / steps, "gpu_busy_ms_per_step": busy / 1e3 / steps,
            "activities_per_step": len(gpu) / steps, "by_name": rows}


def in_flight(model, x, y, batch: int, rng, batches) -> int:
    """``model``'s steps on the given mini-batches as ``ffsim train`` runs them: mini-batch k + 1 is submitted
    before k's statistics are read (one step in flight); returns how many ran."""
    prev, n = None, 0
    for b in batches:
        step = model.submit_step(x[b * batch:(b + 1) * batch], y[b * batch:(b + 1) * batch], rng, 1.0)
        if prev is not None:
            prev.stats()
        prev, n = step, n + 1
    if prev is not None:
        prev.stats()
    return n


def ff_epoch(layers: tuple[int, ...], profile: str, mode: str, batches: int, batch: int = 100,
             max_seconds: float = float("inf"), profile_steps: int = 0, label: str = "") -> tuple[float, int, str]:
    """Seconds per 600-mini-batch epoch of FF steps on the GPU, one in flight as in ``ffsim train``
    (:func:`in_flight`; after one warm-up step that compiles the kernels), from ``batches`` timed
    mini-batches, or fewer if ``max_seconds`` runs out (checked every 50; the figure is then scaled from
    the mini-batches done; both are reported).  With ``profile_steps``,
    that many more steps run under cProfile afterwards and the top of the profile (by own time) is
    returned as text (host time per call of each function: what launches and transfers cost).  ``label``
    (default: the profile) names the run in the diagnostics."""
    from ffsim.data import load_mnist
    from ffsim.ff import FFConfig
    from ffsim.ff.trainer import build_model

    ds = load_mnist()
    x = ds.flat(ds.x_train)[: batches * batch]
    y = ds.y_train[: batches * batch].astype(np.int64)
    cfg = FFConfig(layers=layers, epochs=1, batch_size=batch, profile=profile, mode=mode, seed=0)
    model = build_model(cfg, 784, 10)
    x = model.backend.asarray(x)  # the images move to the device once, as in ffsim train
    rng = np.random.default_rng([0, 2])
    t0 = time.perf_counter()
    model.train_step(x[:batch], y[:batch], rng, 1.0)  # warm up (kernel compilation)
    sync = select_backend().xp.cuda.Device().synchronize
    sync()
    print(f"  warm-up step (compiles the kernels): {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    done = 0
    for start in range(0, batches, 50):
        done += in_flight(model, x, y, batch, rng, range(start, min(start + 50, batches)))
        sync()
        if time.perf_counter() - t0 > max_seconds:
            break
    seconds = (time.perf_counter() - t0) * 600 / done
    label = label or profile
    runner = model.__dict__.get("_graphs")
    if runner is not None:
        GRAPH_STATS["last"] = {"graph_captures": runner.captures, "graph_replays": runner.replays}
        print(f"  CUDA graph: {runner.captures} capture(s), {runner.replays} replays", flush=True)
    text = ""
    if profile_steps:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        in_flight(model, x, y, batch, rng, [b % batches for b in range(profile_steps)])
        sync()
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(30)
        text = f"cProfile of {profile_steps} mini-batches ({label} {mode}):\n{buf.getvalue()}"
    if TIMELINE:
        try:
            tl = gpu_timeline(model, x, y, batch, rng, trace=TIMELINE.get("trace", {}).get(label))
        except Exception as e:  # noqa: BLE001 - as above
            lines = [f"GPU timeline ({label} {mode}) failed: {type(e).__name__}: {e}"]
            TIMELINE[label] = {"error": lines[0]}
        else:
            TIMELINE[label] = tl
            lines = [f"GPU timeline of {tl['steps']} mini-batches ({label} {mode}): wall "
                     f"{tl['wall_ms_per_step']:.3f} ms/step (under the profiler), GPU busy "
                     f"{tl['gpu_busy_ms_per_step']:.3f} ms/step, {tl['activities_per_step']:.0f} GPU activities/step"]
            lines += [f"  {ms:8.3f} ms {n:6.1f}x  {name}" for name, n, ms in tl["by_name"][:40]]
        text = "\n".join([text, *lines]) if text else "\n".join(lines)
    if KERNEL_TIMES and runner is None:  # (a graph replays the same kernels: timed in the run without one)
        try:
            times = kernel_times(model, x, y, batch, rng)
        except Exception as e:  # noqa: BLE001 - a failed extra measurement must not lose the epoch's
            lines = [f"kernel times ({label} {mode}) failed: {type(e).__name__}: {e}"]
            KERNEL_TIMES[label] = {"error": lines[0]}
        else:
            total = sum(ms for _, ms in times.values())
            lines = [f"GPU time of the numba-cuda kernels of one mini-batch ({label} {mode}): {total:.3f} ms"]
            lines += [f"  {name:<16} {n:4d} launches {ms:8.3f} ms" for name, (n, ms) in times.items()]
            KERNEL_TIMES[label] = {"total_ms": total, "by_kernel": times}
        text = "\n".join([text, *lines]) if text else "\n".join(lines)
    return seconds, done, text


def save(out: dict, path: str | None) -> None:
    """Write the results so far to ``path`` (atomically: a run stopped by its time limit keeps what it measured)."""
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, path)


GRAPH_STATS: dict = {}  # the last FF epoch's graph runner: captures and replays
KERNEL_TIMES: dict = {}  # filled when --kernel-times is given (a non-empty dict switches it on)
TIMELINE: dict = {}  # likewise for --gpu-timeline


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", action="append", help="profile(s) for W1/W2 (default: pcm)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--ff", action="append", metavar="PROFILE",
                    help="also time the FF epoch 784-2000x4 (in-situ) on this profile (repeatable; the target: pcm)")
    ap.add_argument("--ff-batches", type=int, default=600, help="mini-batches timed (scaled to 600)")
    ap.add_argument("--ff-max-seconds", type=float, default=float("inf"),
                    help="stop timing an FF epoch after this long (checked every 50 mini-batches; scaled to 600)")
    ap.add_argument("--no-view-cache", action="store_true",
                    help="pass CuPy arrays to the numba-cuda kernels as they are (ffsim.gpu.kernels.CACHE_VIEWS off)")
    ap.add_argument("--no-fast-launch", action="store_true",
                    help="launch the numba-cuda kernels through numba's launcher (ffsim.gpu.kernels.FAST_LAUNCH off)")
    ap.add_argument("--profile-steps", type=int, default=0,
                    help="after timing each FF epoch, run this many mini-batches under cProfile and print its top")
    ap.add_argument("--kernel-times", action="store_true",
                    help="after each FF epoch, the GPU time of each numba-cuda kernel of one mini-batch (replayed)")
    ap.add_argument("--gpu-timeline", metavar="DIR", nargs="?", const="",
                    help="after each FF epoch, every GPU activity of 10 mini-batches under PyTorch's profiler "
                         "(CUPTI): GPU busy time vs wall time, by kernel; with DIR, the Chrome traces go there")
    ap.add_argument("--ff-single-pass", action="store_true",
                    help="time each FF epoch again with the sparse updates in one pass over all cells "
                         "(ffsim.gpu.kernels.COMPACT off), diagnostics included")
    ap.add_argument("--ff-graph", action="store_true",
                    help="time each FF epoch again with the step captured in a CUDA graph and replayed "
                         "(ffsim.gpu.graph, FFSIM_GPU_GRAPH=1), diagnostics included")
    ap.add_argument("--ff-tf32", action="store_true",
                    help="time each in-situ FF epoch once more with the noise and coincidence products on TF32 "
                         "tensor cores (ffsim.gpu.blas.TF32, FFSIM_GPU_TF32=1), with graphs if --ff-graph")
    ap.add_argument("--ff-streams", action="store_true",
                    help="time each in-situ FF epoch once more with the layers' updates on streams of their own "
                         "(ffsim.gpu.streams, FFSIM_GPU_STREAMS=1), with graphs if --ff-graph and TF32 if --ff-tf32")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    bk = select_backend("gpu")
    if not bk.is_gpu or bk.simulated:
        print("bench_gpu: needs a CUDA GPU with CuPy and numba.cuda (not the CPU, not the simulator)", file=sys.stderr)
        return 2
    import cupy

    from ffsim.gpu import kernels

    kernels.CACHE_VIEWS = not args.no_view_cache
    kernels.FAST_LAUNCH = kernels.FAST_LAUNCH and not args.no_fast_launch
    if args.kernel_times:
        KERNEL_TIMES["on"] = True
    if args.gpu_timeline is not None:
        TIMELINE["trace"] = ({lab: f"{args.gpu_timeline}/timeline_{lab.replace(' ', '_')}.json"
                              for p in args.ff or []
                              for lab in (p, f"{p} single-pass", f"{p} graph", f"{p} tf32", f"{p} graph tf32",
                                          f"{p} streams", f"{p} graph streams", f"{p} tf32 streams",
                                          f"{p} graph tf32 streams")}
                             if args.gpu_timeline else {})

    dev = cupy.cuda.Device()
    name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"].decode()
    out = {"device": name, "view_cache": kernels.CACHE_VIEWS, "fast_launch": kernels.FAST_LAUNCH,
           "compact": kernels.COMPACT, "crossbar": [], "ff": []}
    print(f"device: {name}; numba views of CuPy arguments cached: {kernels.CACHE_VIEWS}; "
          f"fast launch: {kernels.FAST_LAUNCH}; sparse updates listed first: {kernels.COMPACT}")
    print("| profile | W1 ffsim (ms) | W1 CuPy (ms) | W1 ratio | W2 ffsim (ms) | W2 CuPy (ms) | W2 ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for prof in args.profile or ["pcm"]:
        r = crossbar(bk, prof, args.repeats)
        out["crossbar"].append(r)
        print(f"| {prof} | {r['W1_ms']:.2f} | {r['W1_ideal_ms']:.2f} | **{r['W1_ratio']:.2f}x** | {r['W2_ms']:.2f} | "
              f"{r['W2_ideal_ms']:.2f} | **{r['W2_ratio']:.2f}x** |")
    save(out, args.json)
    from ffsim.gpu import blas, graph, streams

    compact, graphs, tf32, lanes = kernels.COMPACT, graph.ENABLED, blas.TF32, streams.ENABLED
    runs = [(p, compact, graphs, tf32, lanes) for p in args.ff or []]
    if args.ff_single_pass and compact:  # (ideal has no pulse update, nor noise products)
        runs += [(p, False, graphs, tf32, lanes) for p in args.ff or [] if p != "ideal"]
    if args.ff_graph and not graphs:  # last: a failure there cannot cost the other figures
        runs += [(p, compact, True, tf32, lanes) for p in args.ff or []]
    if args.ff_tf32 and not tf32:
        runs += [(p, compact, graphs or args.ff_graph, True, lanes) for p in args.ff or [] if p != "ideal"]
    if args.ff_streams and not lanes:
        runs += [(p, compact, graphs or args.ff_graph, tf32 or args.ff_tf32, True) for p in args.ff or []
                 if p != "ideal"]
    for prof, listed, graphed, fast32, laned in runs:
        set_default_backend("gpu")
        kernels.COMPACT, graph.ENABLED, blas.TF32, streams.ENABLED = listed, graphed, fast32, laned
        mode = "ideal" if prof == "ideal" else "insitu"
        lab = prof if listed == compact else f"{prof} single-pass"
        lab = lab if graphed == graphs else f"{lab} graph"
        lab = lab if fast32 == tf32 else f"{lab} tf32"
        lab = lab if laned == lanes else f"{lab} streams"
        try:
            s, done, text = ff_epoch((2000, 2000, 2000, 2000), prof, mode, args.ff_batches,
                                     max_seconds=args.ff_max_seconds, profile_steps=args.profile_steps, label=lab)
        except Exception as e:  # noqa: BLE001 - a failed variant must not lose the others' figures
            print(f"FF epoch {lab} failed: {type(e).__name__}: {e}", flush=True)
            out["ff"].append({"profile": prof, "mode": mode, "compact": listed, "graph": graphed, "tf32": fast32,
                              "streams": laned, "error": f"{type(e).__name__}: {e}"})
            save(out, args.json)
            continue
        out["ff"].append({"layers": [2000] * 4, "batch": 100, "profile": prof, "mode": mode, "compact": listed,
                          "graph": graphed, "tf32": fast32, "streams": laned, **GRAPH_STATS.pop("last", {}),
                          "batches_timed": done, "seconds_per_epoch": s, **({"cprofile": text} if text else {}),
                          **({"kernel_times": KERNEL_TIMES[lab]} if lab in KERNEL_TIMES else {}),
                          **({"gpu_timeline": TIMELINE[lab]} if lab in TIMELINE else {})})
        if text:
            print(text, flush=True)
        print(f"FF 784-2000x4, batch 100, {lab} {mode}: {s:.2f} s/epoch ({done} mini-batches timed, scaled to 600; "
              "target for pcm in-situ <= 1.0 s on an H100)", flush=True)
        save(out, args.json)
    kernels.COMPACT, graph.ENABLED, blas.TF32, streams.ENABLED = compact, graphs, tf32, lanes
    _summary(out["ff"])
    out["fast_launch_stats"] = kernels.fast_launch_stats()
    print("fast launch:", out["fast_launch_stats"])
    save(out, args.json)
    return 0


def _summary(runs: list[dict]) -> None:
    """The FF epochs side by side (what decides the GPU settings' defaults: BENCHMARKS.md)."""
    if not runs:
        return
    print("\n| profile | sparse lists | graph | TF32 | streams | s/epoch | GPU busy ms/step | wall ms/step, profiled |")
    print("|---|---|---|---|---|---:|---:|---:|")
    for r in runs:
        tl = r.get("gpu_timeline") or {}
        busy = f"{tl['gpu_busy_ms_per_step']:.2f}" if "gpu_busy_ms_per_step" in tl else "-"
        wall = f"{tl['wall_ms_per_step']:.2f}" if "wall_ms_per_step" in tl else "-"
        secs = f"{r['seconds_per_epoch']:.2f}" if "seconds_per_epoch" in r else f"failed: {r.get('error', '?')[:60]}"
        print(f"| {r['profile']} | {r['compact']} | {r['graph']} | {r['tf32']} | {r.get('streams', False)} | {secs} | "
              f"{busy} | {wall} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
