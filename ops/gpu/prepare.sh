#!/usr/bin/env bash
# ops/gpu/prepare.sh: collects, on this (Debian 12) machine, what the GPU machine lacks to build and test
# rsd's GPU worker, into the git-ignored .device/ at the repository root; ops/gpu/run.sh uses it there.
#
#   .device/debs/    the -dev and runtime .debs of libzmq, czmq, msgpack-c, SQLite, libyaml, zlib, jansson
#                    and pkgconf, with their dependencies, minus the C/C++ toolchain and libc (the GPU
#                    machine has its own; see GPU.md in the shared notes)
#   .device/wheels/  the mujoco wheel for the GPU machine's Python 3.12 (CMake's dependency check wants it)
#   .device/obs-cl/  every row of trials 0-1 (the reference draft's held-out trials) of a recording of
#                    closed-loop states (rsd-gpu-worker --record-obs, docs/gpu-worker.md) as a policy_bench
#                    observation set (544 rows, 53 MB): the states the speed target is measured on. The
#                    recording is RSD_RECORDING when set, else runs/record/obs when it exists, else
#                    .device/record/obs, which this script makes: the shipped policy decoded with `ar` on every
#                    task, trials 0-1 (20 episodes, about 2 minutes on 2 cores; needs the build, RSD_BUILD,
#                    default build/)
#   .device/obs-cl.tar.xz  the same set packed (about 9 MB), which is what travels: run.sh unpacks it
#
# Then, from the device tool: run ops/gpu/run.sh with carry [".device/debs", ".device/wheels", ".device/obs-cl.tar.xz"]
# (docs/gpu-worker.md).
# Idempotent: files already there are kept. Needs apt-get, the project's venv and scenes (ops/setup.sh).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
source ops/pins.sh
dev="$top/.device"
py=${RSD_VENV:-$HOME/.cache/rsd/venv}/bin/python
mkdir -p "$dev/debs" "$dev/wheels"

# Records the closed-loop states into $1/obs: a campaign of the shipped policy (`ar`, every task, trials 0-1)
# whose one GPU worker, on this CPU, runs with --record-obs. Made in $1.tmp and renamed when complete, so an
# interrupted run leaves no half recording behind.
record_states() {
  local dir=$1 build=${RSD_BUILD:-$top/build} b
  for b in coordinator/rsd sim-worker/rsd-sim-worker gpu-worker/rsd-gpu-worker; do
    [ -x "$build/$b" ] || { echo "prepare: $build/$b missing: build first (cmake -S . -B build -G Ninja &&" \
                              "cmake --build build), or set RSD_BUILD" >&2; exit 1; }
  done
  local tmp=$dir.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  cat >"$tmp/states.yaml" <<YAML
# ops/gpu/prepare.sh: the closed-loop states the GPU benchmark runs on (trials 0-1 are held out of the draft's
# training, train/retrain_draft.py --obs-heldout).
name: gpu_bench_states
suite: libero_spatial
tasks: all
trials: 2
model: models/rsd-ref-spatial
unnorm_key: libero_spatial
variants:
  - name: ar
    mode: ar
videos: none
workers:
  sim_workers: 2
  episodes_per_worker: 2
  gpu_workers: 0
YAML
  echo "prepare: recording closed-loop states in $tmp (20 episodes; logs rsd.log, gpu-worker.log)"
  "$build/coordinator/rsd" run "$tmp/states.yaml" --out "$tmp/run" >"$tmp/rsd.log" 2>&1 &
  rec_rsd=$!
  rec_gw=
  trap 'kill $rec_rsd $rec_gw 2>/dev/null || true' EXIT
  for _ in $(seq 600); do
    [ -s "$tmp/run/broker_gpu.endpoint" ] && break
    kill -0 "$rec_rsd" 2>/dev/null || break
    sleep 0.1
  done
  [ -s "$tmp/run/broker_gpu.endpoint" ] ||
    { echo "prepare: rsd run wrote no broker endpoint; its log:" >&2; cat "$tmp/rsd.log" >&2; exit 1; }
  "$build/gpu-worker/rsd-gpu-worker" --broker "$(cat "$tmp/run/broker_gpu.endpoint")" \
    --model models/rsd-ref-spatial --device cpu --record-obs "$tmp/obs" >"$tmp/gpu-worker.log" 2>&1 &
  rec_gw=$!
  if ! wait "$rec_rsd"; then
    echo "prepare: the recording campaign failed; rsd.log:" >&2
    tail -n 20 "$tmp/rsd.log" >&2
    exit 1
  fi
  # A complete campaign drains its GPU workers: the worker leaves by itself, its recording flushed.
  for _ in $(seq 300); do kill -0 "$rec_gw" 2>/dev/null || break; sleep 0.1; done
  kill -TERM "$rec_gw" 2>/dev/null || true
  if ! wait "$rec_gw"; then
    echo "prepare: the recording GPU worker failed; gpu-worker.log:" >&2
    tail -n 20 "$tmp/gpu-worker.log" >&2
    exit 1
  fi
  trap - EXIT
  "$build/coordinator/rsd" status "$tmp/run" | tail -n 3
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

roots=(libzmq3-dev libczmq-dev libmsgpack-dev libsqlite3-dev libyaml-dev zlib1g-dev libjansson-dev pkgconf)
# The toolchain, libc and libstdc++ come from the GPU machine itself; boost comes only through msgpack's
# C++ half, which rsd does not use.
skip='^(libc6|libc6-dev|libc-dev-bin|linux-libc-dev|libcrypt1|libcrypt-dev|gcc-[0-9]+-base|libgcc-s1|libgcc-[0-9]+-dev|libstdc\+\+6|libstdc\+\+-[0-9]+-dev|libasan[0-9]+|liblsan[0-9]+|libtsan[0-9]+|libubsan[0-9]+|libatomic1|libitm1|libgomp1|libquadmath0|rpcsvc-proto|libboost.*|libmsgpack-cxx-dev)$'
mapfile -t pkgs < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
                      --no-replaces --no-enhances "${roots[@]}" | grep -v '^ ' | grep -v '^<' | sort -u |
                    grep -Ev "$skip")
