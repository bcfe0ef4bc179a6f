#!/usr/bin/env bash
# collect_demos.sh: collects the reference policy's training demonstrations with the scripted expert.
#
# Usage: bash train/collect_demos.sh SIM_WORKER OUTDIR LANE
#   LANE 0 collects trials 10-14, 20-24, 30-32 of all 10 LIBERO-Spatial tasks; LANE 1 collects 15-19,
#   25-29, 33-35 (trials 10-35: what fits in 30 minutes of a shared 2-core machine, about 12 minutes per block
#   of 5 trials x 10 tasks per lane). Run the two lanes side by side (one process each). Each block is one
#   HDF5 file (OUTDIR/demos_TRIALS.hdf5), so a collection cut short still leaves whole files; a file that
#   exists is skipped. Trials 0-9 are never collected: evaluation campaigns run them.
#
# Images are 128 px, rendered after every 4th action only (--render-every 4): a policy with 8-action chunks
# observes every 8th step, and rendering is most of the cost on a CPU (OSMesa).
# Owns: which trials and tasks the training data comes from. Not here: the HDF5 layout (sim-worker/expert_cli.c).
set -euo pipefail
sim=$1
out=$2
lane=$3
data=${RSD_DATA:-$HOME/.cache/rsd}
mkdir -p "$out"
if [ "$lane" = 0 ]; then blocks="10-14 20-24 30-32"; else blocks="15-19 25-29 33-35"; fi
for trials in $blocks; do
  f="$out/demos_$trials.hdf5"
  [ -f "$f" ] && continue
  start=$(date +%s)
  "$sim" collect --suite libero_spatial --tasks all --trials "$trials" --size 128 --render-every 4 \
    -o "$f" --data "$data"
  echo "collect_demos: trials $trials: $(( $(date +%s) - start )) s"
done
