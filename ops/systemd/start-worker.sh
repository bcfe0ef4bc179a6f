#!/usr/bin/env bash
# ops/systemd/start-worker.sh: what the worker units run: `start-worker.sh sim K` or `start-worker.sh gpu DEV`
# (DEV a CUDA index or `cpu`), with the settings of /etc/rsd/workers.env in the environment. Checks them
# and names the missing one, then execs the worker, so that systemd supervises the worker itself.
set -euo pipefail
kind=${1:?usage: start-worker.sh sim K | gpu DEVICE}
inst=${2:?usage: start-worker.sh sim K | gpu DEVICE}
need() {
  for v in "$@"; do
    [ -n "${!v:-}" ] || { echo "start-worker.sh: $v is not set (/etc/rsd/workers.env)" >&2; exit 2; }
  done
}
need RSD_HOME
build=${RSD_BUILD:-$RSD_HOME/build}
host=$(hostname -s)
keys=()
[ -n "${RSD_KEYS:-}" ] && keys=(--keys "$RSD_KEYS")
case $kind in
  sim)
    need RSD_COORDINATOR
    data=()
    [ -n "${RSD_DATA:-}" ] && data=(--data "$RSD_DATA")
    exec "$build/sim-worker/rsd-sim-worker" --coordinator "$RSD_COORDINATOR" --capacity "${RSD_CAPACITY:-2}" \
      --name "$host-sim-$inst" ${data[@]+"${data[@]}"} ${keys[@]+"${keys[@]}"} ;;
  gpu)
    need RSD_BROKER RSD_MODEL
    dev=$inst
    [[ $inst =~ ^[0-9]+$ ]] && dev=cuda:$inst
    exec "$build/gpu-worker/rsd-gpu-worker" --broker "$RSD_BROKER" --model "$RSD_MODEL" --device "$dev" \
      --dtype "${RSD_DTYPE:-float32}" --max-batch "${RSD_MAX_BATCH:-16}" --name "$host-gpu-$inst" ${keys[@]+"${keys[@]}"} ;;
  *)
    echo "start-worker.sh: unknown kind '$kind' (sim or gpu)" >&2
    exit 2 ;;
esac
