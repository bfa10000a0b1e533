#!/usr/bin/env bash
# In-situ FF: learning-rate scan per device profile (784-500-500-500, 3 epochs on 20k training images,
# 5k test images), then 10 epochs on all of MNIST at the best rate.  Results: experiments/results/lr-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
R=experiments/results
for prof in pcm rram-hfo2 ecram; do
  for lr in 0.01 0.003 0.001 0.0003 0.0001; do
    ffsim train --profile "$prof" --mode insitu --layers 500,500,500 --epochs 3 --lr "$lr" --train-cases 20000 \
      --test-cases 5000 --eval-train-cases 2000 --out "$R/lr-$prof-$lr" --resume --no-progress
  done
done
