#!/usr/bin/env bash
# ops/gpu/prepare.sh: collects, on this (Debian 12) machine, what the GPU machine lacks to build and test
# rsd's GPU worker, into the git-ignored .device/ at the repository root; ops/gpu/run.sh uses it there.
#
#   .device/debs/    the -dev and runtime .debs of libzmq, czmq, msgpack-c, SQLite, libyaml, zlib, jansson
#                    and pkgconf, with their dependencies, minus the C/C++ toolchain and libc (the GPU
#                    machine has its own; see GPU.md in the shared notes)
#   .device/wheels/  the mujoco wheel for the GPU machine's Python 3.12 (CMake's dependency check wants it)
#   .device/obs-cl/  where a recording of closed-loop states exists (RSD_RECORDING, default runs/record/obs:
#                    rsd-gpu-worker --record-obs, docs/gpu-worker.md), every 5th row of its trials 0-1 (the
#                    reference draft's held-out trials) as a policy_bench observation set, about 11 MB
#
# Then, from the device tool: run ops/gpu/run.sh with carry [".device/debs", ".device/wheels", ".device/obs-cl"]
# (docs/gpu-worker.md).
# Idempotent: files already there are kept. Needs apt-get and the project's venv (ops/setup.sh).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$top"
source ops/pins.sh
dev="$top/.device"
mkdir -p "$dev/debs" "$dev/wheels"

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
  "${RSD_VENV:-$HOME/.cache/rsd/venv}/bin/python" -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dev/wheels" "$mujoco"
fi
echo "prepare: wheels: $(cd "$dev/wheels" && ls)"
rec=${RSD_RECORDING:-runs/record/obs}
if [ ! -f "$dev/obs-cl/images.u8" ] && [ -f "$rec/rows.tsv" ]; then
  "${RSD_VENV:-$HOME/.cache/rsd/venv}/bin/python" train/export_bench_obs.py --recording "$rec" --trials 0,1 \
    --every 5 --out "$dev/obs-cl"
fi
echo "prepare: total to carry $(du -shc "$dev/debs" "$dev/wheels" "$dev"/obs-cl 2>/dev/null | tail -1 | cut -f1)" \
  "(the device tool carries at most 64 MiB with the tree)"
