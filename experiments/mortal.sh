#!/usr/bin/env bash
# Mortal computation (Hinton 2022, sec. 9): a teacher chip, student chips from the same profile;
# weight copy vs distillation vs training from scratch; a year of drift on the pcm teacher; agreement vs
# transfer-set size (the full 60k transfer set of the same student chip is the high-variability run).
# Results in experiments/results/mortal-*/; EXPERIMENTS.md quotes them.
#
#   bash experiments/mortal.sh [high-variability|pcm|high-variability-augmented|sizes|all] [DISTILL_EPOCHS]
#
# DISTILL_EPOCHS (default 10) is the student's budget (distillation and scratch alike); other than 10 it
# names the output folders mortal-PROFILE-${DISTILL_EPOCHS}ep.  The 20-epoch pcm runs put student chip 4 in
# a folder of its own (mortal-pcm-20ep-seed4) so that it can run beside chips 2 and 3 on a second core, and
# the 30-epoch high-variability runs give each student chip its own process and folder (-seed2, -seed3);
# `python experiments/mortal_table.py A/results.json B/results.json` merges them into one table.
set -euo pipefail
cd "$(dirname "$0")/.."
R=experiments/results
E=${2:-10}
SUF=$([ "$E" = 10 ] && echo "" || echo "-${E}ep")
teacher() {  # profile
  ffsim train --profile "$1" --mode hybrid --layers 500,500 --epochs 10 --eval-every 5 --fab-seed 1 \
    --out "$R/mortal-$1-teacher" --resume --no-progress
}
distill() {  # profile student-seeds out [extra flags]
  ffsim distill --profile "$1" --mode hybrid --layers 500,500 --teacher-run "$R/mortal-$1-teacher" \
    --teacher-fab-seed 1 --student-fab-seeds "$2" --distill-epochs "$E" --out "$3" --no-progress "${@:4}"
}
case "${1:-all}" in
  high-variability|all)
    teacher high-variability
    if [ "$E" -ge 30 ]; then  # one process per student chip (two cores), a folder each
      for s in 2 3; do distill high-variability "$s" "$R/mortal-high-variability$SUF-seed$s" & done
      wait
    else
      distill high-variability 2,3 "$R/mortal-high-variability$SUF"
    fi ;;&
  pcm|all)
    teacher pcm
    if [ "$E" = 10 ]; then
      distill pcm 2,3,4 "$R/mortal-pcm" --aging
    else
      distill pcm 2,3 "$R/mortal-pcm$SUF" --aging
      distill pcm 4 "$R/mortal-pcm$SUF-seed4"
    fi ;;&
  high-variability-augmented)  # the images plus a shifted copy of each; one process and folder per student
    teacher high-variability
    for s in 2 3; do
      distill high-variability "$s" "$R/mortal-high-variability${SUF}-augmented-seed$s" --transfer augmented &
    done
    wait ;;
  sizes|all)
    teacher high-variability
    python experiments/mortal_transfer_size.py --teacher-run "$R/mortal-high-variability-teacher" \
      --sizes 1000,3000,10000 --student-fab-seed 2 --distill-epochs 10 --out "$R/mortal-transfer-size" ;;
esac
