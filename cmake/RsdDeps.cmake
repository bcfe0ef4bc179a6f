# Finds rsd's dependencies. Debian packages come through pkg-config; torch and mujoco come from the
# project's Python virtual environment that ops/setup.sh creates (RSD_VENV, default ~/.cache/rsd/venv),
# so nobody types a path. Each dependency becomes one imported target:
#   PkgConfig::ZMQ PkgConfig::CZMQ PkgConfig::MSGPACK PkgConfig::SQLITE3 PkgConfig::YAML PkgConfig::ZLIB
#   PkgConfig::JANSSON
#   rsd::mujoco   libmujoco + headers from the mujoco wheel
#   rsd::torch    libtorch (CPU; with RSD_CUDA also its CUDA part) + headers from the torch wheel
find_package(PkgConfig REQUIRED)
pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET libzmq>=4.3.4)
pkg_check_modules(CZMQ REQUIRED IMPORTED_TARGET libczmq>=4.2.1)
pkg_check_modules(MSGPACK REQUIRED IMPORTED_TARGET msgpack>=4.0.0)
pkg_check_modules(SQLITE3 REQUIRED IMPORTED_TARGET sqlite3>=3.40)
pkg_check_modules(YAML REQUIRED IMPORTED_TARGET yaml-0.1>=0.2.5)
pkg_check_modules(ZLIB REQUIRED IMPORTED_TARGET zlib>=1.2.13)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson>=2.14)

if(DEFINED ENV{RSD_VENV})
  set(_rsd_venv_default "$ENV{RSD_VENV}")
else()
  set(_rsd_venv_default "$ENV{HOME}/.cache/rsd/venv")
endif()
set(RSD_VENV "${_rsd_venv_default}" CACHE PATH "rsd's Python virtual environment (made by ops/setup.sh)")
set(RSD_PYTHON "${RSD_VENV}/bin/python")
if(NOT EXISTS "${RSD_VENV}/rsd-pins.txt" OR NOT EXISTS "${RSD_PYTHON}")
  message(FATAL_ERROR "rsd's Python environment is missing or incomplete at '${RSD_VENV}': "
                      "run 'bash ops/setup.sh' first (or set RSD_VENV to where it put it)")
endif()

# The pinned versions, read from the one place they are written.
file(READ "${PROJECT_SOURCE_DIR}/ops/pins.sh" _rsd_pins)
string(REGEX MATCH "torch==([0-9.]+)" _ "${_rsd_pins}")
set(RSD_PINNED_TORCH "${CMAKE_MATCH_1}")
string(REGEX MATCH "mujoco==([0-9.]+)" _ "${_rsd_pins}")
set(RSD_PINNED_MUJOCO "${CMAKE_MATCH_1}")

# Ask the wheels where they keep their native parts (without importing torch, which takes seconds).
execute_process(
  COMMAND "${RSD_PYTHON}" -c [=[
import importlib.util, os
for name in ("mujoco", "torch"):
    spec = importlib.util.find_spec(name)
    print(os.path.dirname(spec.origin) if spec else "")
]=]
  OUTPUT_VARIABLE _rsd_wheel_dirs RESULT_VARIABLE _rsd_rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _rsd_rc EQUAL 0)
  message(FATAL_ERROR "could not run ${RSD_PYTHON} to locate mujoco and torch (exit ${_rsd_rc})")
endif()
string(REPLACE "\n" ";" _rsd_wheel_dirs "${_rsd_wheel_dirs}")
list(GET _rsd_wheel_dirs 0 RSD_MUJOCO_DIR)
list(GET _rsd_wheel_dirs 1 RSD_TORCH_DIR)

