#!/usr/bin/env bash
# All FF-vs-BP studies of EXPERIMENTS.md (one after another; each resumes if interrupted).
set -euo pipefail
cd "$(dirname "$0")/.."
for f in experiments/studies/*.toml; do
  name=$(basename "$f" .toml)
  ffsim sweep "$f" --out "experiments/results/sweeps/$name" --no-progress
done
