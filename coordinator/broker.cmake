# The inference broker (broker.c): a thread of the coordinator process between sim workers' INFERs and GPU
# workers; the policy package's manifest as the coordinator checks it (model_package.c). Part of rsd_server.
find_package(Threads REQUIRED)
target_sources(rsd_server PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/broker.c ${CMAKE_CURRENT_SOURCE_DIR}/model_package.c)
target_link_libraries(rsd_server PUBLIC Threads::Threads PRIVATE PkgConfig::JANSSON)
# `workers.device: auto` picks cuda:0 only when this build's GPU worker has libtorch's CUDA part.
set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/local_workers.c PROPERTIES
                            COMPILE_DEFINITIONS RSD_GPU_CUDA=$<IF:$<BOOL:${RSD_CUDA}>,1,0>)

# The manifest reading and the config checks against a package, on manifests the test writes.
rsd_add_test(model_package_test SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/model_package_test.c LIBS rsd_server TIMEOUT 30)
target_include_directories(model_package_test PRIVATE ${PROJECT_SOURCE_DIR}/tests)

# The supervision of rsd run's local workers (restarts in a row, the healthy time), with a stand-in script.
rsd_add_test(local_workers_test SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/local_workers_test.c LIBS rsd_server TIMEOUT 60)
target_include_directories(local_workers_test PRIVATE ${PROJECT_SOURCE_DIR}/tests)
