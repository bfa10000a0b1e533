#!/usr/bin/env bash
# Spike-count goodness of the trained ideal-3x500 FF network on Brian2 (cython target):
#  1. separation (ROC AUC, d') and error against the coincidence window, input jitter and background rate,
#     first layer (784-500), first 500 MNIST test images; threshold_drive chosen on the last 200 training images;
#  2. the whole MNIST test set at the window chosen in 1 (one-layer and chained 784-500-500-500 networks);
#  3. the benchmark (full test set x 10 labels, compile time apart, ratio to the numpy analog goodness).
#  4. the analog goodness of the binarized input (what a latency volley delivers), numpy.
# Writes experiments/results/spiking/{grid,full}.{json,csv}, grid.png, reference.json, bench.txt and logs.
set -euo pipefail
cd "$(dirname "$0")/.."
R=experiments/results/spiking
python experiments/spiking_study.py grid --n-test 500 --n-val 200 --taus 0.5,1,2,5,10,20 --jitters 0,0.1,0.5,2 \
    --backgrounds 0,5 --drives 0.125,0.25,0.5,1 --seed 0 --out "$R" 2>&1 | tee "$R/grid.log"
python experiments/spiking_study.py full --n-test 10000 --n-val 200 --full-nets one-layer,chained \
    --drives 0.125,0.25,0.5,1 --chain-drives 0.25,0.5,1 --out "$R" 2>&1 | tee "$R/full.log"
python experiments/spiking_study.py reference --n-test 500 --out "$R" 2>&1 | tee "$R/reference.log"
# the benchmark as recorded in bench.txt (1000 test images, extrapolated; --images 10000 for the full set)
python benchmarks/bench_spiking.py --images 1000 --tau-ms 1 --drive 0.25 --chain-drive 0.25 2>&1 | tee "$R/bench.txt"
