#!/usr/bin/env bash
# Sets everything up, builds rsd, and runs the main job: a small local campaign of the shipped reference
# policy (models/rsd-ref-spatial) on three LIBERO-Spatial tasks, decoded with `ar`, with speculative
# decoding (`spec`) and with its lossy relaxation (`spec-relaxed`), CPU only
# (configs/libero_spatial_demo.yaml), and its report.
#
#   bash ops/demo.sh            # results, report and videos in runs/libero_spatial_demo/
#
# `rsd run` starts the inference broker, the config's local GPU worker (on the CPU) and sim workers itself,
# serves the campaign until every episode is done, and exits 0; `rsd report` then writes the report. Run it
# again and the campaign resumes (already complete: only the report is rewritten).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
bash ops/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "${RSD_JOBS:-$(nproc)}"

config=configs/libero_spatial_demo.yaml
out=runs/libero_spatial_demo
echo "[demo] rsd run $config" >&2
build/coordinator/rsd run "$config" --out "$out"
build/coordinator/rsd report "$out"
echo "[demo] done: open $out/report.html (also report.md, report.json; videos of failed episodes in $out/videos/)" >&2
