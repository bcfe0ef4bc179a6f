#!/usr/bin/env bash
# ops/cluster/workers.sh: one machine's share of a campaign that runs on several: starts its sim workers
# (and GPU workers) against a coordinator on another machine, keeps them running, and returns when the
# campaign is over. The Slurm script (ops/cluster/rsd.sbatch) runs it once per node; by hand, run it on
# each machine (docs/operations.md, "On many machines").
#
#   ops/cluster/workers.sh --coordinator ENDPOINT|FILE [--sim N] [--capacity C] [--data DIR]
#                          [--broker ENDPOINT|FILE --model DIR --gpu DEVICES [--dtype D] [--max-batch N]]
#                          [--keys DIR] [--logs DIR]
#
#   --coordinator  the coordinator's endpoint (tcp://HOST:PORT), or a file holding it (rsd run writes
#                  <output>/coordinator.endpoint; on a shared file system every node can read it)
#   --sim N        sim worker processes (default: one per core, nproc); 0 for a GPU-only machine
#   --capacity C   episodes per sim worker (default 2)
#   --data DIR     the exported scenes (default $RSD_DATA, else ~/.cache/rsd)
#   --broker       the broker's GPU-side endpoint, or a file holding it (<output>/broker_gpu.endpoint),
#                  read again at each start of a GPU worker
#   --gpu DEVICES  GPU workers, one per device: a comma list (cuda:0,cuda:1 or cpu), or `all` for every
#                  GPU this process may use (CUDA_VISIBLE_DEVICES where set, as Slurm sets it for --gres;
#                  else every GPU nvidia-smi lists); needs --broker and --model
#   --model DIR    the campaign's policy package (the same content hash as the campaign's)
#   --dtype D      the campaign's model_dtype (default float32)
#   --max-batch N  the GPU workers' max batch (default 16)
#   --keys DIR     connect over CURVE (the campaign's bind.keys; `rsd keys`)
#   --logs DIR     one log per worker, in DIR/HOST (default ./rsd-logs)
#
# Workers are named HOST-sim-K and HOST-gpu-K (HOST: the short host name; in a Slurm step, Slurm's name
# for the node), so the journal and the report say which machine ran what. A worker that exits 0 is done
# (the campaign completed: BYE or DRAIN); one that dies is started again after a second, at most 3 times
# in a row (a run of 10 minutes counts as healthy and starts the count again), as `rsd run` does for its
# local workers; its episodes go back to the queue by themselves. The script exits 0 when every worker
# exited 0, 1 when one was given up on, and stops every worker on
# SIGTERM or SIGINT (exit 143). Executables: $RSD_SIM_WORKER and $RSD_GPU_WORKER, else the build tree
# $RSD_BUILD (default build/ in this repository).
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${RSD_BUILD:-$top/build}
sim_exe=${RSD_SIM_WORKER:-$build/sim-worker/rsd-sim-worker}
gpu_exe=${RSD_GPU_WORKER:-$build/gpu-worker/rsd-gpu-worker}
host=${SLURMD_NODENAME:-$(hostname -s)} # under Slurm its name for this node (usually the host name)

usage() {
  sed -n '7,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
die() {
  echo "workers.sh: $*" >&2
  exit 2
}

coordinator='' nsim=$(nproc) capacity=2 data='' broker='' gpus='' model='' dtype=float32 max_batch=16 keys='' logs=''
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || usage
  case $1 in
    --coordinator) coordinator=$2 ;;
    --sim) nsim=$2 ;;
    --capacity) capacity=$2 ;;
    --data) data=$2 ;;
    --broker) broker=$2 ;;
    --gpu) gpus=$2 ;;
    --model) model=$2 ;;
    --dtype) dtype=$2 ;;
    --max-batch) max_batch=$2 ;;
    --keys) keys=$2 ;;
    --logs) logs=$2 ;;
    *) usage ;;
  esac
  shift 2
done
[ -n "$coordinator" ] || [ "$nsim" = 0 ] || die "--coordinator is required (an endpoint, or the file rsd run writes)"
[[ $nsim =~ ^[0-9]+$ ]] || die "--sim '$nsim' is not a number of workers"
if [ "$gpus" = all ]; then # the GPUs this process may use: CUDA_VISIBLE_DEVICES (Slurm sets it), else all
  if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    n=$(tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | grep -c .)
  else
    command -v nvidia-smi >/dev/null || die "--gpu all: nvidia-smi is not here; name the devices (--gpu cuda:0,cuda:1 or cpu)"
    n=$(nvidia-smi -L | grep -c '^GPU ')
  fi
  [ "$n" -gt 0 ] || die "--gpu all: no GPU visible (CUDA_VISIBLE_DEVICES '${CUDA_VISIBLE_DEVICES:-}', nvidia-smi -L)"
  gpus=$(seq -s, -f 'cuda:%g' 0 $((n - 1)))
