# tests/coordinator_faults.cmake: kill -9 of the coordinator at several points of a campaign, `rsd resume`,
# Ctrl-C, the progress line and `rsd status` (coordinator_faults_test), `--retry-abandoned`
# (campaign_resume_test), and the coordinator's capacity benchmark (coordinator_bench). Included by tests/CMakeLists.txt after fake_sim_worker is defined.
rsd_add_test(coordinator_faults_test SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/coordinator_faults_test.c LIBS rsd_journal
             TIMEOUT 120 ARGS $<TARGET_FILE:rsd> $<TARGET_FILE:fake_sim_worker>)
target_include_directories(coordinator_faults_test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_dependencies(coordinator_faults_test rsd fake_sim_worker)
# Alone: its coordinator dies and leaves its port (the lowest free one from 49152, as `tcp://127.0.0.1:*` binds)
# free until the restart, and a test binding `:*` meanwhile would take that port and answer the waiting
# workers itself (seen in CI: broker_test's broker counted their HEARTBEATs, and they never saw the silence).
set_tests_properties(coordinator_faults_test PROPERTIES RUN_SERIAL TRUE)

# --retry-abandoned: episodes an outage abandoned (a worker dying at max_attempts 1) run again on `rsd run
# --retry-abandoned`, each counted once, their earlier failures still in the report.
rsd_add_test(campaign_resume_test SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/campaign_resume_test.c LIBS rsd_journal
             TIMEOUT 120 ARGS $<TARGET_FILE:rsd> $<TARGET_FILE:fake_sim_worker>)
target_include_directories(campaign_resume_test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_dependencies(campaign_resume_test rsd fake_sim_worker)


if(RSD_BENCH)
  # Many simulated sim workers (DEALER sockets, episode time 0) against a real `rsd run`: results/s,
  # leases held at once, lease round trip, journal commit latency. Prints a table (JSON with --json).
  add_executable(coordinator_bench ${CMAKE_CURRENT_SOURCE_DIR}/bench/coordinator_bench.c)
  rsd_warnings(coordinator_bench)
  target_link_libraries(coordinator_bench PRIVATE rsd_msg)
  target_compile_definitions(coordinator_bench PRIVATE RSD_BIN="$<TARGET_FILE:rsd>")
  add_dependencies(coordinator_bench rsd)
endif()
