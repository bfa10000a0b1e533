#!/usr/bin/env bash
# The headline FF-vs-BP figures of EXPERIMENTS.md (read noise, ADC bits, device-to-device spread on pcm) at
# a larger training budget than the screening studies (experiments/studies.sh); each resumes if interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
for f in experiments/studies/headline/*.toml; do
  name=$(basename "$f" .toml)
  ffsim sweep "$f" --out "experiments/results/sweeps/headline-$name" --no-progress
done
