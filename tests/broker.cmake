# The inference broker in-process (co_broker_*) with sim-side clients, a GPU worker played by the test and
# two real rsd-gpu-worker processes on the tiny test packages (gpu-worker/CMakeLists.txt, fixture gw_models).
if(TARGET rsd-gpu-worker)
  rsd_add_test(broker_test SOURCES broker_test.c LIBS rsd_server rsd_policy TIMEOUT 300
               ARGS $<TARGET_FILE:rsd-gpu-worker> ${PROJECT_BINARY_DIR}/gpu-worker/test-models)
  target_include_directories(broker_test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  set_tests_properties(broker_test PROPERTIES FIXTURES_REQUIRED gw_models)
  add_dependencies(broker_test rsd-gpu-worker)
endif()
