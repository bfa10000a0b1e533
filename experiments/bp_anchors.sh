#!/usr/bin/env bash
# Backprop anchors against aihwkit 1.2 on this kind of machine (784-256-128-10, ReLU, batch 64, in-situ,
# 3 epochs): aihwkit reported digital 5.12 %, ConstantStep 5.94 %, ECRAM 7.78 %, ReRam-ES 68.97 % test
# error, and its PCM preset diverged.  Results: experiments/results/bp-anchor-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
R=experiments/results
for prof in ideal digital-int8 ecram rram-hfo2 pcm high-variability; do
  mode=insitu
  ffsim train --model bp --profile "$prof" --mode "$mode" --layers 256,128 --batch-size 64 --epochs 3 \
    --eval-train-cases 0 --out "$R/bp-anchor-$prof" --resume --no-progress
done
# the same network in ideal (float) mode: the digital reference
ffsim train --model bp --profile ideal --mode ideal --layers 256,128 --batch-size 64 --epochs 3 \
  --eval-train-cases 0 --out "$R/bp-anchor-digital" --resume --no-progress
