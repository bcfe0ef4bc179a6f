#!/usr/bin/env bash
# train_reference.sh: the reference policy rsd-ref-spatial from nothing to models/rsd-ref-spatial, in one command.
#
# Usage: bash train/train_reference.sh [WORKDIR]      (default WORKDIR: /tmp/rsd-ref-train)
#
# 1. builds rsd-sim-worker and policy_bench in build-model/ (Release);
# 2. collects the expert's demonstrations: two lanes side by side (train/collect_demos.sh), trials 10-35 of
#    all 10 LIBERO-Spatial tasks, 128 px images rendered after every 4th action, into WORKDIR/demos
#    (about 30 minutes on the shared 2-core machine; blocks already collected are kept);
# 3. trains and exports (train/train_reference.py: about 15 minutes on 2 threads) into models/rsd-ref-spatial,
#    with WORKDIR/run/metrics.json and train.log;
# 4. loads the package in the C++ runtime and benchmarks it (policy_bench runs the load-time probes).
# Needs ops/setup.sh to have run (the venv with torch, mujoco and h5py; the exported scenes in ~/.cache/rsd).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/rsd-ref-train}
venv=${RSD_VENV:-$HOME/.cache/rsd/venv}
cd "$root"
mkdir -p "$work"
cmake -S . -B build-model -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build-model rsd-sim-worker policy_bench
start=$(date +%s)
bash train/collect_demos.sh build-model/sim-worker/rsd-sim-worker "$work/demos" 0 >"$work.lane0.log" 2>&1 &
lane0=$!
bash train/collect_demos.sh build-model/sim-worker/rsd-sim-worker "$work/demos" 1 >"$work.lane1.log" 2>&1 &
lane1=$!
wait "$lane0" "$lane1"
echo "train_reference: collection took $(( $(date +%s) - start )) s"
"$venv/bin/python" train/train_reference.py --demos "$work/demos" --work "$work/run" --out models/rsd-ref-spatial
build-model/gpu-worker/policy_bench models/rsd-ref-spatial --seconds 1 --threads 2