(cd "$dev/debs" && for p in "${pkgs[@]}"; do ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download "$p" >/dev/null; done)
echo "prepare: ${#pkgs[@]} packages in $dev/debs ($(du -sh "$dev/debs" | cut -f1))"

mujoco=$(grep -o 'mujoco==[0-9.]*' ops/pins.sh | head -1)
if ! ls "$dev/wheels"/mujoco-*.whl >/dev/null 2>&1; then
  "$py" -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dev/wheels" "$mujoco"
fi
echo "prepare: wheels: $(cd "$dev/wheels" && ls)"
if [ ! -f "$dev/obs-cl/images.u8" ]; then
  rec=${RSD_RECORDING:-}
  [ -z "$rec" ] && [ -f runs/record/obs/rows.tsv ] && rec=runs/record/obs
  if [ -z "$rec" ]; then
    rec=$dev/record/obs
    [ -f "$rec/rows.tsv" ] || record_states "$dev/record"
  fi
  [ -f "$rec/rows.tsv" ] || { echo "prepare: no recording in $rec (RSD_RECORDING): rows.tsv missing" >&2; exit 1; }
  "$py" train/export_bench_obs.py --recording "$rec" --trials 0,1 --out "$dev/obs-cl"
fi
if [ ! -f "$dev/obs-cl.tar.xz" ] || [ "$dev/obs-cl/images.u8" -nt "$dev/obs-cl.tar.xz" ]; then
  XZ_OPT=-T0 tar -C "$dev" -cJf "$dev/obs-cl.tar.xz.tmp" obs-cl
  mv "$dev/obs-cl.tar.xz.tmp" "$dev/obs-cl.tar.xz"
fi
echo "prepare: observation set $dev/obs-cl ($(wc -l <"$dev/obs-cl/instructions.txt") rows), packed in $dev/obs-cl.tar.xz"
echo "prepare: total to carry $(du -shc "$dev/debs" "$dev/wheels" "$dev/obs-cl.tar.xz" | tail -1 | cut -f1)" \
  "(the device tool carries at most 64 MiB with the tree)"
