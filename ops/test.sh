#!/usr/bin/env bash
# Sets everything up and runs rsd's tests: the build with warnings as errors and the unit and
# multi-process tests, the GPU worker built with CUDA (docs/gpu-worker.md), then the same tests built
# with clang under ASan + UBSan, then bounded fuzzing of the protocol decoder under ASan. Exits non-zero
# on the first failure.
#
#   RSD_FUZZ_SECONDS   how long each fuzz target runs (default 30)
#   RSD_JOBS           build and test parallelism (default: number of cores)
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
bash ops/setup.sh --tests
jobs=${RSD_JOBS:-$(nproc)}
export RSD_FUZZ_SECONDS=${RSD_FUZZ_SECONDS:-30}

step() { printf '\n=== %s ===\n' "$*"; }

step "build (gcc, -Werror)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
step "tests"
ctest --test-dir build --output-on-failure -j "$jobs" -LE fuzz

step "build (gcc, -DRSD_CUDA=ON: the GPU worker and policy_bench against libtorch's CUDA part; built, not run: no GPU here)"
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRSD_CUDA=ON >/dev/null
cmake --build build-cuda -j "$jobs" --target rsd-gpu-worker policy_bench

step "build (clang, ASan + UBSan, fuzz targets)"
CC=clang CXX=clang++ cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DRSD_SANITIZE=ON -DRSD_FUZZ=ON >/dev/null
cmake --build build-asan -j "$jobs"
step "tests under ASan + UBSan, then bounded fuzzing (${RSD_FUZZ_SECONDS}s per target)"
export LSAN_OPTIONS="suppressions=$top/tests/lsan.supp:print_suppressions=0"
ctest --test-dir build-asan --output-on-failure -j "$jobs"