fi
if [ -n "$gpus" ]; then
  [ -n "$broker" ] && [ -n "$model" ] || die "--gpu needs --broker (the endpoint or <output>/broker_gpu.endpoint) and --model"
  [ -f "$model/manifest.json" ] || die "--model '$model' has no manifest.json"
  [ -x "$gpu_exe" ] || die "no GPU worker at $gpu_exe (build it, or set RSD_GPU_WORKER)"
fi
[ "$nsim" = 0 ] || [ -x "$sim_exe" ] || die "no sim worker at $sim_exe (build it, or set RSD_SIM_WORKER)"
[ -n "$gpus" ] || [ "$nsim" != 0 ] || die "nothing to start: --sim 0 and no --gpu"
logs=${logs:-rsd-logs}/$host
mkdir -p "$logs" || die "cannot make the log directory $logs"

# An endpoint argument as it is, or the endpoint a file holds (read at each start).
endpoint() {
  if [ -f "$1" ]; then head -n 1 "$1"; else echo "$1"; fi
}

run_sim() { # K
  local args=(--coordinator "$coordinator" --capacity "$capacity" --name "$host-sim-$1")
  [ -n "$data" ] && args+=(--data "$data")
  [ -n "$keys" ] && args+=(--keys "$keys")
  exec "$sim_exe" "${args[@]}"
}

run_gpu() { # K DEVICE
  local ep
  ep=$(endpoint "$broker") && [ -n "$ep" ] || { echo "workers.sh: cannot read the broker endpoint from $broker" >&2; exit 1; }
  local args=(--broker "$ep" --model "$model" --device "$2" --dtype "$dtype" --max-batch "$max_batch"
              --name "$host-gpu-$1")
  [ -n "$keys" ] && args+=(--keys "$keys")
  exec "$gpu_exe" "${args[@]}"
}

# Runs one worker (a command: run_sim K or run_gpu K DEV) until it exits 0, restarting it when it dies.
supervise() { # NAME LOG COMMAND...
  local name=$1 log=$2 child='' rc fails=0 t0 stop=0
  shift 2
  trap 'stop=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT
  while :; do
    [ "$stop" = 1 ] && exit 143 # a signal during the restart pause: start nothing
    t0=$SECONDS
    "$@" >>"$log" 2>&1 &
    child=$!
    [ "$stop" = 1 ] && kill -TERM "$child" 2>/dev/null # a signal between the start and $!
    wait "$child"
    rc=$?
    while kill -0 "$child" 2>/dev/null; do # wait returned for a trapped signal: the child's own status next
      wait "$child"
      rc=$?
    done
    child=
    [ "$stop" = 1 ] && exit 143
    if [ "$rc" = 0 ]; then
      echo "[workers] $name: done (exit 0)"
      exit 0
    fi
    [ $((SECONDS - t0)) -ge 600 ] && fails=0
    fails=$((fails + 1))
    if [ "$fails" -gt 3 ]; then
      echo "[workers] $name: died $fails times in a row (last exit $rc); given up (log $log)" >&2
      exit 1
    fi
    echo "[workers] $name: exited $rc; starting it again ($fails of 3; log $log)" >&2
    sleep 1
  done
}

pids=()
stop_all() {
  trap - TERM INT
  kill -TERM ${pids[@]+"${pids[@]}"} 2>/dev/null
  wait
  exit 143
}
trap stop_all TERM INT
k=0
devs=()
[ -n "$gpus" ] && IFS=, read -r -a devs <<<"$gpus"
for dev in ${devs[@]+"${devs[@]}"}; do # GPU workers first: the sim workers' first observations find them
  k=$((k + 1))
  supervise "$host-gpu-$k" "$logs/gpu-$k.log" run_gpu "$k" "$dev" &
  pids+=($!)
done
for k in $(seq 1 "$nsim"); do
  supervise "$host-sim-$k" "$logs/sim-$k.log" run_sim "$k" &
  pids+=($!)
done
echo "[workers] $host: ${#devs[@]} GPU workers (${gpus:-none}), $nsim sim workers (capacity $capacity); logs in $logs"
status=0
for p in ${pids[@]+"${pids[@]}"}; do
  wait "$p" || status=1
done
echo "[workers] $host: every worker has ended (status $status)"
exit "$status"
