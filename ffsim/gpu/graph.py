"""CUDA-graph replay of the FF step (GPU backend; ``FFSIM_GPU_GRAPH=1``, off by default).

The supervised, recurrent and unsupervised networks' steps are captured alike: each model's
``_device_step(x, up, gain)`` is its mini-batch's device work from the images and the uploaded values
(:meth:`ffsim.ff.model.LayeredModel.queue_device_step`).

An FF step on a GPU issues ~250 launches and array operations whose GPU work takes a few µs each: the step
is bound by the host's cost of issuing them (BENCHMARKS.md).  A CUDA graph captures the step's work once
and replays it with one launch.  The step is the same computation at every mini-batch of one shape and
learning-rate gain; what changes between mini-batches travels in buffers the graph reads:

* the images (copied into a fixed device buffer) and the label codes and host draws of the negatives
  (hard negatives' uniforms, uniform negatives' labels, the unsupervised network's hybrid images; uploaded
  with the keys, one transfer);
* the random keys.  Each keyed kernel reads its key from a device tape at the slot where the capture
  recorded the key's draw (``ffsim.gpu.kernels.CAPTURE``).  Before each replay the host draws the keys
  again from the same generators in the same order (:func:`ffsim.devices.rng.draw_key`), so the replays
  draw exactly the random numbers the step would draw without a graph;
* the per-step counters (zeroed within the graph) and the statistics (read back once, as without a graph,
  but asynchronously: a replay returns once it is queued, and :meth:`FFNetwork.submit_step`'s caller reads
  the statistics when it needs them, so the host prepares the next step while the GPU runs this one).

What the step adds to the chips' operation counters is replayed too: the host's increments (a function of
the shapes) are added again after each replay, and the device counts are copied out of the graph's
buffers and left pending, as without a graph.

The capture is checked before the graph is used; a step that cannot be captured runs as before (one
warning per reason):

* every generator advanced by exactly the draws of the recorded keys (no other host randomness);
* every device array of the model is the same array after the step (state changes in place: a replay
  writes where the capture saw it), except the ``last_*`` activities a pass leaves for its caller;
* no plain attribute (a flag, a count) changed, so the next step would take the same path;
* nothing in the step needed a transfer or a first-time check (the first mini-batch of each shape runs
  without a graph to compile the kernels and check the GEMM layouts).

A failed check restores the generators, attributes and counters, so the step then runs exactly as it
would have.  Memory: the graph's temporaries come from a private CuPy pool, held for the runner's life;
one graph is kept (a new gain, as the learning-rate schedule decays, is captured again).
``tests/gpu_sim/test_graph.py`` runs the runner with an emulated capture (operations recorded and
replayed on the CUDA simulator) and checks that its steps equal the steps without a graph, bit for bit
(the per-row sums that float atomics add in the simulator's thread order, to 1e-12).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from ffsim.crossbar.ops import OpCounter
from ffsim.devices import rng as _rng
from ffsim.gpu import kernels as _gk
from ffsim.gpu.kernels import GraphUnsupported

__all__ = ["ENABLED", "CupyCapturer", "GraphUnsupported", "StepGraphs", "record", "runner_for"]

ENABLED = os.environ.get("FFSIM_GPU_GRAPH", "0") == "1"
KEYS_MAX = 512
_warned: set = set()


class CupyCapturer:
    """Capture and replay on a GPU: CuPy stream capture on a stream of the runner's own (blocking, so work
    on the legacy default stream waits for it), temporaries from a private memory pool.  A replay's upload
    and download go through page-locked host buffers (CuPy's pinned pool), so neither waits for the GPU:
    the host returns as soon as the step is queued, and the statistics are read when asked for."""

    def __init__(self):
        import cupy

        self._cp = cupy
        self.stream = cupy.cuda.Stream(non_blocking=False)
        self.pool = cupy.cuda.MemoryPool()

    @contextlib.contextmanager
    def capturing(self, protect):  # noqa: ARG002 - nothing runs during a real capture
        cp = self._cp
        box = {}
        with self.stream, cp.cuda.using_allocator(self.pool.malloc):
            self.stream.begin_capture()
            try:
                yield box
            except BaseException:
                with contextlib.suppress(Exception):
                    self.stream.end_capture()
                raise
            box["graph"] = self.stream.end_capture()

    @contextlib.contextmanager
    def on_stream(self):
        with self.stream:
            yield

    def _pinned(self, like: np.ndarray):
        mem = self._cp.cuda.alloc_pinned_memory(max(1, like.nbytes))  # (as cupyx.empty_pinned makes its arrays)
        return mem, np.ndarray(like.shape, dtype=like.dtype, buffer=mem)

    def upload(self, dev, host):
        """Queue ``host`` → ``dev`` on the stream; returns what must stay alive until the copy has run
        (the pinned staging buffer: the pool would hand it out again once it is freed)."""
        mem, staged = self._pinned(host)
        staged[...] = host
        rt = self._cp.cuda.runtime
        rt.memcpyAsync(dev.data.ptr, staged.ctypes.data, host.nbytes, rt.memcpyHostToDevice, self.stream.ptr)
        return mem

    def copy(self, dst, src) -> None:
        self._cp.copyto(dst, src)

    def launch(self, graph) -> None:
        graph.launch(self.stream)

    def download(self, a, keep=()):
        """Queue ``a`` → host on the stream; returns a function that waits for it and returns the host
        copy (``keep``: what must stay alive until then)."""
        mem, out = self._pinned(np.empty(a.shape, a.dtype))
        rt = self._cp.cuda.runtime
        rt.memcpyAsync(out.ctypes.data, a.data.ptr, a.nbytes, rt.memcpyDeviceToHost, self.stream.ptr)
        done = self.stream.record()

        def wait(mem=mem, keep=keep):
            done.synchronize()
            return out.copy()

        return wait


class _Tape:
    """The keys a captured step drew: the generator of each, in order, and the slot each was given."""

    def __init__(self, keys, xp):
        self.keys = keys
        self.xp = xp  # (the per-launch counters of the captured step are zeroed arrays of this module)
        self.rngs: list = []
        self.values: list[int] = []
        self._slot: dict[int, int] = {}

    def record(self, rng, key) -> None:
        k = int(key)
        if len(self.rngs) >= self.keys.shape[0]:
            raise GraphUnsupported(f"the step draws more than {self.keys.shape[0]} keys")
        if k in self._slot:
            raise GraphUnsupported("two draws of the step gave the same key")
        self._slot[k] = len(self.rngs)
        self.rngs.append(rng)
        self.values.append(k)

    def slot(self, key) -> int:
        s = self._slot.get(int(key))
        if s is None:
            raise GraphUnsupported("a kernel's key was not drawn by draw_key during the capture")
        return s


@dataclass
class _Graph:
    sig: tuple
    graph: object
    x: object
    buf: object
    host: np.ndarray
    n_up: int
    tape: _Tape
    S: object
    snap: object
    pending: list = field(default_factory=list)  # (counter, how, offset, size) of the deferred counts
    deltas: list = field(default_factory=list)  # (counter, {count: host increment per step})
    watch: list = field(default_factory=list)  # (owner, name, value) of the model's mutable attributes
    keep: object = None  # the staging buffer of the capture's upload (alive until the copy has run)


def _mutable(owner) -> bool:
    if isinstance(owner, tuple):
        return False
    params = getattr(type(owner), "__dataclass_params__", None)
    return not (params is not None and params.frozen)


def _unchanged(watch) -> bool:
    """Every watched attribute still holds what it held at the capture (the same object, or an equal value)."""
    for owner, name, v in watch:
        cur = owner[name] if type(owner) in (dict, list) else getattr(owner, name, _MISSING)
        if cur is not v and not _same(v, cur):
            return False
    return True


_MISSING = object()


def _walk(model) -> tuple[dict, list, list]:
    """(path → (owner, name, value)) for the arrays and plain values reachable from ``model`` through the
    attributes, lists, tuples and dicts of ffsim objects; the generators; the operation counters."""
    found: dict = {}
    gens: dict = {}
    counters: dict = {}
    seen: set = set()

    def visit(obj, path):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, dict):
            items = list(obj.items())
        elif isinstance(obj, list | tuple):
            items = list(enumerate(obj))
        else:
            items = list(vars(obj).items())
        for name, v in items:
            p = f"{path}.{name}"
            if isinstance(name, str) and (name.startswith(("last_", "_graph", "_slot_blocks"))):
                continue
            if isinstance(v, np.random.Generator):
                gens[id(v)] = v
            elif isinstance(v, OpCounter):
                counters[id(v)] = v
            elif hasattr(v, "__array_interface__") or hasattr(v, "__cuda_array_interface__"):
                found[p] = (obj, name, v)
            elif isinstance(v, bool | int | float | str | np.number | type(None)):
                found[p] = (obj, name, v)
            elif isinstance(v, dict | list | tuple) or type(v).__module__.startswith("ffsim."):
                visit(v, p)

    visit(model, "model")
    return found, list(gens.values()), list(counters.values())


def _same(a, b) -> bool:
    if hasattr(a, "__array_interface__") or hasattr(a, "__cuda_array_interface__"):
        return a is b
    if isinstance(a, float | np.floating) and isinstance(b, float | np.floating) and a != a and b != b:
        return True
    return type(a) is type(b) and a == b


def _put(owner, name, value) -> None:
    if isinstance(owner, dict | list):
        owner[name] = value
    elif not isinstance(owner, tuple):
        setattr(owner, name, value)


class StepGraphs:
    """Captures a model's device step and replays it (see the module's text).

    ``body(x, up, gain)`` is the model's device step: the images ``x`` and the uploaded float64 values ``up``
    on the device, the statistics array it returns left there.  A step that fails its capture runs directly;
    after ``TRIES`` failures of one shape and gain, that shape and gain always run directly."""

    TRIES = 3

    def __init__(self, model, body, xp, capturer):
        self.model = model
        self.body = body
        self.xp = xp
        self.cap = capturer
        self.current: _Graph | None = None
        self._warm: set = set()
        self._failed: dict = {}
        self.captures = 0
        self.replays = 0

    def step(self, x, up_h: np.ndarray, gain: float):
        """The replayed step, queued on the device: a function that waits for its statistics and returns
        them (a host array); or None: the caller runs the step itself (the first step of a shape, or one
        that cannot be captured)."""
        shape_sig = (tuple(x.shape), str(x.dtype), up_h.shape[0])
        sig = (*shape_sig, float(gain))
        g = self.current
        if g is not None and not _unchanged(g.watch):
            # the model changed between steps (programmed, advanced, loaded): one step runs directly (it may
            # settle what changed, e.g. rebuild a chip's caches), the next is captured from what it is then
            g = self.current = None
            self._warm.discard(shape_sig)
        if g is None or g.sig != sig:
            if shape_sig not in self._warm or self._failed.get(sig, 0) >= self.TRIES:
                self._warm.add(shape_sig)
                return None
            self.current = None
            g = self._capture(sig, x, up_h, gain)
            if g is None:
                self._failed[sig] = self._failed.get(sig, 0) + 1
                return None
            self.current = g
            return self._launch(g, x, up_h, fresh=False)
        return self._launch(g, x, up_h, fresh=True)

    # capture ----------------------------------------------------------------------------------
    def _capture(self, sig, x, up_h, gain):
        xp = self.xp
        n_up = up_h.shape[0]
        buf = xp.zeros(n_up + KEYS_MAX, dtype=np.uint64)
        host = np.zeros(n_up + KEYS_MAX, dtype=np.uint64)
        xs = xp.empty(x.shape, dtype=x.dtype)
        host[:n_up].view(np.float64)[:] = up_h
        with self.cap.on_stream():
            staged = self.cap.upload(buf, host)
            self.cap.copy(xs, x)
        found, gens, counters = _walk(self.model)
        for c in counters:  # settle what is pending: nothing may be read back inside the capture
            c.dac_conversions  # noqa: B018 - reading a count settles the counter
        states = [g.bit_generator.state for g in gens]
        counts_before = [c.as_dict() for c in counters]
        tape = _Tape(buf[n_up:], xp)
        protect = [v for (_, _, v) in found.values() if hasattr(v, "shape")]
        box = None
        try:
            _rng.KEY_HOOKS.append(tape.record)
            _gk.CAPTURE = tape
            try:
                with self.cap.capturing(protect) as box:
                    S = self.body(xs, buf[:n_up].view(np.float64), gain)
                    layout, parts = [], []
                    off = 0
                    for c in counters:
                        for (_, v, how) in c.__dict__.get("_pending", []):
                            layout.append((c, how, off, v.size))
                            parts.append(v.reshape(-1).astype(np.float64))
                            off += v.size
                    snap = xp.concatenate(parts) if parts else None
            finally:
                _gk.CAPTURE = None
                _rng.KEY_HOOKS.remove(tape.record)
            self._check(found, gens, states, tape)
        except Exception as e:  # noqa: BLE001 - whatever stops the capture, the step runs without a graph
            self._restore(found, gens, states, counters, counts_before)
            reason = f"{type(e).__name__}: {e}"
            if reason not in _warned:
                _warned.add(reason)
                warnings.warn(f"ffsim: the FF step runs without a CUDA graph ({reason})", RuntimeWarning,
                              stacklevel=4)
            return None
        deltas = []
        for c, before in zip(counters, counts_before, strict=True):
            c.__dict__.pop("_pending", None)  # (the deferred counts of the capture: they come with each launch)
            after = c.as_dict()
            d = {k: after[k] - before[k] for k in before if after[k] != before[k]}
            if d:
                deltas.append((c, d))
            for k, v in before.items():
                setattr(c, k, v)
        self.captures += 1
        host[n_up:n_up + len(tape.values)] = np.array(tape.values, dtype=np.uint64)
        watch = [(o, n, v) for (o, n, v) in found.values() if _mutable(o)]
        return _Graph(sig=sig, graph=box["graph"], x=xs, buf=buf, host=host, n_up=n_up, tape=tape, S=S, snap=snap,
                      pending=layout, deltas=deltas, watch=watch, keep=staged)

    @staticmethod
    def _check(found, gens, states, tape) -> None:
        for p, (owner, name, v) in found.items():
            now = _get(owner, name)
            if not _same(v, now):
                raise GraphUnsupported(f"{p} changed during the step (a replay would not see the change)")
        for g, st in zip(gens, states, strict=True):
            probe = np.random.Generator(type(g.bit_generator)())
            probe.bit_generator.state = st
            for r in tape.rngs:
                if r is g:
                    _rng.draw_key(probe)
            if probe.bit_generator.state != g.bit_generator.state:
                raise GraphUnsupported("a generator drew more than the step's keys (host randomness in the step)")

    @staticmethod
    def _restore(found, gens, states, counters, counts_before) -> None:
        for owner, name, v in found.values():
            if not _same(v, _get(owner, name)):
                _put(owner, name, v)
        for g, st in zip(gens, states, strict=True):
            g.bit_generator.state = st
        for c, before in zip(counters, counts_before, strict=True):
            c.__dict__.pop("_pending", None)
            for k, v in before.items():
                setattr(c, k, v)

    # replay -----------------------------------------------------------------------------------
    def _launch(self, g: _Graph, x, up_h, fresh: bool):
        host, n_up = g.host, g.n_up
        if fresh:  # the capture's own draws go with its first launch; later launches draw anew
            host[:n_up].view(np.float64)[:] = up_h
            for i, r in enumerate(g.tape.rngs):
                host[n_up + i] = _rng.draw_key(r)
        cap = self.cap
        with cap.on_stream():
            staged = cap.upload(g.buf, host)
            cap.copy(g.x, x)
            cap.launch(g.graph)
            if g.snap is not None:
                c = g.snap.copy()
                for counter, how, off, n in g.pending:
                    counter._pend(self.xp, c[off:off + n], how)
            fetch = cap.download(g.S, keep=(staged, x))
        for counter, d in g.deltas:
            counter.add(**d)
        self.replays += 1
        return fetch


def _get(owner, name):
    if isinstance(owner, dict | list | tuple):
        return owner[name]
    return getattr(owner, name)


def record(model) -> dict | None:
    """What a run records of its CUDA graphs: captures and replays, None where the model used none."""
    r = model.__dict__.get("_graphs")
    return None if r is None else {"captures": r.captures, "replays": r.replays}


def runner_for(model, body, capturer=None) -> StepGraphs | None:
    """The model's graph runner (made on first use), or None where graphs are off (``FFSIM_GPU_GRAPH``) or
    the backend has no capture (the CUDA simulator without an emulated ``capturer``)."""
    r = model.__dict__.get("_graphs")
    if r is not None:
        return r
    if capturer is None:
        if not ENABLED or model.backend.simulated or not model.backend.is_gpu:
            return None
        capturer = CupyCapturer()
    r = model.__dict__["_graphs"] = StepGraphs(model, body, model.xp, capturer)
    return r
