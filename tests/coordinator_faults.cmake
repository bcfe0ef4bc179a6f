# tests/coordinator_faults.cmake: kill -9 of the coordinator at several points of a campaign, `rsd resume`,
# Ctrl-C, the progress line and `rsd status` (coordinator_faults_test), and the coordinator's capacity
# benchmark (coordinator_bench). Included by tests/CMakeLists.txt after fake_sim_worker is defined.
rsd_add_test(coordinator_faults_test SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/coordinator_faults_test.c LIBS rsd_journal
             TIMEOUT 120 ARGS $<TARGET_FILE:rsd> $<TARGET_FILE:fake_sim_worker>)
target_include_directories(coordinator_faults_test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_dependencies(coordinator_faults_test rsd fake_sim_worker)

