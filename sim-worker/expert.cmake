# sim-worker/expert.cmake: the scripted expert (expert.c) and its `expert` / `collect` commands (expert_cli.c),
# which write demonstrations as HDF5 in the robomimic/LIBERO layout. Included by sim-worker/CMakeLists.txt.

find_package(HDF5 REQUIRED COMPONENTS C)

add_library(rsd_expert STATIC expert.c expert_cli.c)
rsd_warnings(rsd_expert)
target_include_directories(rsd_expert PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_include_directories(rsd_expert SYSTEM PRIVATE ${HDF5_INCLUDE_DIRS})
target_compile_definitions(rsd_expert PRIVATE ${HDF5_DEFINITIONS})
target_link_libraries(rsd_expert PUBLIC rsd_sim PkgConfig::JANSSON ${HDF5_C_LIBRARIES} m)

# The expert on a few trials of three tasks (the drawer's task among them): every one a success.
rsd_add_test(expert_test SOURCES expert_test.c LIBS rsd_expert TIMEOUT 600)
target_include_directories(expert_test PRIVATE ${PROJECT_SOURCE_DIR}/tests)

# `collect` writes two demonstrations; read back with the HDF5 API, shapes, types, attributes, and the
# actions replayed through fresh episodes reproduce the successes.
rsd_add_test(collect_test SOURCES collect_test.c LIBS rsd_expert TIMEOUT 600)
target_include_directories(collect_test PRIVATE ${PROJECT_SOURCE_DIR}/tests ${HDF5_INCLUDE_DIRS})

if(RSD_BENCH)
  # The full benchmark, 10 tasks x 50 trials (several minutes on one core; docs/benchmarks.md):
  #   expert_bench --tasks all --trials 0-49 [--json FILE]. A program, not a ctest: too slow for the default run.
  add_executable(expert_bench expert_bench.c)
  rsd_warnings(expert_bench)
  target_link_libraries(expert_bench PRIVATE rsd_expert)
endif()