# MuJoCo: the wheel ships include/mujoco/*.h and libmujoco.so.X.Y.Z (no unversioned link).
file(GLOB _rsd_mujoco_lib "${RSD_MUJOCO_DIR}/libmujoco.so.*")
if(NOT RSD_MUJOCO_DIR OR NOT _rsd_mujoco_lib OR NOT EXISTS "${RSD_MUJOCO_DIR}/include/mujoco/mujoco.h")
  message(FATAL_ERROR "mujoco wheel in '${RSD_VENV}' has no libmujoco.so.* or include/mujoco/mujoco.h "
                      "(looked in '${RSD_MUJOCO_DIR}'); run 'bash ops/setup.sh'")
endif()
list(GET _rsd_mujoco_lib 0 _rsd_mujoco_lib)
add_library(rsd::mujoco SHARED IMPORTED GLOBAL)
set_target_properties(rsd::mujoco PROPERTIES
  IMPORTED_LOCATION "${_rsd_mujoco_lib}"
  IMPORTED_NO_SONAME OFF
  INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${RSD_MUJOCO_DIR}/include"
  INTERFACE_INCLUDE_DIRECTORIES "${RSD_MUJOCO_DIR}/include")

# libtorch (CPU part) from the torch wheel; with RSD_CUDA also its CUDA part (below).
set(_rsd_torch_lib "${RSD_TORCH_DIR}/lib")
if(NOT RSD_TORCH_DIR OR NOT EXISTS "${_rsd_torch_lib}/libtorch_cpu.so" OR NOT EXISTS "${_rsd_torch_lib}/libc10.so")
  message(FATAL_ERROR "torch wheel in '${RSD_VENV}' has no lib/libtorch_cpu.so (looked in '${RSD_TORCH_DIR}'); "
                      "run 'bash ops/setup.sh'")
endif()
add_library(rsd::torch INTERFACE IMPORTED GLOBAL)
set_target_properties(rsd::torch PROPERTIES
  INTERFACE_LINK_LIBRARIES "${_rsd_torch_lib}/libtorch_cpu.so;${_rsd_torch_lib}/libc10.so"
  INTERFACE_SYSTEM_INCLUDE_DIRECTORIES
    "${RSD_TORCH_DIR}/include;${RSD_TORCH_DIR}/include/torch/csrc/api/include"
  INTERFACE_INCLUDE_DIRECTORIES
    "${RSD_TORCH_DIR}/include;${RSD_TORCH_DIR}/include/torch/csrc/api/include"
  INTERFACE_COMPILE_DEFINITIONS "_GLIBCXX_USE_CXX11_ABI=1"
  INTERFACE_LINK_OPTIONS "LINKER:-rpath,${_rsd_torch_lib}")
# RSD_CUDA: libtorch_cuda and libc10_cuda from the same wheel (torch 2.11.0+cu130). Nothing calls into
# them directly: their static initializers register the CUDA backend, so they are linked with
# --no-as-needed. Their own RPATH finds the CUDA runtime, cuBLAS and cuDNN in the wheel's nvidia/ folder,
# so neither the CUDA toolkit nor LD_LIBRARY_PATH is needed to build or run.
if(RSD_CUDA)
  foreach(_rsd_lib libtorch_cuda.so libc10_cuda.so)
    if(NOT EXISTS "${_rsd_torch_lib}/${_rsd_lib}")
      message(FATAL_ERROR "RSD_CUDA=ON but the torch wheel in '${RSD_VENV}' has no lib/${_rsd_lib} (a CPU-only "
                          "wheel?); install the CUDA wheel (ops/pins.sh) or configure with -DRSD_CUDA=OFF")
    endif()
  endforeach()
  set_property(TARGET rsd::torch APPEND PROPERTY INTERFACE_LINK_LIBRARIES
    "-Wl,--push-state,--no-as-needed" "${_rsd_torch_lib}/libtorch_cuda.so" "${_rsd_torch_lib}/libc10_cuda.so"
    "-Wl,--pop-state")
  message(STATUS "rsd: CUDA   ${_rsd_torch_lib}/libtorch_cuda.so")
endif()
message(STATUS "rsd: mujoco ${_rsd_mujoco_lib}")
message(STATUS "rsd: torch  ${RSD_TORCH_DIR}")
