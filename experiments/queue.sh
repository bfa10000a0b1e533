#!/usr/bin/env bash
# The order in which the long experiments were run for EXPERIMENTS.md (one after another on 2 cores).
set -uo pipefail
cd "$(dirname "$0")/.."
bash experiments/ff_mnist.sh devices
bash experiments/mortal.sh high-variability
bash experiments/mortal.sh pcm
bash experiments/ff_mnist.sh ideal-4x2000
bash experiments/mortal.sh sizes
bash experiments/ff_mnist.sh unsup-4x2000
bash experiments/ff_mnist.sh recurrent
