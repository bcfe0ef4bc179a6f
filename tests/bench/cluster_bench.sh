#!/usr/bin/env bash
# cluster_bench.sh: one model campaign run end to end under several worker layouts, on this machine.
# For each layout it runs `rsd run` on the same small campaign (the shipped reference policy, `spec`,
# the same tasks, trials and max_steps), then `rsd report`, and prints wall time, environment steps/s,
# chunks/s, the per-chunk latency at p50 (the GPU worker's service time: queue + encode + decode, and the
# sim worker's wait from send to reply) and the share of chunks decoded in a batch of 2 or more requests
# ("batched") from report.json. The first layout, `sequential`, is one sim worker running one episode at
# a time against one GPU worker with max_batch 1: the shape of LIBERO's evaluation scripts (step, render,
# ask the policy, wait, step), through rsd's processes. Not a test: it prints a table and writes JSON.
#
#   bash tests/bench/cluster_bench.sh [--tasks "[0, 1]"] [--trials N] [--max-steps N] [--json FILE]
#
# Needs a build in build/ (ops/demo.sh or ops/test.sh makes one) and the scene export (ops/setup.sh).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
tasks="[0, 1]"
trials=2
max_steps=96
json=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tasks) tasks=$2; shift 2 ;;
    --trials) trials=$2; shift 2 ;;
    --max-steps) max_steps=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    *) echo "usage: $0 [--tasks LIST] [--trials N] [--max-steps N] [--json FILE]" >&2; exit 2 ;;
  esac
done
rsd=build/coordinator/rsd
[ -x "$rsd" ] || { echo "cluster_bench: $rsd not built (run ops/demo.sh or ops/test.sh first)" >&2; exit 1; }
py=${RSD_VENV:-$HOME/.cache/rsd/venv}/bin/python
[ -x "$py" ] || py=python3
work=$(mktemp -d /tmp/rsd-cluster-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT

# name sim_workers episodes_per_worker gpu_workers max_batch
layouts=(
  "sequential 1 1 1 1"
  "1sim-x4 1 4 1 16"
  "2sim-x2 2 2 1 16"
  "2sim-x4 2 4 1 16"
)
results=()
for layout in "${layouts[@]}"; do
  read -r name sims eps gpus batch <<<"$layout"
  cat >"$work/$name.yaml" <<EOF
name: cluster_bench_$name
suite: libero_spatial
tasks: $tasks
trials: $trials
max_steps: $max_steps
model: models/rsd-ref-spatial
unnorm_key: libero_spatial
variants:
  - name: spec
    mode: spec
    draft_len: 4
videos: none
output: $work/$name
workers:
  sim_workers: $sims
  episodes_per_worker: $eps
  gpu_workers: $gpus
  device: cpu
  max_batch: $batch
EOF
  echo "[cluster_bench] $name: $sims sim worker(s) x $eps episodes, $gpus GPU worker(s) on the CPU, max_batch $batch" >&2
  start=$(date +%s.%N)
  "$rsd" run "$work/$name.yaml" >"$work/$name.log" 2>&1 || { echo "cluster_bench: rsd run failed, log:" >&2; tail -20 "$work/$name.log" >&2; exit 1; }
  end=$(date +%s.%N)
  "$rsd" report "$work/$name" >/dev/null 2>&1
  results+=("$name $sims $eps $gpus $batch $start $end $work/$name/report.json")
done

"$py" - "$json" "${results[@]}" <<'EOF'
import json, sys
out, rows = sys.argv[1], []
for spec in sys.argv[2:]:
    name, sims, eps, gpus, batch, start, end, path = spec.split(" ")
    r = json.load(open(path))
    t = r["throughput"]
    v = r["variants"][0]
    d = v["decode"]
    wall = float(end) - float(start)
    lat = d.get("latency_us") or {}
    p50_ms = lambda col: lat[col]["p50"] / 1000 if (lat.get(col) or {}).get("p50") is not None else None
    hist = d.get("batch_size_histogram") or {"bucket_min": [], "chunks": []}
    batched = sum(c for b, c in zip(hist["bucket_min"], hist["chunks"]) if b > 1)
    rows.append({
        "layout": name, "sim_workers": int(sims), "episodes_per_worker": int(eps), "gpu_workers": int(gpus),
        "max_batch": int(batch), "episodes": v["episodes"]["done"], "successes": v["successes"],
        "wall_s": wall, "env_steps": t["env_steps"], "env_steps_per_s": t["env_steps"] / wall,
        "chunks_per_s": (t["chunks"] or 0) / wall,
        "service_p50_ms": p50_ms("service"), "wait_p50_ms": p50_ms("total"),
        "main_forwards_per_chunk": d.get("main_forwards_per_chunk"),
        "batch_hist": hist, "chunks_in_batches_over_1": batched / max(1, sum(hist["chunks"])),
    })
base = rows[0]["wall_s"]
print("cluster_bench: one campaign (reference policy, spec) under several worker layouts on this machine")
print(f"{'layout':<12} {'sim x eps':>9} {'gpu':>4} {'batch':>5} {'episodes':>8} {'wall s':>8} {'env steps/s':>11} "
      f"{'chunks/s':>9} {'service p50 ms':>14} {'wait p50 ms':>11} {'batched':>7} {'vs sequential':>13}")
for x in rows:
    ms = lambda k: f"{x[k]:.1f}" if x[k] is not None else "-"
    print(f"{x['layout']:<12} {x['sim_workers']:>5} x {x['episodes_per_worker']:<1} {x['gpu_workers']:>4} "
          f"{x['max_batch']:>5} {x['episodes']:>8} {x['wall_s']:>8.1f} {x['env_steps_per_s']:>11.1f} "
          f"{x['chunks_per_s']:>9.2f} {ms('service_p50_ms'):>14} {ms('wait_p50_ms'):>11} "
          f"{100 * x['chunks_in_batches_over_1']:>6.0f}% {base / x['wall_s']:>12.2f}x")
if out:
    json.dump(rows, open(out, "w"), indent=1)
EOF
