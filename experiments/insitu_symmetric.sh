#!/usr/bin/env bash
# Control for the in-situ learning-rate scan: the same FF in-situ setting on devices whose pulse step does
# not depend on the state (digital-int8: symmetric constant step of one LSB; ideal: exact float update).
set -euo pipefail
cd "$(dirname "$0")/.."
R=experiments/results
for prof in digital-int8 ideal; do
  ffsim train --profile "$prof" --mode insitu --layers 500,500,500 --epochs 3 --lr 0.003 --train-cases 20000 \
    --test-cases 5000 --eval-train-cases 2000 --out "$R/lr-$prof-0.003" --resume --no-progress
done
# the same setting in ideal mode (Hinton's optimizer on float weights, default lr): the reference
ffsim train --profile ideal --mode ideal --layers 500,500,500 --epochs 3 --train-cases 20000 \
  --test-cases 5000 --eval-train-cases 2000 --out "$R/ideal-mode-3x500-20k" --resume --no-progress
