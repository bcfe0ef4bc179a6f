# sim-worker/bench.cmake: the simulator's benchmark, a program and not a ctest (DESIGN.md section 9).
# Included by sim-worker/CMakeLists.txt. One command runs rsd and then robosuite on the same core:
#   ./build/sim-worker/sim_bench [--json FILE]      (docs/benchmarks.md, "Simulator: steps per second")
# It calls sim_bench_robosuite.py with the project's venv python (RSD_PYTHON) unless --no-robosuite.

if(RSD_BENCH)
  add_executable(sim_bench sim_bench.c)
  rsd_warnings(sim_bench)
  target_link_libraries(sim_bench PRIVATE rsd_sim PkgConfig::JANSSON m)
  target_compile_definitions(sim_bench PRIVATE RSD_PYTHON="${RSD_PYTHON}"
                             RSD_SIM_BENCH_PY="${CMAKE_CURRENT_SOURCE_DIR}/sim_bench_robosuite.py")
endif()
