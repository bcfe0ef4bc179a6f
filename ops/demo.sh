#!/usr/bin/env bash
# Sets everything up, builds rsd, and runs the main job: a small local campaign (the scripted expert on
# two LIBERO-Spatial tasks, configs/libero_spatial_expert.yaml), CPU only, and its report.
#
#   bash ops/demo.sh            # results, report and videos in runs/libero_spatial_expert/
#
# It starts `rsd run`, then local sim workers that find the coordinator through the endpoint file it
# writes, waits for the campaign to complete, and writes the report. Run it again and the campaign
# resumes (already complete: it only rewrites the report). RSD_DEMO_WORKERS (default 2) sim workers,
# each running RSD_DEMO_CAPACITY (default 2) episodes at once.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
bash ops/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "${RSD_JOBS:-$(nproc)}"

config=configs/libero_spatial_expert.yaml
out=runs/libero_spatial_expert
workers=${RSD_DEMO_WORKERS:-2}
capacity=${RSD_DEMO_CAPACITY:-2}
mkdir -p "$out"
rm -f "$out/coordinator.endpoint"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

echo "[demo] rsd run $config" >&2
build/coordinator/rsd run "$config" --out "$out" &
rsd_pid=$!
for _ in $(seq 1 200); do
  [ -s "$out/coordinator.endpoint" ] && break
  kill -0 "$rsd_pid" 2>/dev/null || break
  sleep 0.1
done
if [ ! -s "$out/coordinator.endpoint" ]; then
  wait "$rsd_pid" || true
  echo "[demo] rsd run did not start serving (no $out/coordinator.endpoint)" >&2
  exit 1
fi
for i in $(seq 1 "$workers"); do
  build/sim-worker/rsd-sim-worker --coordinator "$out/coordinator.endpoint" --capacity "$capacity" \
    --name "demo-sim-$i" &
  pids+=($!)
done
status=0
wait "$rsd_pid" || status=$?
if [ "$status" -ne 0 ]; then
  echo "[demo] rsd run exited $status" >&2
  exit "$status"
fi
build/coordinator/rsd report "$out"
echo "[demo] done: $out/report.html, $out/report.md, $out/report.json" >&2
