#!/usr/bin/env bash
# ops/gpu/run.sh: on the GPU machine (the device tool; shared notes GPU.md), from the repository root,
# with .device/ carried (made here by ops/gpu/prepare.sh): unpacks the carried .debs into a private
# prefix (never into /), installs the mujoco wheel beside the machine's own python3 + torch, builds the GPU
# worker with -DRSD_CUDA=ON, runs the GPU-worker tests on cuda:0 (gw_*, gpu_worker_test with
# RSD_TEST_DEVICE=cuda:0: the decoding suites on CUDA, a real worker serving ZeroMQ requests from cuda:0) and
# the policy benchmark of the reference packages on cuda:0 (float32, and the first one in bfloat16 too) and
# on the CPU (each run's "paired at batch 1" line is the speed target's figure). Logs go to $OUT when set, with the
# benchmark JSON packed into one bench_json.tar (the device tool brings back at most 8 files).
#
#   device run: command "bash ops/gpu/run.sh", carry [".device/debs", ".device/wheels", ".device/obs-cl.tar.xz"]
#   (all of .device is too large to travel: the tree and the carry together stay under 64 MiB)
#
#   RSD_GPU_PREFIX   where the .debs are unpacked (default /tmp/rsd-prefix)
#   RSD_GPU_BUILD    build directory (default build-cuda)
#   RSD_GPU_SECONDS  seconds per benchmark cell (default 1)
#   RSD_GPU_PACKAGES the packages under models/ to bench (default: every one)
#   RSD_GPU_OBS      the observation set for policy_bench --obs (default .device/obs-cl, unpacked from the carried
#                    .device/obs-cl.tar.xz: the recorded closed-loop states of ops/gpu/prepare.sh, on which the
#                    speed target is measured); `random` for policy_bench's random observations. Without
#                    either, run.sh stops before building: on random observations the draft's acceptance, and so
#                    the speed figure, says nothing of the policy's real states
#   RSD_GPU_BUILD_ONLY=1  stop after the build (for a command that runs its own measurements next)
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
out=${OUT:-$top/.device/out}
mkdir -p "$out"
P=${RSD_GPU_PREFIX:-/tmp/rsd-prefix}
build=${RSD_GPU_BUILD:-build-cuda}
multi=x86_64-linux-gnu
[ -d .device/debs ] && ls .device/wheels/mujoco-*.whl >/dev/null 2>&1 ||
  { echo "run.sh: .device/debs or .device/wheels missing: run ops/gpu/prepare.sh here first, then carry .device" >&2; exit 2; }
obs=${RSD_GPU_OBS:-}
if [ -z "$obs" ]; then
  if [ ! -f .device/obs-cl/images.u8 ] && [ -f .device/obs-cl.tar.xz ]; then
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' \
      .device/obs-cl.tar.xz .device
  fi
  [ -f .device/obs-cl/images.u8 ] && obs=.device/obs-cl ||
    { echo "run.sh: no observation set: .device/obs-cl.tar.xz was not carried (make it with ops/gpu/prepare.sh)," \
           "or set RSD_GPU_OBS to a set, or to 'random'" >&2; exit 2; }
fi
[ "$obs" = random ] && obs=
echo "run.sh: policy_bench observations: ${obs:-random}"
nvidia-smi -L || echo "run.sh: nvidia-smi found no GPU (the CUDA tests will say so)"

