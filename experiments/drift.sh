#!/usr/bin/env bash
# Test error after training as the pcm chips drift (1 s ... 1 year), with and without global drift
# compensation, for the best FF mode (hybrid, experiments/ff_mnist.sh devices) and the BP in-situ anchor
# (experiments/bp_anchors.sh).  Writes drift.json/drift.csv into each run folder.
set -euo pipefail
cd "$(dirname "$0")/.."
R=experiments/results
ffsim drift "$R/pcm-hybrid-3x500" --times 1,60,3600,86400,2592000,31536000
ffsim drift "$R/bp-anchor-pcm" --times 1,60,3600,86400,2592000,31536000
