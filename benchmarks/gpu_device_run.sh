#!/usr/bin/env bash
# The GPU measurements of BENCHMARKS.md / EXPERIMENTS.md in one command, for a lent GPU machine whose Python
# already has numpy, numba, numba-cuda, CuPy, scipy and matplotlib (nothing is installed; ffsim runs from the
# checkout through PYTHONPATH):
#   1. environment: GPU, versions, a numba-cuda kernel on a CuPy array, ffsim's GPU backend found (else stop);
#   2. benchmarks/bench_gpu.py: W1/W2 on pcm, ecram, ideal (ratios to a CuPy matmul), FF epochs 784-2000x4
#      (then 20 more mini-batches of each under cProfile, PROFILE_STEPS=0 to skip: host time per launch;
#      every GPU activity of 10 mini-batches under PyTorch's profiler (GPU busy time against wall time; Chrome
#      traces timeline_PROFILE.json); and the GPU time of each numba-cuda kernel of one mini-batch, replayed
#      behind a sleeping kernel); pcm once more with the sparse updates in one pass (--ff-single-pass);
#      each FF epoch again with the step captured in a CUDA graph and replayed (--ff-graph), and pcm with
#      graphs and its noise and coincidence products on TF32 tensor cores (--ff-tf32), and pcm with both and
#      the layers' updates on streams of their own (--ff-streams);
#   3. the 4x2000 / 60-epoch reproduction on `ideal` (the settings of experiments/ff_mnist.sh ideal-4x2000) on
#      the GPU backend, in the background, while tests/test_gpu_backend.py runs (its real-GPU tests; CPU-heavy,
#      little GPU work) in the foreground; the run is stopped at the time budget if it has not finished.
#
#   bash benchmarks/gpu_device_run.sh OUTDIR [SECONDS]      # SECONDS: the whole budget (default 560)
#   TRAIN=0 COMPARE=1 bash benchmarks/gpu_device_run.sh OUTDIR 480   # benchmarks (pcm also with numba-cuda's
#                                                  # own launcher) and tests only, no 4x2000 run; then, in the
#                                                  # last minute, benchmarks/gpu_compile_time.py (a new
#                                                  # process's compilation, without and with the disk cache)
#
# numba-cuda 0.30 cannot compile under numpy 2.5: where the machine has it, carry a numpy 2.3 wheel in .whl/
# (git-ignored there through .git/info/exclude), e.g. made with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d .whl numpy==2.3.5
#
# OUTDIR gets: device.log, bench_gpu.json, tests.log, train.log, ideal-4x2000-gpu.json (results.json of the run),
# ideal-4x2000-gpu.png (its learning curves); with TRAIN=0, gpu_compile_time.json.
set -u
OUTD=${1:?usage: gpu_device_run.sh OUTDIR [SECONDS]}
BUDGET=${2:-560}
T0=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - T0))); }
PY=${PYTHON:-python3}
# numba-cuda 0.30 fails to compile any kernel under numpy 2.5 (np.row_stack was removed): wheels carried in
# .whl/ (numpy 2.3.x for the machine's Python) are installed into /tmp/site and take precedence
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
RUN=${RUN_DIR:-/tmp/ideal-4x2000-gpu}
mkdir -p "$OUTD"

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nproc
  $PY - <<'EOF'
import sys

import numba
import numpy
import cupy

print("python", sys.version.split()[0], "numpy", numpy.__version__, "numba", numba.__version__, "cupy",
      cupy.__version__)
try:
    from importlib.metadata import version
    print("numba-cuda", version("numba-cuda"))
except Exception as e:  # noqa: BLE001
    print("numba-cuda version unknown:", e)
from numba import cuda


@cuda.jit
def inc(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] += 1


a = cupy.zeros(1000, dtype=cupy.float32)
inc[4, 256](a)
cuda.synchronize()
print("numba-cuda kernel on a CuPy array, sum:", float(a.sum()))
import ffsim  # noqa: E402, F401
from ffsim.backend import select_backend  # noqa: E402

b = select_backend("gpu")
print("ffsim backend:", b.name, "(simulated)" if b.simulated else "(real GPU)")
sys.exit(0 if b.is_gpu and not b.simulated else 1)
EOF
} >"$OUTD/device.log" 2>&1 || { cat "$OUTD/device.log"; echo "environment check failed"; exit 1; }
cat "$OUTD/device.log"

echo "== bench ($(left) s left)"
timeout 360 $PY benchmarks/bench_gpu.py --profile pcm --profile ecram --profile ideal --repeats 40 \
  --ff pcm --ff ideal --ff-single-pass --ff-graph --ff-tf32 --ff-streams --ff-max-seconds 15 --profile-steps "${PROFILE_STEPS:-20}" \
  --kernel-times \
  --gpu-timeline "$OUTD" --json "$OUTD/bench_gpu.json" 2>&1 \
  | tee -a "$OUTD/device.log"
if [ "${COMPARE:-0}" = 1 ]; then  # the same through numba-cuda's own launcher, for comparison
  timeout 120 $PY benchmarks/bench_gpu.py --profile pcm --repeats 40 --ff pcm --ff-max-seconds 30 --no-fast-launch \
    --json "$OUTD/bench_gpu_no_fast_launch.json" 2>&1 | tee -a "$OUTD/device.log"
fi
if [ "${TRAIN:-1}" = 0 ]; then
  timeout $(($(left) - 50)) $PY -m pytest -q -p no:cacheprovider tests/test_gpu_backend.py -k "not simulator" \
    >"$OUTD/tests.log" 2>&1
  echo "pytest exit status $?" >>"$OUTD/tests.log"
  tail -5 "$OUTD/tests.log"
  if [ "$(left)" -gt 30 ]; then  # a process's compilation, without and with the kernels' disk cache
    echo "== compile time ($(left) s left)"
    timeout $(($(left) - 5)) $PY benchmarks/gpu_compile_time.py --json "$OUTD/gpu_compile_time.json" 2>&1 \
      | tee -a "$OUTD/device.log"
  fi
  echo "== done ($(left) s left)"
  exit 0
fi

echo "== 4x2000 ideal on the GPU, in the background, and the tests ($(left) s left)"
(
  timeout $(($(left) - 10)) $PY -m ffsim train --backend gpu --profile ideal --layers 2000,2000,2000,2000 \
    --epochs 60 --eval-every 5 --no-progress --resume --out "$RUN" >"$OUTD/train.log" 2>&1
  echo "ffsim train exit status $?" >>"$OUTD/train.log"
) &
TRAIN=$!
timeout 200 $PY -m pytest -q -p no:cacheprovider tests/test_gpu_backend.py -k "not simulator" \
  >"$OUTD/tests.log" 2>&1
echo "pytest exit status $?" >>"$OUTD/tests.log"
tail -5 "$OUTD/tests.log"
wait $TRAIN
tail -5 "$OUTD/train.log"
cp "$RUN/results.json" "$OUTD/ideal-4x2000-gpu.json" 2>/dev/null
cp "$RUN/learning_curves.png" "$OUTD/ideal-4x2000-gpu.png" 2>/dev/null
echo "== done ($(left) s left)"