# 1. Debian packages into the private prefix.
mkdir -p "$P"
for f in .device/debs/*.deb; do dpkg -x "$f" "$P"; done

# 2. Python: the machine's python3 (it holds torch 2.11.0+cu130) plus mujoco, behind a venv-shaped folder
#    so that cmake/RsdDeps.cmake finds it as RSD_VENV.
py=$(command -v python3)
site=/tmp/rsd-site
venv=/tmp/rsd-venv
"$py" -m pip install -q --no-index --no-deps --no-compile --target "$site" .device/wheels/*.whl
mkdir -p "$venv/bin"
printf '#!/bin/sh\nPYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH} exec %s "$@"\n' "$site" "$py" >"$venv/bin/python"
chmod +x "$venv/bin/python"
"$venv/bin/python" -c 'import torch; print("run.sh: torch", torch.__version__, "cuda", torch.cuda.is_available())'
"$venv/bin/python" -m pip freeze 2>/dev/null | grep -E '^(torch|mujoco)==' >"$venv/rsd-pins.txt" || true

# 3. pkg-config from the prefix, reading only the prefix's .pc files, with the prefix as sysroot.
mkdir -p /tmp/rsd-bin
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$P/usr/lib/$multi" "$P/usr/bin/pkgconf" >/tmp/rsd-bin/pkg-config
chmod +x /tmp/rsd-bin/pkg-config
export PATH=/tmp/rsd-bin:$PATH
export PKG_CONFIG_LIBDIR=$P/usr/lib/$multi/pkgconfig:$P/usr/share/pkgconfig PKG_CONFIG_SYSROOT_DIR=$P
export CPATH=$P/usr/include:$P/usr/include/$multi LIBRARY_PATH=$P/usr/lib/$multi:$P/lib/$multi

# 4. Build only the GPU worker's targets, with CUDA.
set -o pipefail
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRSD_CUDA=ON -DRSD_VENV="$venv" \
  -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$P/usr/lib/$multi -Wl,-rpath-link,$P/lib/$multi" 2>&1 | tee "$out/build.log"
ninja -C "$build" rsd-gpu-worker gw_batcher_test gw_policy_test gpu_worker_test policy_bench 2>&1 | tee -a "$out/build.log"

if [ "${RSD_GPU_BUILD_ONLY:-0}" = 1 ]; then echo "run.sh: built in $build"; exit 0; fi

# 5. Tests, on cuda:0: the policy suites and the worker's scenarios open their packages on RSD_TEST_DEVICE.
export LD_LIBRARY_PATH=$P/usr/lib/$multi:$P/lib/$multi${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
RSD_TEST_DEVICE=cuda:0 ctest --test-dir "$build" -R 'gw_|gpu_worker' --output-on-failure 2>&1 | tee "$out/ctest.log" ||
  echo "run.sh: some GPU-worker tests failed (see ctest.log)"

# 6. The policy benchmark (per-call costs, then whole chunks): the reference packages on the GPU and, for
#    comparison, on this machine's CPU; the tiny test package on the GPU. RSD_GPU_BENCH_ARGS adds options
#    (e.g. --gamma 2).
secs=${RSD_GPU_SECONDS:-1}
pkgs=${RSD_GPU_PACKAGES:-$(cd models && ls -d */ | tr -d /)}
json=$(mktemp -d)
for pkg in $pkgs; do
  for dev in cuda:0 cpu; do
    tag=${dev%%:*}
    "$build/gpu-worker/policy_bench" "models/$pkg" --device "$dev" --seconds "$secs" ${obs:+--obs "$obs"} \
      ${RSD_GPU_BENCH_ARGS:-} --json "$json/policy_bench_${pkg#rsd-}_$tag.json" 2>&1 | tee -a "$out/bench.log"
  done
done
first=$(printf "%s\n" $pkgs | head -n 1)
"$build/gpu-worker/policy_bench" "models/$first" --device cuda:0 --dtype bfloat16 --seconds "$secs" ${obs:+--obs "$obs"} \
  ${RSD_GPU_BENCH_ARGS:-} --json "$json/policy_bench_${first#rsd-}_cuda_bf16.json" 2>&1 | tee -a "$out/bench.log"
"$build/gpu-worker/policy_bench" "$build/gpu-worker/test-models/mixed" --device cuda:0 --seconds "$secs" \
  --json "$json/policy_bench_mixed_cuda.json" 2>&1 | tee -a "$out/bench.log"
tar -C "$json" -cf "$out/bench_json.tar" .
echo "run.sh: done; build.log, ctest.log, bench.log and bench_json.tar in $out"
