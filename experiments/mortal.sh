#!/usr/bin/env bash
# Mortal computation (Hinton 2022, sec. 9): a teacher chip, three student chips from the same profile;
# weight copy vs distillation vs training from scratch; a year of drift on the pcm teacher; agreement vs
# transfer-set size (the full 60k transfer set of the same student chip is the high-variability run).  Results in experiments/results/mortal-*/; EXPERIMENTS.md quotes them.
#
#   bash experiments/mortal.sh [high-variability|pcm|sizes|all]
set -euo pipefail
cd "$(dirname "$0")/.."
R=experiments/results
teacher() {  # profile
  ffsim train --profile "$1" --mode hybrid --layers 500,500 --epochs 10 --eval-every 5 --fab-seed 1 \
    --out "$R/mortal-$1-teacher" --resume --no-progress
}
case "${1:-all}" in
  high-variability|all)
    teacher high-variability
    ffsim distill --profile high-variability --mode hybrid --layers 500,500 --teacher-run "$R/mortal-high-variability-teacher" \
      --teacher-fab-seed 1 --student-fab-seeds 2,3 --distill-epochs 10 --out "$R/mortal-high-variability" --no-progress ;;&
  pcm|all)
    teacher pcm
    ffsim distill --profile pcm --mode hybrid --layers 500,500 --teacher-run "$R/mortal-pcm-teacher" \
      --teacher-fab-seed 1 --student-fab-seeds 2,3,4 --distill-epochs 10 --aging --out "$R/mortal-pcm" --no-progress ;;&
  sizes|all)
    teacher high-variability
    python experiments/mortal_transfer_size.py --teacher-run "$R/mortal-high-variability-teacher" \
      --sizes 1000,3000,10000 --student-fab-seed 2 --distill-epochs 10 --out "$R/mortal-transfer-size" ;;
esac
