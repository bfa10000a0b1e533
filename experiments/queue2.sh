#!/usr/bin/env bash
# Second batch of long runs for EXPERIMENTS.md, in this order (each resumes if interrupted).
set -uo pipefail
cd "$(dirname "$0")/.."
bash experiments/insitu_lr.sh
bash experiments/studies.sh
bash experiments/mortal.sh high-variability
bash experiments/mortal.sh pcm
bash experiments/ff_mnist.sh bp-ideal
bash experiments/ff_mnist.sh ideal-4x2000
bash experiments/mortal.sh sizes
bash experiments/ff_mnist.sh unsup-4x2000
bash experiments/ff_mnist.sh recurrent
bash experiments/bp_anchors.sh
